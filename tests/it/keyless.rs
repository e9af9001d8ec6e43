//! Keyless sandboxes (docs/keyless.md), end to end through the CLI on Docker: the real `claude` and
//! `codex` complete a turn through the runtime's LLM relay and this host, to a fake LLM the sandbox
//! cannot reach (it listens on this host's loopback only); the fake sees the real keys, and no file,
//! command line or environment in the sandbox holds them. Then the relay's edges from inside the
//! sandbox: the first delta arrives while the upstream answer is still open, the rate limit answers
//! 429, a revoked token 401 (and a Claude session shows the error), a detached host 503 after the
//! bounded wait, an expired token 401.
//!
//! Docker, `SBX_CLAUDE_BIN` and `SBX_CODEX_BIN` (install/test-deps.sh) are required: missing, the tests
//! fail.

use std::time::Duration;

use sbx_agent::api::session::Event;
use sbx_tests::fake_llm::{Api, FakeLlm, Reply};
use serde_json::Value;

use crate::secrets::{write, Box_, Target};

fn agent_bin(var: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| panic!("{var} is unset: run install/test-deps.sh"))
}

/// A Docker box whose home holds an Anthropic and an OpenAI key, with the upstreams pointed at `llm`.
fn keyless_box(llm: &FakeLlm, tag: &str) -> (Box_, String, String) {
    assert!(sbx_tests::docker_available(), "Docker is required");
    keyless_box_on(Target::Docker, llm, tag)
}

