//! Agent benchmark: the real Claude Code against the fake LLM, one prompt at a time, three ways,
//! measured in the same run. Prints figures; never fails on time.
//!
//! - direct: `claude -p PROMPT --output-format stream-json --verbose` as a fresh process;
//! - runtime: a session through the runtime's API (create, one turn, end), which starts the same
//!   claude in stream-json mode with the runtime's permission tool;
//! - `sbx prompt`: the CLI on a local sandbox (CLI start, session, turn, transcript kept in the host
//!   state, end).
//!
//! Target: the runtime and `sbx prompt` within 50 ms per turn of running claude directly.
//!
//! Run: `source ~/.cache/sbx-test/env.sh && cargo bench -p sbx-tests --bench agents`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sbx_agent::api::session::{CreateSessionRequest, PermissionPolicy};
use sbx_tests::fake_llm::{FakeLlm, Reply};

const ROUNDS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let Some(claude) = std::env::var_os("SBX_CLAUDE_BIN").map(PathBuf::from) else {
        eprintln!("SBX_CLAUDE_BIN is unset: `source ~/.cache/sbx-test/env.sh` first (install/test-deps.sh writes it)");
        std::process::exit(2);
    };
    let llm = FakeLlm::start().await;
    llm.set_default(Reply::text("pong"));
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let env = [
        ("ANTHROPIC_BASE_URL", llm.base_url()),
        ("ANTHROPIC_API_KEY", "sk-bench".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("HOME", home.path().to_string_lossy().into_owned()),
    ];

    // Direct.
    let mut direct = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = tokio::process::Command::new(&claude)
            .args(["-p", "ping", "--output-format", "stream-json", "--verbose"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(work.path())
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run claude");
        assert!(out.status.success(), "claude failed: {}", String::from_utf8_lossy(&out.stderr));
        direct.push(t.elapsed());
    }

    // Through the runtime (the real binary, claude installed into its state dir).
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("agents/bin")).unwrap();
    std::os::unix::fs::symlink(&claude, state.path().join("agents/bin/claude")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = sbx_tests::random_token();
    let mut server = tokio::process::Command::new(sbx_tests::bin("sbx-agent"))
        .args(["server", "--port", &port.to_string(), "--state-dir"])
        .arg(state.path())
        .env("SBX_AGENT_TOKEN", &token)
        .env("SBX_AGENT_LOG_STDOUT", "1")
        .env("SBX_AGENT_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start runtime");
    let client = sbx_agent::client::Client::new(&format!("http://127.0.0.1:{port}"), Some(token)).unwrap();
    assert!(sbx_tests::wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let req = CreateSessionRequest {
        agent: "claude".into(),
        cwd: Some(work.path().to_string_lossy().into_owned()),
        permission_policy: PermissionPolicy::AllowAll,
        env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        ..Default::default()
    };
    let mut runtime = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let s = client.create_session(&req).await.expect("session");
        let r = client.send_message(&s.id, "ping", true).await.expect("turn");
        assert!(r.completed.is_some());
        client.end_session(&s.id, false).await.expect("end");
        runtime.push(t.elapsed());
    }
    let _ = server.kill().await;

    // `sbx prompt` on a local sandbox.
    let sbx_home = tempfile::tempdir().unwrap();
    let sbx = |args: &[&str]| {
        let mut c = std::process::Command::new(sbx_tests::bin("sbx"));
        c.args(args).env("XDG_STATE_HOME", sbx_home.path()).env_remove("SBX_RUNTIME").env("NO_COLOR", "1");
        c
    };
    let up = sbx(&["up", "--provider", "local", "--name", "bench", "-q"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let link = sbx(&["exec", "bench", "--", "sh", "-c", "echo $XDG_STATE_HOME"]).output().unwrap();
    let sandbox_state = PathBuf::from(String::from_utf8_lossy(&link.stdout).trim()).join("sbx-agent/agents/bin");
    std::fs::create_dir_all(&sandbox_state).unwrap();
    let _ = std::os::unix::fs::symlink(&claude, sandbox_state.join("claude"));
    let mut prompt = Vec::new();
    for _ in 0..ROUNDS {
        let mut args = vec!["prompt", "bench", "ping", "--agent", "claude", "--approve", "all", "-q"];
        let envs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &envs {
            args.push("-e");
            args.push(e);
        }
        let t = Instant::now();
        let out = sbx(&args).output().unwrap();
        assert!(out.status.success(), "sbx prompt failed: {}", String::from_utf8_lossy(&out.stderr));
        prompt.push(t.elapsed());
    }
    let _ = sbx(&["down", "bench", "-q"]).output();

    let (d, r, p) = (median(direct), median(runtime), median(prompt));
    println!("claude turn against the fake LLM, median of {ROUNDS}:");
    println!("  direct `claude -p`:       {:>7.1} ms", ms(d));
    println!("  runtime session API:      {:>7.1} ms  ({:+.1} ms per turn; target within 50 ms)", ms(r), ms(r) - ms(d));
    println!("  `sbx prompt` (local):     {:>7.1} ms  ({:+.1} ms per turn; target within 50 ms)", ms(p), ms(p) - ms(d));
}
