//! Runtime benchmark: prints figures and ratios against baselines measured in the same run. It never
//! fails on time.
//!
//! - `POST /v1/processes/run` of `true` (HTTP round trip + spawn) vs spawning `true` directly;
//! - a 200 MB streamed upload (`PUT /v1/fs/file`) vs `cp` of the same file on the same disk;
//! - the static runtime's size on disk and its idle RSS;
//! - agent session events per second: the mock agent streams 200,000 deltas, each journaled on disk and
//!   followed over SSE by the typed client.
//!
//! Run: `cargo bench -p sbx-tests --bench runtime` (uses the static runtime from
//! install/build-runtime.sh when present, else the debug build).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

fn runtime_binary() -> PathBuf {
    let root = sbx_tests::workspace_root();
    let static_rt = std::env::var("SBX_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/x86_64-unknown-linux-gnu/runtime/sbx-agent"));
    if static_rt.exists() {
        return static_rt;
    }
    root.join("target/debug/sbx-agent")
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let bin = runtime_binary();
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let dir = tempfile::tempdir_in(std::env::var("SBX_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into())).expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = sbx_tests::random_token();
    let mut child = tokio::process::Command::new(&bin)
        .args(["server", "--port", &port.to_string(), "--root"])
        .arg(&root)
        // A state dir of its own: sessions from earlier runs would be reopened (and held in memory).
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("SBX_AGENT_TOKEN", &token)
        .env("SBX_AGENT_LOG_STDOUT", "1")
        .env("SBX_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start runtime");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let up = sbx_tests::wait_for(Duration::from_secs(10), || {
        let http = http.clone();
        let url = url.clone();
        async move { http.get(format!("{url}/v1/health")).send().await.is_ok() }
    })
    .await;
    assert!(up, "runtime did not start");
    // Idle: let it settle, then read its RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(child.id().unwrap()).unwrap_or(0);

    println!("sbx-agent runtime benchmark ({})", bin.display());
    println!("  binary size:            {:.2} MB (target <= 10 MB)", size as f64 / 1e6);
    println!("  idle RSS:               {:.2} MB (target <= 10 MB)", idle_rss as f64 / 1024.0);

    // 1. run `true`: HTTP round trip vs direct spawn.
    let n = 200;
    for _ in 0..10 {
        let _ = tokio::process::Command::new("true").status().await;
    }
    let mut direct = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        tokio::process::Command::new("true").status().await.unwrap();
        direct.push(t.elapsed());
    }
    let mut via_api = Vec::new();
    let body = serde_json::json!({ "command": "true" });
    for _ in 0..n {
        let t = Instant::now();
        let r = http.post(format!("{url}/v1/processes/run")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "run failed: {}", r.status());
        let _ = r.bytes().await.unwrap();
        via_api.push(t.elapsed());
    }
    let (d, a) = (median(direct), median(via_api));
    println!("  run `true` direct:      {} median of {n}", fmt(d));
    println!("  run `true` via API:     {} median of {n}", fmt(a));
    println!("  ratio API/direct:       {:.2}x", a.as_secs_f64() / d.as_secs_f64());

    // 2. 200 MB upload vs cp, same disk.
    let src = dir.path().join("blob.bin");
    {
        let mut f = tokio::fs::File::create(&src).await.unwrap();
        let mut block = vec![0u8; 1 << 20];
        for i in 0..200u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32 ^ i.wrapping_mul(2654435761)) as u8;
            }
            f.write_all(&block).await.unwrap();
        }
        f.sync_all().await.unwrap();
    }
    let t = Instant::now();
    let st = std::process::Command::new("cp").arg(&src).arg(dir.path().join("cp-copy.bin")).status().unwrap();
    assert!(st.success());
    let cp = t.elapsed();
    let t = Instant::now();
    let file = tokio::fs::File::open(&src).await.unwrap();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let r = http
        .put(format!("{url}/v1/fs/file?path=upload.bin"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "upload failed: {}", r.status());
    let up = t.elapsed();
    let mb = 200.0;
    println!("  cp 200 MB:              {} ({:.0} MB/s)", fmt(cp), mb / cp.as_secs_f64());
    println!("  upload 200 MB:          {} ({:.0} MB/s)", fmt(up), mb / up.as_secs_f64());
    println!("  ratio upload/cp:        {:.2}x", up.as_secs_f64() / cp.as_secs_f64());
    let busy_rss = rss_kib(child.id().unwrap()).unwrap_or(0);
    println!("  RSS after upload:       {:.2} MB (streams, so this stays small)", busy_rss as f64 / 1024.0);

    // Session events: the mock agent streams deltas; each is journaled on disk, then sent over SSE.
    let client = sbx_agent::client::Client::new(&url, Some(token.clone())).unwrap();
    let req = sbx_agent::api::session::CreateSessionRequest { agent: "mock".into(), ..Default::default() };
    let session = client.create_session(&req).await.expect("mock session");
    let n = 200_000u64;
    let t = Instant::now();
    let turn = client.send_message(&session.id, &format!("stream {n}"), false).await.expect("send");
    let mut follow = client.follow_events(&session.id, turn.first_sequence - 1).await.expect("follow");
    let mut received = 0u64;
    while let Some(ev) = follow.next().await {
        let ev = ev.expect("event");
        received += 1;
        if matches!(ev.body, sbx_agent::api::session::EventData::TurnCompleted(_)) {
            break;
        }
    }
    let took = t.elapsed();
    println!("  session events via SSE: {received} in {} = {:.0} events/s (target >= 100000/s)", fmt(took), received as f64 / took.as_secs_f64());
    let rss = rss_kib(child.id().unwrap()).unwrap_or(0);
    println!("  RSS after the stream:   {:.2} MB (bounded: only the recent tail is in memory, older events are read from the journal)", rss as f64 / 1024.0);

    // The same stream read as raw server-sent events, without decoding each into the typed Event:
    // splits the time between the runtime + transport and the client's JSON decoding.
    let session = client.create_session(&req).await.expect("mock session");
    let t = Instant::now();
    let turn = client.send_message(&session.id, &format!("stream {n}"), false).await.expect("send");
    let resp = http
        .get(format!("{url}/v1/sessions/{}/events/stream", session.id))
        .bearer_auth(&token)
        .header("Last-Event-ID", (turn.first_sequence - 1).to_string())
        .send()
        .await
        .expect("stream");
    let mut body = resp.bytes_stream();
    let mut parser = sbx_agent::client::sse::SseParser::new();
    let mut raw = 0u64;
    'read: while let Some(chunk) = body.next().await {
        parser.feed(&chunk.expect("chunk"));
        while let Some(ev) = parser.next_event() {
            raw += 1;
            if ev.data.contains("\"type\":\"turn.completed\"") {
                break 'read;
            }
        }
    }
    let took = t.elapsed();
    println!("  same, raw SSE (no decode): {raw} in {} = {:.0} events/s", fmt(took), raw as f64 / took.as_secs_f64());
    let _ = child.kill().await;
}
