//! One way to point an agent at an LLM endpoint: a session's `llm` (or the runtime-wide
//! `SBX_LLM_BASE_URL`) becomes Claude Code's and Codex's own configuration, with no hand-written
//! agent config; an endpoint that refuses connections fails the turn within seconds with an `error`
//! event naming the URL; `check-llm` answers from inside the runtime. Real binaries (`SBX_CLAUDE_BIN`,
//! `SBX_CODEX_BIN`); fails without them when `SBX_REQUIRE_AGENTS=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sbx_agent::api::session::{CheckLlmRequest, CreateSessionRequest, EventData, LlmEndpoint, PermissionPolicy, TurnOutcome};
use sbx_tests::fake_llm::{FakeLlm, Reply};
use sbx_tests::sessions::all_events;
use sbx_tests::TestRuntime;

/// The real binary of `agent` from `SBX_<AGENT>_BIN`, or `None` (and a message) without one.
fn agent_bin(agent: &str) -> Option<PathBuf> {
    let var = format!("SBX_{}_BIN", agent.to_uppercase());
    match std::env::var_os(&var).filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("SBX_REQUIRE_AGENTS").as_deref() == Ok("1") => {
            panic!("SBX_REQUIRE_AGENTS=1 but {var} is unset: run install/test-deps.sh and source ~/.cache/sbx-test/env.sh")
        }
        None => {
            eprintln!("skipped: {var} is unset (install/test-deps.sh provides it)");
            None
        }
    }
}

