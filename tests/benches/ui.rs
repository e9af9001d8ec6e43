//! `sbx ui` benchmark: a mock session streams 100,000 events (one turn of `stream 100000`) while the
//! page follows it live in headless Chromium. Prints how long the page took to show the whole turn,
//! and the tab's memory: its renderer's resident and proportional set size (the bound: 300 MB),
//! the JS heap and the number of DOM nodes. Never fails on time or size.
//!
//! Run: `cargo bench -p sbx-tests --bench ui` (or `cargo test -p sbx-tests --bench ui` against the
//! debug `sbx`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

const EVENTS: u64 = 100_000;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sbx = sbx_tests::bin("sbx");
    let up = Command::new(&sbx)
        .args(["up", "--provider", "local", "--name", "bench"])
        .env("XDG_STATE_HOME", d.join("state"))
        .env_remove("SBX_RUNTIME")
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    // The sandbox's runtime runs on this host: taken down however the bench ends.
    struct Down(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).args(["down", "bench"]).env("XDG_STATE_HOME", self.1.join("state")).output();
        }
    }
    let _down = Down(sbx.clone(), d.to_path_buf());
    let mut ui = tokio::process::Command::new(&sbx)
        .arg("ui")
        .env("XDG_STATE_HOME", d.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = tokio::io::BufReader::new(ui.stdout.take().unwrap()).lines().next_line().await.unwrap().unwrap();
    let base = url.split("/?").next().unwrap().to_owned();
    let token = url.rsplit("token=").next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let made = http
        .post(format!("{base}/api/sb/bench/v1/sessions"))
        .bearer_auth(&token)
        .json(&json!({"agent": "mock", "id": "big", "permissionPolicy": "allow_all"}))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.text().await.unwrap());

    let mut b = sbx_tests::browser::Browser::launch(1400, 900).await.expect("headless Chromium (install/test-deps.sh installs it)");
    b.goto(&format!("{url}#sb=bench&session=big")).await.unwrap();
    b.wait_for("document.querySelector('#events .ev[data-type=\"session.started\"]')", Duration::from_secs(30)).await.unwrap();
    // DevTools' network agent keeps every response body it sees (the event stream too): off, so the
    // figures are the page's own.
    b.call("Network.disable", json!({})).await.unwrap();
    let idle = b.renderer_memory_kib().await.unwrap();
    let t = Instant::now();
    let sent = http
        .post(format!("{base}/api/sb/bench/v1/sessions/big/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": format!("stream {EVENTS}")}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.text().await.unwrap());
    let mut peak = (0, 0);
    loop {
        let now = b.renderer_memory_kib().await.unwrap();
        peak = (peak.0.max(now.0), peak.1.max(now.1));
        let done = b.eval("!!document.querySelector('#events .ev[data-type=\"turn.completed\"]')").await.unwrap();
        if done == json!(true) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "the turn did not show within 10 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = t.elapsed();
    let live = b.eval("Object.assign({}, document.querySelector('#live').dataset)").await.unwrap();
    let metrics = b.call("Performance.enable", json!({})).await.and(b.call("Performance.getMetrics", json!({})).await).unwrap();
    let metric =
        |name: &str| metrics["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).and_then(|m| m["value"].as_f64()).unwrap_or(f64::NAN);
    let end = b.renderer_memory_kib().await.unwrap();
    let b_renderers = b.renderers;
    let errors = b.console_errors().await.unwrap();
    b.close().await;

    println!("sbx ui: one mock turn of {EVENTS} streamed events, followed live in headless Chromium");
    println!("  events received by the page:  {} (distinct {}, last sequence {})", live["received"], live["count"], live["last"]);
    println!("  whole turn shown after:        {:.1} s", shown.as_secs_f64());
    let mb = |k: u64| k as f64 / 1024.0;
    println!("  renderer processes counted:    {}", b_renderers);
    println!("  tab (renderer) RSS:            {:.0} MB idle, {:.0} MB peak, {:.0} MB at the end (bound: 300 MB)", mb(idle.0), mb(peak.0), mb(end.0));
    println!("  tab (renderer) PSS:            {:.0} MB idle, {:.0} MB peak, {:.0} MB at the end", mb(idle.1), mb(peak.1), mb(end.1));
    println!("  JS heap used:                  {:.1} MB", metric("JSHeapUsedSize") / 1e6);
    println!("  DOM nodes:                     {:.0}", metric("Nodes"));
    if !errors.is_empty() {
        println!("  console errors: {errors:?}");
    }
}
