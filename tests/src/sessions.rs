//! Helpers for agent-session tests: reading a whole session, checking the sequence, and running the
//! real runtime binary (for kill-and-restart tests).

use std::path::Path;

use sbx_agent::api::session::Event;
use sbx_agent::client::Client;

/// Every event of a session, page by page.
pub async fn all_events(client: &Client, id: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = client.session_events(id, offset, Some(500)).await.expect("events");
        offset = page.next_offset;
        out.extend(page.events);
        if !page.has_more {
            return out;
        }
    }
}

/// Sequences are exactly 1..=n: no gaps, no repeats.
pub fn assert_gapless(events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "sequences must be 1..=n without gaps or repeats");
}

/// The events' types, in order.
pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.body.type_name()).collect()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts the real `sbx-agent server` on `port` with `state` as its state directory (killed on drop).
pub fn spawn_runtime(port: u16, state: &Path, token: &str) -> tokio::process::Child {
    tokio::process::Command::new(crate::bin("sbx-agent"))
        .args(["server", "--port", &port.to_string(), "--state-dir"])
        .arg(state)
        .env("SBX_AGENT_TOKEN", token)
        .env("SBX_AGENT_LOG_STDOUT", "1")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sbx-agent")
}
