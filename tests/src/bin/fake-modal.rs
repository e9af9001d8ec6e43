//! The fake Modal as a process (for the Python oracle): prints `SBX_MODAL_API_URL=…`,
//! `MODAL_SERVER_URL=…`, `MODAL_TOKEN_ID=…`, `MODAL_TOKEN_SECRET=…`, `SBX_MODAL_TUNNEL_SCHEME=…` and
//! `SBX_MODAL_IMAGE=…` on stdout (one per line), then serves until killed (SIGINT/SIGTERM remove its
//! containers). Env: `SBX_BASE_IMAGE` (the image the printed `SBX_MODAL_IMAGE` names).

use sbx_tests::fakes::modal::FakeModal;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fake = FakeModal::start().await;
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
