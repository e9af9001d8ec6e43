//! `fake-e2b [--port N] [--api-key KEY]`: runs the fake E2B (`sbx_tests::fakes::e2b`) until killed.
//!
//! Prints one line, the base URL (`http://127.0.0.1:PORT`), to stdout once it listens; point the official
//! SDK at it with `E2B_API_URL=URL E2B_SANDBOX_URL=URL E2B_API_KEY=KEY`. On SIGINT/SIGTERM it removes
//! every container it made.

use std::io::Write;

use sbx_tests::fakes::e2b::{FakeE2b, DEFAULT_API_KEY};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut port = 0u16;
    let mut key = std::env::var("E2B_API_KEY").ok().filter(|k| !k.is_empty()).unwrap_or_else(|| DEFAULT_API_KEY.into());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--api-key" => key = args.next().expect("--api-key KEY"),
            other => {
                eprintln!("usage: fake-e2b [--port N] [--api-key KEY] (unknown argument `{other}`)");
                std::process::exit(2);
            }
        }
    }
    let fake = FakeE2b::start_on(([127, 0, 0, 1], port).into(), &key).await;
    println!("{}", fake.url());
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    fake.stop().await;
}