/// [`keyless_box`] on any provider.
fn keyless_box_on(target: Target, llm: &FakeLlm, tag: &str) -> (Box_, String, String) {
    let home = tempfile::tempdir().expect("tempdir");
    let anthropic = format!("sk-ant-api03-KEYLESS{}", sbx_tests::random_token());
    let openai = format!("sk-proj-KEYLESS{}", sbx_tests::random_token());
    write(home.path(), ".claude.json", &format!(r#"{{"primaryApiKey": "{anthropic}"}}"#));
    write(home.path(), ".codex/auth.json", &format!(r#"{{"OPENAI_API_KEY": "{openai}"}}"#));
    let extra = vec![
        ("SBX_KEYLESS_ANTHROPIC_URL".to_owned(), llm.base_url()),
        ("SBX_KEYLESS_OPENAI_URL".to_owned(), llm.base_url()),
        ("SBX_CLAUDE_BIN".to_owned(), agent_bin("SBX_CLAUDE_BIN")),
        ("SBX_CODEX_BIN".to_owned(), agent_bin("SBX_CODEX_BIN")),
    ];
    let name = format!("keyless-{tag}-{}", &sbx_tests::random_token()[..6]);
    (Box_ { target, home, name, transcript: String::new(), extra }, anthropic, openai)
}

/// Destroys the sandbox when the test ends, however it ends.
struct Down(std::path::PathBuf, String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new(sbx_tests::bin("sbx"))
            .args(["down", &self.1])
            .env("XDG_STATE_HOME", self.0.join("state"))
            .env("HOME", &self.0)
            .output();
    }
}

fn relay_token(b: &Box_) -> String {
    let db = rusqlite::Connection::open(b.home.path().join("state/sbx/sbx.db")).expect("state db");
    db.query_row("SELECT token FROM relay_tokens WHERE sandbox = ?1", [&b.name], |r| r.get(0)).expect("relay token")
}

/// The model requests the fake saw, in short: method, path, whether streamed and conversation.
fn asked(llm: &FakeLlm) -> Vec<(String, String, bool, bool)> {
    llm.requests().into_iter().map(|r| (r.method, r.path, r.stream, r.conversation)).collect()
}

fn usage_rows(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).expect("usage json");
    v["requests"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_and_codex_complete_turns_through_the_relay_and_the_key_stays_on_the_host() {
    let llm = FakeLlm::start().await;
    let (mut b, anthropic, openai) = keyless_box(&llm, "agents");
    let name = b.name.clone();
    let image = crate::conformance::base_image();
    b.ok(&["up", "--provider", "docker", "--image", &image, "--name", &name, "--agents", "claude,codex", "--agents-from", "from-host", "--keyless"])
        .await;
    let _down = Down(b.home.path().to_path_buf(), name.clone());

    // Each API has its own answer: a scripted queue would let a background request of one agent (Claude
    // Code's helper queries keep going after its turn) take the reply meant for the other.
    // Codex on its default model (no `model` in the sandbox's config) sends `/v1/responses` without a
    // `tools` list (header `x-openai-internal-codex-responses-lite`): its turns are conversation too.
    llm.classify_with(|r| r.path == "/v1/responses" || sbx_tests::fake_llm::is_conversation(r));
    llm.set_default(Reply::with(|r| match r.api {
        Api::Anthropic => Reply::text("Hello through the relay."),
        Api::OpenAi => Reply::text("Codex through the relay."),
    }));
    let out = b.ok(&["prompt", &name, "say hello", "--agent", "claude", "--approve", "all"]).await;
    assert!(out.contains("Hello through the relay."), "claude's answer: {out}\n{:?}", asked(&llm));
    let out = b.ok(&["prompt", &name, "say hello", "--agent", "codex", "--approve", "all"]).await;
    assert!(out.contains("Codex through the relay."), "codex's answer: {out}\n{:?}", asked(&llm));

    let relay = relay_token(&b);
    let posts: Vec<_> = llm.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert!(posts.iter().any(|r| r.path == "/v1/messages") && posts.iter().any(|r| r.path == "/v1/responses"), "{posts:#?}");
    for r in &posts {
        let (header, want) = match r.api {
            Api::Anthropic => ("x-api-key", anthropic.clone()),
            Api::OpenAi => ("authorization", format!("Bearer {openai}")),
        };
        assert_eq!(r.header(header), Some(want.as_str()), "{} reached the fake with the real key", r.path);
        assert!(r.headers.iter().all(|(_, v)| !v.contains(&relay)), "the relay token never leaves the host");
    }

    // One audit row per relayed request, with its session, model and tokens.
    let rows: Vec<Value> = usage_rows(&b.ok(&["usage", &name, "--json"]).await).into_iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(rows.len(), posts.len(), "{rows:#?}");
    assert!(rows.iter().all(|r| r["status"] == 200 && r["session"].as_str().is_some_and(|s| s.starts_with("ses_"))), "{rows:#?}");
    assert!(rows.iter().any(|r| r["model"].is_string() && r["inputTokens"].as_u64() > Some(0) && r["outputTokens"].as_u64() > Some(0)), "{rows:#?}");

    let token = b.token();
    let secrets = [("the Anthropic key", anthropic.as_str()), ("the OpenAI key", openai.as_str()), ("the runtime token", token.as_str())];
    let hits = b.scan(&secrets).await;
    assert!(hits.is_empty(), "secrets inside the keyless sandbox: {hits:#?}");
    for (what, secret) in secrets {
        assert!(!b.transcript.contains(secret), "{what} is in sbx's output or log");
    }
    b.ok(&["down", &name]).await;
    let after = b.run(&["exec", &name, "--", "true"]).await;
    assert!(!after.status.success());
}

/// `curl` inside the sandbox against the relay with token `$T`; prints the body then `HTTP <code>`.
fn curl(body_to: &str) -> String {
    format!(
        "curl -sSN -X POST http://127.0.0.1:2468/v1/llm/anthropic/v1/messages -H \"x-api-key: $T\" -H 'content-type: application/json' \
         -H 'anthropic-version: 2023-06-01' -d '{{\"model\":\"claude-relay-test\",\"max_tokens\":64,\"stream\":true,\
         \"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"tools\":[{{\"name\":\"t\",\"input_schema\":{{\"type\":\"object\"}}}}]}}' \
         -o {body_to} -w 'HTTP %{{http_code}}\\n'; cat {body_to}"
    )
}

async fn relay_call(b: &mut Box_, token: &str) -> (String, Duration) {
    let started = std::time::Instant::now();
    let t = format!("T={token}");
    let name = b.name.clone();
    let out = b.ok(&["exec", &name, "--env", &t, "--", "sh", "-c", &curl("/tmp/answer")]).await;
    (out, started.elapsed())
}

/// `sbx attach NAME` in the background, once it says it is attached; its stderr is collected.
async fn attach(b: &Box_) -> (tokio::process::Child, std::sync::Arc<std::sync::Mutex<String>>) {
    use tokio::io::AsyncBufReadExt;
    let mut child =
        b.command(&["attach", &b.name]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("sbx attach");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sink = log.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("attached:") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
            let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
            l.push_str(&line);
            l.push('\n');
        }
    });
    let attached = tokio::time::timeout(Duration::from_secs(60), rx).await;
    assert!(matches!(attached, Ok(Ok(()))), "sbx attach attached: {}", log.lock().unwrap_or_else(|e| e.into_inner()));
    (child, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_streams_limits_revokes_waits_and_expires() {
    let llm = FakeLlm::start().await;
    let (mut b, anthropic, _) = keyless_box(&llm, "edges");
    let name = b.name.clone();
    let image = crate::conformance::base_image();
    b.ok(&[
        "up",
        "--provider",
        "docker",
        "--image",
        &image,
        "--name",
        &name,
        "--agents",
        "claude",
        "--agents-from",
        "from-host",
        "--keyless=claude",
        "--keyless-ttl",
        "8s",
        "--keyless-rpm",
        "2",
        "--keyless-wait",
        "2s",
    ])
    .await;
    let _down = Down(b.home.path().to_path_buf(), name.clone());
    let (mut attach_child, attach_log) = attach(&b).await;
    let token = relay_token(&b);

    // Streaming: the first delta is in the sandbox while the fake still holds the answer open.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.push(Reply::Held { text: "one two three".into(), release: release.clone() });
    let t = format!("T={token}");
    let mut streaming =
        b.command(&["exec", &name, "--env", &t, "--", "sh", "-c", &curl("/tmp/stream")]).stdout(std::process::Stdio::piped()).spawn().expect("exec");
    let first_delta = sbx_tests::wait_for(Duration::from_secs(60), || {
        let cmd = b.command(&["exec", &name, "--", "sh", "-c", "cat /tmp/stream 2>/dev/null; true"]);
        async move {
            let mut cmd = cmd;
            let out = cmd.output().await.expect("exec cat");
            String::from_utf8_lossy(&out.stdout).contains("text_delta")
        }
    })
    .await;
    if !first_delta {
        let so_far = String::from_utf8_lossy(&b.sh("cat /tmp/stream; ps -ef", b"").await).into_owned();
        let attached = attach_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        panic!("the first delta did not reach the sandbox in 60 s.\nsandbox: {so_far}\nattach: {attached}\nfake: {:?}", asked(&llm));
    }
    assert!(streaming.try_wait().expect("try_wait").is_none(), "the answer is still open (held by the fake)");
    let partial = String::from_utf8_lossy(&b.sh("cat /tmp/stream", b"").await).into_owned();
    assert!(!partial.contains("message_stop"), "{partial}");
    release.notify_one();
    let out = streaming.wait_with_output().await.expect("streaming exec");
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    // The fake splits the text into deltas ("one t", "wo th", "ree"): join them before looking.
    let text: String = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "text_delta")
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert!(seen.contains("HTTP 200") && seen.contains("message_stop") && text.contains("three"), "{seen}");

    // The rate limit (2 a minute): the second passes, the third gets 429 with a readable body.
    let (out, _) = relay_call(&mut b, &token).await;
    assert!(out.contains("HTTP 200"), "{out}");
    let (out, _) = relay_call(&mut b, &token).await;
    assert!(out.contains("HTTP 429") && out.contains("rate_limit_error") && out.contains("2 model requests per minute"), "{out}");

    // Revoked: 401 for a request, and a Claude session shows the error.
    b.ok(&["auth", "revoke", &name]).await;
    let (out, _) = relay_call(&mut b, &token).await;
    assert!(out.contains("HTTP 401") && out.contains("authentication_error") && out.contains("revoked"), "{out}");
    b.ok(&["session", "new", &name, "--agent", "claude", "--id", "k1", "-e", "CLAUDE_CODE_MAX_RETRIES=0"]).await;
    let failed = b.run(&["session", "send", &name, "k1", "say hi"]).await;
    assert!(!failed.status.success(), "the turn failed: {}", String::from_utf8_lossy(&failed.stdout));
    let events: Vec<Event> =
        b.ok(&["session", "events", &name, "k1", "--json"]).await.lines().map(|l| serde_json::from_str(l).expect("event")).collect();
    let errors: Vec<String> = events.iter().filter(|e| e.body.type_name() == "error").map(|e| serde_json::to_string(e).unwrap_or_default()).collect();
    assert!(errors.iter().any(|e| e.contains("model_auth") && e.contains("401")), "an error event with the 401: {errors:#?}");

    // A new token; then nothing attached: the request waits (2 s) and gets 503.
    b.ok(&["auth", "renew", &name]).await;
    let fresh = relay_token(&b);
    assert_ne!(fresh, token);
    let _ = attach_child.start_kill();
    let _ = attach_child.wait().await;
    let attach_log = attach_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(attach_log.contains("429") && attach_log.contains("401"), "sbx attach printed a line per request: {attach_log}");
    let (out, took) = relay_call(&mut b, &fresh).await;
    assert!(out.contains("HTTP 503") && out.contains("no sbx host is attached"), "{out}");
    assert!(took < Duration::from_secs(60), "the wait is bounded: {took:?}");

    // Past its lifetime (8 s) with nothing renewing it, the token stays dead even once a host attaches.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (mut attach_child, _) = attach(&b).await;
    let (out, _) = relay_call(&mut b, &fresh).await;
    assert!(out.contains("HTTP 401") && out.contains("expired"), "{out}");
    let _ = attach_child.start_kill();
    let _ = attach_child.wait().await;

    let rows = usage_rows(&b.ok(&["usage", &name, "--json"]).await);
    let statuses: Vec<u64> = rows.iter().filter_map(|r| r["status"].as_u64()).collect();
    for s in [200, 429, 401] {
        assert!(statuses.contains(&s), "an audit row with {s}: {statuses:?}");
    }
    let hits = b.scan(&[("the Anthropic key", anthropic.as_str())]).await;
    assert!(hits.is_empty(), "{hits:#?}");
}

/// The real `claude` completes a turn through the relay on `target` (`sbx prompt` serves the relay while
/// it runs); the fake sees the real key, and the sandbox holds neither it nor the runtime token.
async fn a_claude_turn_through_the_relay_on(target: Target, extra_up: &[&str]) {
    let llm = FakeLlm::start().await;
    let provider = target.provider();
    let (mut b, anthropic, _) = keyless_box_on(target, &llm, provider);
    let name = b.name.clone();
    let image = crate::conformance::base_image();
    let mut up = vec!["up", "--provider", provider, "--name", &name, "--agents", "claude", "--agents-from", "from-host", "--keyless=claude"];
    if provider == "docker" {
        up.extend(["--image", image.as_str()]);
    }
    up.extend(extra_up);
    b.ok(&up).await;
    let _down = Down(b.home.path().to_path_buf(), name.clone());
    let answer = format!("Relayed on {provider}.");
    let reply = answer.clone();
    llm.set_default(Reply::with(move |_| Reply::text(reply.clone())));
    let out = b.ok(&["prompt", &name, "say hello", "--agent", "claude", "--approve", "all"]).await;
    assert!(out.contains(&answer), "claude's answer on {provider}: {out}\n{:?}", asked(&llm));
    let relay = relay_token(&b);
    let posts: Vec<_> = llm.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert!(!posts.is_empty());
    for r in &posts {
        assert_eq!(r.header("x-api-key"), Some(anthropic.as_str()), "{} reached the fake with the real key", r.path);
        assert!(r.headers.iter().all(|(_, v)| !v.contains(&relay)), "the relay token never leaves the host");
    }
    let token = b.token();
    let secrets = [("the Anthropic key", anthropic.as_str()), ("the runtime token", token.as_str())];
    let hits = b.scan(&secrets).await;
    assert!(hits.is_empty(), "secrets inside the keyless {provider} sandbox: {hits:#?}");
    b.ok(&["down", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_turn_through_the_relay_on_local() {
    a_claude_turn_through_the_relay_on(Target::Local, &[]).await;
}

/// No network at all: the relay (over the runtime's own connection to this host) is the only way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_turn_through_the_relay_on_docker_without_network() {
    assert!(sbx_tests::docker_available(), "Docker is required");
    a_claude_turn_through_the_relay_on(Target::Docker, &["--network", "none"]).await;
}

/// The fake E2B's sandboxes have no route to this host's loopback, where the fake LLM listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_turn_through_the_relay_on_e2b() {
    assert!(sbx_tests::docker_available(), "Docker is required (the fake E2B runs sandboxes as containers)");
    a_claude_turn_through_the_relay_on(Target::E2b(sbx_tests::fakes::e2b::FakeE2b::start().await), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_turn_through_the_relay_on_daytona() {
    assert!(sbx_tests::docker_available(), "Docker is required (the fake Daytona runs sandboxes as containers)");
    a_claude_turn_through_the_relay_on(Target::Daytona(sbx_tests::fakes::daytona::FakeDaytona::start().await), &[]).await;
}

/// `sbx proxy --daemon` serves the relay with no `sbx` in the foreground, a second `--daemon` finds the
/// first, and `--stop` ends it (then requests wait and get 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_proxy_serves_the_relay_until_stopped() {
    let llm = FakeLlm::start().await;
    let (mut b, _, _) = keyless_box(&llm, "daemon");
    let name = b.name.clone();
    let image = crate::conformance::base_image();
    b.ok(&["up", "--provider", "docker", "--image", &image, "--name", &name, "--keyless=claude", "--keyless-wait", "2s"]).await;
    let _down = Down(b.home.path().to_path_buf(), name.clone());
    let stop = ProxyStop(b.command(&["proxy", "--stop"]));
    let started: Value = serde_json::from_str(&b.ok(&["proxy", "--daemon", "--json"]).await).expect("json");
    let pid = started["pid"].as_i64().expect("pid");
    assert_eq!(started["alreadyRunning"], false, "{started}");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the background proxy runs");
    let again: Value = serde_json::from_str(&b.ok(&["proxy", "--daemon", "--json"]).await).expect("json");
    assert_eq!((again["pid"].as_i64(), &again["alreadyRunning"]), (Some(pid), &Value::Bool(true)), "{again}");

    // It picks the sandbox up within a few seconds; then a model request is relayed.
    let token = relay_token(&b);
    let mut served = String::new();
    for _ in 0..20 {
        let (out, _) = relay_call(&mut b, &token).await;
        served = out;
        if served.contains("HTTP 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(served.contains("HTTP 200"), "{served}");
    let log = std::fs::read_to_string(b.home.path().join("state/sbx/proxy.log")).unwrap_or_default();
    assert!(log.contains(&format!("serving `{name}`")), "{log}");

    let stopped: Value = serde_json::from_str(&b.ok(&["proxy", "--stop", "--json"]).await).expect("json");
    assert_eq!(stopped["pid"].as_i64(), Some(pid), "{stopped}");
    std::mem::forget(stop);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid), "the background proxy ended");
    let (out, _) = relay_call(&mut b, &token).await;
    assert!(out.contains("HTTP 503"), "nothing serves the relay once stopped: {out}");
}

fn is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// Stops the background proxy if the test ends early.
struct ProxyStop(tokio::process::Command);
impl Drop for ProxyStop {
    fn drop(&mut self) {
        let _ = self.0.as_std_mut().output();
    }
}
