//! The fake Vercel as a process (for the Python oracle): prints `SBX_VERCEL_API_URL=…`,
//! `VERCEL_TOKEN=…`, `VERCEL_TEAM_ID=…` and `VERCEL_PROJECT_ID=…` on stdout (one per line), then
//! serves until killed (SIGINT/SIGTERM remove its containers). Env: `SBX_BASE_IMAGE` (the sandboxes'
//! image).

use sbx_tests::fakes::vercel::FakeVercel;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fake = FakeVercel::start().await;
    for (k, v) in fake.env() {
        println!("{k}={v}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    fake.shutdown();
}
