//! Keyless relay benchmark: a streamed Anthropic answer from the fake LLM, asked directly and through a
//! keyless local sandbox's relay (runtime → the WebSocket that `sbx attach` holds → this host → the
//! fake), in the same run. Prints time to the first text delta and to the end, medians of each way and
//! what the relay adds; never fails on time. Target: ≤ 5 ms added at the median.
//!
//! Run: `source ~/.cache/sbx-test/env.sh && cargo bench -p sbx-tests --bench relay` (needs a built
//! `sbx` and `SBX_RUNTIME`, as the test suite does).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sbx_tests::fake_llm::{FakeLlm, Reply};
use tokio::io::AsyncBufReadExt;

const ROUNDS: usize = 40;
const BODY: &str = r#"{"model":"claude-bench","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"t","input_schema":{"type":"object"}}]}"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One streamed request: (time to the first text delta, time to the end).
async fn ask(http: &reqwest::Client, url: &str, key: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let mut resp = http
        .post(url)
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .expect("send");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let mut first = None;
    let mut seen = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        seen.extend_from_slice(&chunk);
        if first.is_none() && seen.windows(10).any(|w| w == b"text_delta") {
            first = Some(t.elapsed());
        }
    }
    (first.expect("a text delta"), t.elapsed())
}

fn sbx(state: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(sbx_tests::bin("sbx"));
    c.args(args).env("HOME", state).env("XDG_STATE_HOME", state.join("state")).env("NO_COLOR", "1");
    c
}

#[tokio::main]
async fn main() {
    let llm = FakeLlm::start().await;
    // Five pieces 2 ms apart: the answer is a stream, as a model's is.
    llm.set_default(Reply::SlowText { text: "one two three four five six".into(), chunks: 5, delay_ms: 2 });
    let home = tempfile::tempdir().unwrap();
    let key = format!("sk-ant-api03-BENCH{}", sbx_tests::random_token());
    std::fs::write(home.path().join(".claude.json"), format!(r#"{{"primaryApiKey": "{key}"}}"#)).unwrap();
    let up = sbx(home.path(), &["up", "--provider", "local", "--name", "relay-bench", "--keyless=claude"])
        .env("SBX_KEYLESS_ANTHROPIC_URL", llm.base_url())
        .output()
        .expect("sbx up");
    assert!(up.status.success(), "sbx up: {}", String::from_utf8_lossy(&up.stderr));
    let status = sbx(home.path(), &["status", "relay-bench", "--json"]).output().expect("sbx status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let runtime = status["endpoint"]["transport"]["url"].as_str().expect("runtime url").to_owned();
    let db = rusqlite::Connection::open(home.path().join("state/sbx/sbx.db")).expect("state db");
    let token: String = db.query_row("SELECT token FROM relay_tokens WHERE sandbox = 'relay-bench'", [], |r| r.get(0)).expect("token");

    let mut attach = tokio::process::Command::new(sbx_tests::bin("sbx"));
    attach
        .args(["attach", "relay-bench"])
        .env("HOME", home.path())
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("SBX_KEYLESS_ANTHROPIC_URL", llm.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut attach = attach.spawn().expect("sbx attach");
    let mut lines = tokio::io::BufReader::new(attach.stderr.take().expect("stderr")).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("attached:") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let direct_url = format!("{}/v1/messages", llm.base_url());
    let relay_url = format!("{runtime}/v1/llm/anthropic/v1/messages");
    // Warm both paths (connections, the relay's first request), then alternate.
    ask(&http, &direct_url, &key).await;
    ask(&http, &relay_url, &token).await;
    let (mut d_first, mut d_total, mut r_first, mut r_total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (f, t) = ask(&http, &direct_url, &key).await;
        d_first.push(f);
        d_total.push(t);
        let (f, t) = ask(&http, &relay_url, &token).await;
        r_first.push(f);
        r_total.push(t);
    }
    let (df, dt, rf, rt) = (median(d_first), median(d_total), median(r_first), median(r_total));
    println!("keyless relay, {ROUNDS} streamed answers each way (medians):");
    println!("  first text delta: direct {:.2} ms, relay {:.2} ms, added {:.2} ms", ms(df), ms(rf), ms(rf) - ms(df));
    println!("  whole answer:     direct {:.2} ms, relay {:.2} ms, added {:.2} ms", ms(dt), ms(rt), ms(rt) - ms(dt));
    println!("  target: ≤ 5 ms added at the median");
    let _ = attach.start_kill();
    let _ = sbx(home.path(), &["down", "relay-bench"]).output();
}
