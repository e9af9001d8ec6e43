//! The fake Daytona as a process (for the Python oracle): prints `DAYTONA_API_URL=…` and
//! `DAYTONA_API_KEY=…` on stdout, then serves until killed. Env: `SBX_BASE_IMAGE` (the sandboxes'
//! image), `FAKE_DAYTONA_API_KEY` (the key it accepts; random otherwise), `FAKE_DAYTONA_SPLIT_COMMANDS=1` (run
//! commands split into arguments, without a shell).

use sbx_tests::fakes::daytona::{FakeConfig, FakeDaytona};

#[tokio::main]
async fn main() {
    let mut config = FakeConfig::default();
    if let Ok(key) = std::env::var("FAKE_DAYTONA_API_KEY") {
        config.api_key = key;
    }
    config.split_commands = std::env::var("FAKE_DAYTONA_SPLIT_COMMANDS").is_ok_and(|v| v == "1");
    let fake = FakeDaytona::start_with(config).await;
    println!("DAYTONA_API_URL={}", fake.api_url());
    println!("DAYTONA_API_KEY={}", fake.api_key());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    fake.shutdown();
}