/// A runtime whose agent directory holds links to both real agents.
async fn runtime(claude: &Path, codex: &Path) -> (TestRuntime, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let bin = state.path().join("agents/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(claude, bin.join("claude")).unwrap();
    std::os::unix::fs::symlink(codex, bin.join("codex")).unwrap();
    let dir = state.path().to_path_buf();
    (TestRuntime::start_with(move |c| c.state_dir = Some(dir)).await, state)
}

/// A port on loopback that refuses connections (bound, then released).
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn request(agent: &str, work: &Path, home: &Path, llm: Option<String>, env: &[(&str, &str)]) -> CreateSessionRequest {
    let mut e: BTreeMap<String, String> = BTreeMap::from([
        ("HOME".to_owned(), home.to_string_lossy().into_owned()),
        // Fail fast on model errors instead of retrying with backoff.
        ("CLAUDE_CODE_MAX_RETRIES".to_owned(), "0".to_owned()),
    ]);
    e.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    CreateSessionRequest {
        agent: agent.into(),
        cwd: Some(work.to_string_lossy().into_owned()),
        permission_policy: PermissionPolicy::AllowAll,
        env: e,
        llm: llm.map(|base_url| LlmEndpoint { base_url }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_and_codex_pointed_at_a_refused_port_fail_within_seconds_naming_the_url() {
    let (Some(claude), Some(codex)) = (agent_bin("claude"), agent_bin("codex")) else { return };
    let (rt, _state) = runtime(&claude, &codex).await;
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let port = refused_port();
    let root = format!("http://127.0.0.1:{port}");
    // Through the session's `llm`, and through the runtime-wide variable (as `sbx up --llm-base-url`
    // sets it), for both agents.
    let cases = [
        ("claude", Some(root.clone()), vec![], root.clone()),
        ("codex", Some(root.clone()), vec![], format!("{root}/v1")),
        ("claude", None, vec![("SBX_LLM_BASE_URL", root.as_str())], root.clone()),
        ("codex", None, vec![("SBX_LLM_BASE_URL", root.as_str())], format!("{root}/v1")),
    ];
    for (agent, llm, env, url) in cases {
        let session = rt.client.create_session(&request(agent, work.path(), home.path(), llm.clone(), &env)).await.expect("create");
        let started = Instant::now();
        let sent = tokio::time::timeout(Duration::from_secs(30), rt.client.send_message(&session.id, "hello", true))
            .await
            .unwrap_or_else(|_| panic!("{agent}: the turn did not end within 30 s"))
            .expect("send");
        let took = started.elapsed();
        let done = sent.completed.expect("waited");
        assert_eq!(done.outcome, TurnOutcome::Failed, "{agent}: {done:?}");
        assert!(took < Duration::from_secs(10), "{agent}: the failure took {took:?}");
        let events = all_events(&rt.client, &session.id).await;
        let err = events
            .iter()
            .find_map(|e| match &e.body {
                EventData::Error(x) => Some(x.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{agent}: no error event"));
        assert_eq!(err.code, "llm_unreachable", "{agent}: {err:?}");
        assert!(err.message.contains(&url), "{agent}: the message names {url}: {}", err.message);
        assert!(err.message.to_lowercase().contains("refused"), "{agent}: the message says what came back: {}", err.message);
        eprintln!("{agent} ({:?}): failed in {took:?}: {}", llm.as_ref().map(|_| "llm").unwrap_or("SBX_LLM_BASE_URL"), err.message);
        rt.client.end_session(&session.id, false).await.unwrap();
    }
    // check-llm says the same from inside the runtime.
    let env = BTreeMap::from([("SBX_LLM_BASE_URL".to_owned(), root.clone())]);
    let r = rt.client.check_llm("codex", &CheckLlmRequest { env, llm: None }).await.unwrap();
    assert!(!r.reachable, "{r:?}");
    assert_eq!((r.url.as_deref(), r.source.as_str()), (Some(format!("{root}/v1").as_str()), "runtime"));
    assert!(r.error.as_deref().unwrap_or_default().to_lowercase().contains("refused"), "{r:?}");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_alone_points_claude_and_codex_at_the_endpoint_without_agent_config() {
    let (Some(claude), Some(codex)) = (agent_bin("claude"), agent_bin("codex")) else { return };
    let (rt, _state) = runtime(&claude, &codex).await;
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    for (agent, path) in [("claude", "/v1/messages"), ("codex", "/v1/responses")] {
        // One endpoint each: Claude Code may still send a background request after its turn.
        let llm = FakeLlm::start().await;
        let answer = format!("hello from the endpoint, {agent}");
        llm.push(Reply::text(&answer));
        // Only the endpoint and a key: no ANTHROPIC_BASE_URL, no CODEX_HOME, no config.toml.
        let key = if agent == "claude" { ("ANTHROPIC_API_KEY", "sk-test-not-real") } else { ("OPENAI_API_KEY", "sk-test-not-real") };
        let mut req = request(agent, work.path(), home.path(), Some(llm.base_url()), &[key]);
        if agent == "codex" {
            // Codex offers the model tools (what makes the fake treat a request as the conversation)
            // for a model it knows the family of; its built-in default changes between releases.
            req.model = Some("gpt-test".into());
        }
        let session = rt.client.create_session(&req).await.expect("create");
        let sent = tokio::time::timeout(Duration::from_secs(120), rt.client.send_message(&session.id, "say hello", true))
            .await
            .unwrap_or_else(|_| panic!("{agent}: no answer within 120 s"))
            .expect("send");
        let done = sent.completed.expect("waited");
        assert_eq!(done.outcome, TurnOutcome::Completed, "{agent}: {done:?}");
        assert_eq!(done.text.as_deref(), Some(answer.as_str()), "{agent}");
        rt.client.end_session(&session.id, false).await.unwrap();
        let conv = llm.conversation_requests();
        assert!(conv.iter().any(|r| r.path == path), "{agent} spoke to {path} at the endpoint");
        assert!(conv.iter().all(|r| r.auth), "{agent}: the key reached the endpoint");
    }
    // check-llm finds an endpoint answering.
    let llm = FakeLlm::start().await;
    let req = CheckLlmRequest { llm: Some(LlmEndpoint { base_url: llm.base_url() }), env: BTreeMap::new() };
    let r = rt.client.check_llm("claude", &req).await.unwrap();
    assert!(r.reachable && r.status.is_some(), "{r:?}");
    assert_eq!(r.source, "request");
    rt.stop().await;
}

/// `sbx up --llm-base-url` reaches the runtime as its default endpoint, and `sbx doctor` checks it
/// from inside the sandbox: a refused port is named, with exit code 1; a live endpoint answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_doctor_checks_the_endpoint_sbx_up_configured() {
    let home = tempfile::tempdir().unwrap();
    let sbx = |args: &[&str]| {
        std::process::Command::new(sbx_tests::bin("sbx"))
            .args(args)
            .env("XDG_STATE_HOME", home.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let port = refused_port();
    let llm = FakeLlm::start().await;
    let refused = format!("http://127.0.0.1:{port}");
    let codex_only = format!("codex={}", llm.base_url());
    let out = sbx(&["up", "--provider", "local", "--name", "doc", "--llm-base-url", &refused, "--llm-base-url", &codex_only]);
    assert!(out.status.success(), "sbx up: {}", String::from_utf8_lossy(&out.stderr));
    // The test's runtime keeps serving the fake on its other worker while this thread waits.
    let out = sbx(&["doctor", "doc", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "a refused endpoint fails doctor: {text} {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let claude = &v[0]["llm"];
    assert_eq!(claude["url"], refused.as_str(), "{v}");
    assert_eq!(claude["reachable"], false);
    assert!(claude["error"].as_str().unwrap_or_default().to_lowercase().contains("refused"), "{v}");
    let codex = &v[1]["llm"];
    assert_eq!(codex["reachable"], true, "the codex-only endpoint answers: {v}");
    assert_eq!(codex["source"], "runtime");
    let _ = sbx(&["down", "doc"]);
}
