//! The `claude` adapter with the real Claude Code binary (from the claude-agent-sdk wheel) against the
//! fake LLM: multi-turn, tool use through the runtime's permission MCP tool, denial, questions, model
//! API errors, a crashing agent, and SIGKILL of the runtime mid-turn.
//!
//! Skipped (with a message) when `SBX_CLAUDE_BIN` is unset, unless `SBX_REQUIRE_AGENTS=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sbx_agent::api::session::{
    ContentPart, CreateSessionRequest, EndReason, Event, EventData, PermissionDecision, PermissionPolicy, SessionState,
    TurnOutcome,
};
use sbx_agent::client::Client;
use sbx_tests::sessions::{all_events, assert_gapless};
use sbx_tests::fake_llm::{FakeLlm, Reply};
use sbx_tests::{wait_for, TestRuntime};
use serde_json::json;

/// The real claude binary, or `None` (and a message) when this machine has none.
pub fn claude_bin() -> Option<PathBuf> {
    match std::env::var_os("SBX_CLAUDE_BIN").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("SBX_REQUIRE_AGENTS").as_deref() == Ok("1") => {
            panic!("SBX_REQUIRE_AGENTS=1 but SBX_CLAUDE_BIN is unset: run install/test-deps.sh")
        }
        None => {
            eprintln!("skipped: SBX_CLAUDE_BIN is unset (install/test-deps.sh provides it)");
            None
        }
    }
}

/// Makes `binary` the runtime's `claude` by linking it into the state dir's agent directory.
fn provide_claude(state: &Path, binary: &Path) {
    let bin = state.join("agents/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(binary, bin.join("claude")).unwrap();
}

struct Setup {
    rt: TestRuntime,
    llm: FakeLlm,
    home: tempfile::TempDir,
    _state: tempfile::TempDir,
}

async fn setup(binary: &Path) -> Setup {
    let state = tempfile::tempdir().unwrap();
    provide_claude(state.path(), binary);
    let dir = state.path().to_path_buf();
    let rt = TestRuntime::start_with(move |c| c.state_dir = Some(dir)).await;
    Setup { rt, llm: FakeLlm::start().await, home: tempfile::tempdir().unwrap(), _state: state }
}

fn claude_env(llm: &FakeLlm, home: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("ANTHROPIC_BASE_URL".into(), llm.base_url()),
        ("ANTHROPIC_API_KEY".into(), "sk-test-not-a-real-key".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(), "1".into()),
        ("HOME".into(), home.to_string_lossy().into_owned()),
        // Fail fast on model API errors instead of retrying with backoff for minutes.
        ("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()),
    ])
}

fn session(s: &Setup, cwd: &Path, policy: PermissionPolicy) -> CreateSessionRequest {
    CreateSessionRequest {
        agent: "claude".into(),
        cwd: Some(cwd.to_string_lossy().into_owned()),
        permission_policy: policy,
        env: claude_env(&s.llm, s.home.path()),
        ..Default::default()
    }
}

/// Sends `text` and waits (bounded) for its turn to end; replies to permission requests with `decide`.
async fn turn(client: &Client, id: &str, text: &str, decide: impl Fn(&str) -> PermissionDecision) -> Vec<Event> {
    let t = client.send_message(id, text, false).await.unwrap();
    let mut follow = client.follow_events(id, t.first_sequence - 1).await.unwrap();
    let mut out = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(ev) = follow.next().await {
            let ev = ev.unwrap();
            if let EventData::PermissionRequested(p) = &ev.body {
                let info = client.session(id).await.unwrap();
                if info.pending_permissions.contains(&p.permission_id) {
                    client.reply_permission(id, &p.permission_id, decide(&p.tool_name), Some("not this time".into())).await.unwrap();
                }
            }
            let done = matches!(ev.body, EventData::TurnCompleted(_));
            out.push(ev);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "turn did not end within 120 s: {:?}", out.iter().map(|e| e.body.type_name()).collect::<Vec<_>>());
    out
}

fn completed(events: &[Event]) -> sbx_agent::api::session::TurnCompleted {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventData::TurnCompleted(t) => Some(t.clone()),
            _ => None,
        })
        .expect("turn.completed")
}

#[tokio::test]
async fn claude_two_turns_write_a_file_through_a_tool_then_answer() {
    let Some(bin) = claude_bin() else { return };
    let s = setup(&bin).await;
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("hello.txt");
    s.llm.push(Reply::tool("Write", json!({"file_path": target, "content": "hi from claude"})));
    s.llm.push(Reply::text("I wrote hello.txt."));
    s.llm.push(Reply::text("The answer is 42."));
    let info = s.rt.client.create_session(&session(&s, work.path(), PermissionPolicy::AllowAll)).await.unwrap();

    let t1 = turn(&s.rt.client, &info.id, "write hello.txt", |_| PermissionDecision::Allow).await;
    let done = completed(&t1);
    assert_eq!(done.outcome, TurnOutcome::Completed, "{t1:#?}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "hi from claude");
    let t2 = turn(&s.rt.client, &info.id, "what is the answer?", |_| PermissionDecision::Allow).await;
    let done2 = completed(&t2);
    assert_eq!(done2.text.as_deref(), Some("The answer is 42."));
    assert!(done2.usage.is_some_and(|u| u.output_tokens > 0));

    let events = all_events(&s.rt.client, &info.id).await;
    assert_gapless(&events);
    let kinds: Vec<&str> = events.iter().map(|e| e.body.type_name()).collect();
    assert_eq!(kinds[0], "session.started");
    assert_eq!(kinds.iter().filter(|k| **k == "turn.completed").count(), 2);
    // The tool call streamed its arguments, was asked about (and allowed by policy), and has a result.
    let call = events.iter().find_map(|e| match &e.body {
        EventData::ItemCompleted(i) => i.content.iter().find_map(|c| match c {
            ContentPart::ToolCall { name, arguments, call_id } if name == "Write" => Some((arguments.clone(), call_id.clone(), i.item_id.clone())),
            _ => None,
        }),
        _ => None,
    });
    let (args, call_id, call_item) = call.expect("a Write tool call item");
    assert_eq!(args["content"], "hi from claude");
    let asked = events.iter().find_map(|e| match &e.body {
        EventData::PermissionRequested(p) => Some(p.clone()),
        _ => None,
    });
    let asked = asked.expect("permission.requested");
    assert_eq!((asked.tool_name.as_str(), asked.item_id.as_deref()), ("Write", Some(call_item.as_str())));
    assert!(events.iter().any(|e| matches!(&e.body, EventData::PermissionResolved(r) if r.by == "policy" && r.decision == PermissionDecision::Allow)));
    let result = events.iter().any(|e| match &e.body {
        EventData::ItemCompleted(i) => i.parent_id.as_deref() == Some(call_item.as_str())
            && i.content.iter().any(|c| matches!(c, ContentPart::ToolResult { call_id: c, is_error: false, .. } if *c == call_id)),
        _ => false,
    });
    assert!(result, "a tool result item parented to the call");
    // Text arrives as deltas with the native stream event kept in `raw`.
    let delta = events.iter().find(|e| matches!(e.body, EventData::ItemDelta(_))).expect("deltas");
    assert_eq!(delta.raw.as_ref().and_then(|r| r["type"].as_str()), Some("stream_event"));
    // The native session id is known and the turn text of turn 1 came through.
    assert!(s.rt.client.session(&info.id).await.unwrap().native_session_id.is_some());
    assert_eq!(completed(&t1).text.as_deref(), Some("I wrote hello.txt."));
    s.rt.client.end_session(&info.id, false).await.unwrap();
    s.rt.stop().await;
}

#[tokio::test]
async fn claude_denied_permission_keeps_the_tool_from_running_and_claude_is_told() {
    let Some(bin) = claude_bin() else { return };
    let s = setup(&bin).await;
    let work = tempfile::tempdir().unwrap();
    s.llm.push(Reply::tool("Bash", json!({"command": "touch denied.txt", "description": "make a file"})));
    s.llm.push(Reply::text("Understood, I will not."));
    let info = s.rt.client.create_session(&session(&s, work.path(), PermissionPolicy::Ask)).await.unwrap();
    let events = turn(&s.rt.client, &info.id, "make a file", |_| PermissionDecision::Deny).await;
    assert_eq!(completed(&events).outcome, TurnOutcome::Completed);
    assert!(!work.path().join("denied.txt").exists(), "a denied command must not run");
    assert!(events.iter().any(|e| matches!(&e.body, EventData::PermissionResolved(r) if r.by == "user" && r.decision == PermissionDecision::Deny)));
    let told = s.llm.conversation_requests().iter().filter_map(|r| r.last_tool_result()).next_back().expect("a tool_result went back to the model");
    assert!(told.is_error && told.content.contains("not this time"), "{told:?}");
    s.rt.stop().await;
}

#[tokio::test]
async fn claude_asks_questions_through_question_events() {
    let Some(bin) = claude_bin() else { return };
    let s = setup(&bin).await;
    let work = tempfile::tempdir().unwrap();
    let q = json!({"questions": [{"question": "Which colour?", "header": "Colour", "multiSelect": false,
        "options": [{"label": "red", "description": "warm"}, {"label": "blue", "description": "cool"}]}]});
    s.llm.push(Reply::tool("AskUserQuestion", q));
    s.llm.push(Reply::text("Blue it is."));
    let info = s.rt.client.create_session(&session(&s, work.path(), PermissionPolicy::Ask)).await.unwrap();
    let t = s.rt.client.send_message(&info.id, "pick a colour with me", false).await.unwrap();
    let mut follow = s.rt.client.follow_events(&info.id, t.first_sequence - 1).await.unwrap();
    let mut asked = None;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(ev) = follow.next().await {
            match ev.unwrap().body {
                EventData::QuestionRequested(q) => {
                    asked = Some((q.question.clone(), q.options.clone()));
                    s.rt.client.reply_question(&info.id, &q.question_id, Some("blue".into())).await.unwrap();
                }
                EventData::TurnCompleted(_) => break,
                _ => {}
            }
        }
    })
    .await
    .expect("turn ends");
    assert_eq!(asked, Some(("Which colour?".to_owned(), vec!["red".to_owned(), "blue".to_owned()])));
    let answered = s.llm.conversation_requests().iter().filter_map(|r| r.last_tool_result()).next_back().expect("tool_result");
    assert!(answered.content.contains("blue"), "the answer reaches the model: {answered:?}");
    s.rt.stop().await;
}

#[tokio::test]
async fn claude_model_errors_become_error_events_without_hanging() {
    let Some(bin) = claude_bin() else { return };
    let s = setup(&bin).await;
    let work = tempfile::tempdir().unwrap();
    let info = s.rt.client.create_session(&session(&s, work.path(), PermissionPolicy::AllowAll)).await.unwrap();
    for (status, code) in [(401, "model_auth"), (429, "model_rate_limited"), (500, "model_error")] {
        s.llm.push(Reply::Error { status, retry_after: Some(0) });
        let events = turn(&s.rt.client, &info.id, "hello", |_| PermissionDecision::Allow).await;
        assert_eq!(completed(&events).outcome, TurnOutcome::Failed, "status {status}");
        let err = events.iter().find_map(|e| match &e.body {
            EventData::Error(x) => Some(x.clone()),
            _ => None,
        });
        let err = err.unwrap_or_else(|| panic!("an error event for {status}"));
        assert_eq!(err.code, code, "{err:?}");
        assert_eq!(err.status, Some(status));
    }
    // The session survives model errors.
    s.llm.push(Reply::text("fine now"));
    let events = turn(&s.rt.client, &info.id, "again", |_| PermissionDecision::Allow).await;
    assert_eq!(completed(&events).text.as_deref(), Some("fine now"));
    s.rt.stop().await;
}

#[tokio::test]
async fn a_crashing_agent_ends_the_session_with_reason_error() {
    // No real claude needed: a `claude` that dies at once.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-claude");
    std::fs::write(&fake, "#!/bin/sh\necho 'fatal: something broke' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let state = tempfile::tempdir().unwrap();
    provide_claude(state.path(), &fake);
    let sd = state.path().to_path_buf();
    let rt = TestRuntime::start_with(move |c| c.state_dir = Some(sd)).await;
    let info = rt.client.create_session(&CreateSessionRequest { agent: "claude".into(), ..Default::default() }).await.unwrap();
    let r = rt.client.send_message(&info.id, "hello", true).await.unwrap();
    assert_eq!(r.completed.unwrap().outcome, TurnOutcome::Failed);
    let events = all_events(&rt.client, &info.id).await;
    assert_gapless(&events);
    let crash = events.iter().find_map(|e| match &e.body {
        EventData::Error(x) if x.code == "agent_crashed" => Some(x.message.clone()),
        _ => None,
    });
    assert!(crash.expect("agent_crashed").contains("something broke"), "the agent's last words are in the error");
    match &events.last().unwrap().body {
        EventData::SessionEnded(e) => assert_eq!(e.reason, EndReason::Error),
        other => panic!("{other:?}"),
    }
    rt.stop().await;
}

/// SIGKILL the real runtime binary while claude streams, start it again, and continue: the journal
/// served before and after is identical up to the kill, and claude resumes its own session.
#[tokio::test]
async fn claude_session_survives_a_sigkilled_runtime() {
    let Some(bin) = claude_bin() else { return };
    let state = tempfile::tempdir().unwrap();
    provide_claude(state.path(), &bin);
    let llm = FakeLlm::start().await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = sbx_tests::sessions::free_port();
    let token = sbx_tests::random_token();
    let spawn = || sbx_tests::sessions::spawn_runtime(port, state.path(), &token);
    let client = Client::new(&format!("http://127.0.0.1:{port}"), Some(token.clone())).unwrap();
    let mut child = spawn();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let req = CreateSessionRequest {
        agent: "claude".into(),
        cwd: Some(work.path().to_string_lossy().into_owned()),
        permission_policy: PermissionPolicy::AllowAll,
        env: claude_env(&llm, home.path()),
        ..Default::default()
    };
    let info = client.create_session(&req).await.unwrap();
    llm.push(Reply::text("first answer"));
    let t1 = turn(&client, &info.id, "remember the word pineapple", |_| PermissionDecision::Allow).await;
    assert_eq!(completed(&t1).outcome, TurnOutcome::Completed);
    // Turn 2 streams slowly; kill the runtime in the middle of it.
    llm.push(Reply::SlowText { text: "a slow answer that never finishes".into(), chunks: 40, delay_ms: 250 });
    let t2 = client.send_message(&info.id, "tell me slowly", false).await.unwrap();
    let mut follow = client.follow_events(&info.id, 0).await.unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = follow.next().await {
        let ev = ev.unwrap();
        let delta = ev.sequence > t2.first_sequence && matches!(ev.body, EventData::ItemDelta(_));
        seen.push(ev);
        if delta {
            break;
        }
    }
    drop(follow);
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let mut child = spawn();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let events = all_events(&client, &info.id).await;
    assert_gapless(&events);
    assert_eq!(&events[..seen.len()], &seen[..], "nothing acknowledged before the kill is lost or changed");
    assert!(matches!(&events.last().unwrap().body, EventData::TurnCompleted(t) if t.outcome == TurnOutcome::Cancelled));
    assert_eq!(client.session(&info.id).await.unwrap().state, SessionState::Idle);
    // The next turn resumes claude's own session: the model sees the earlier conversation.
    llm.push(Reply::text("pineapple"));
    let t3 = turn(&client, &info.id, "what was the word?", |_| PermissionDecision::Allow).await;
    assert_eq!(completed(&t3).text.as_deref(), Some("pineapple"));
    let last = llm.conversation_requests().last().cloned().expect("a request");
    assert!(last.body.to_string().contains("pineapple"), "the resumed request carries the earlier turns");
    assert_gapless(&all_events(&client, &info.id).await);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// The real claude inside a Docker sandbox, all through the CLI: `sbx agent install --from-host`
/// copies the host's binary in, then a two-turn session against the fake LLM on the Docker bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_in_a_docker_sandbox_through_the_cli() {
    let Some(bin) = claude_bin() else { return };
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let Some(gateway) = sbx_tests::fake_llm::docker_bridge_gateway() else {
        panic!("Docker answers but its bridge network has no gateway address to put the fake LLM on");
    };
    let llm = FakeLlm::start_on(gateway).await;
    let home = tempfile::tempdir().unwrap();
    let name = format!("claude-{}", &sbx_tests::random_token()[..8]);
    let sbx = |args: &[&str]| {
        let home = home.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let bin = bin.clone();
        async move {
            tokio::process::Command::new(sbx_tests::bin("sbx"))
                .args(&args)
                .env("XDG_STATE_HOME", &home)
                .env("SBX_RUNTIME", sbx_tests::static_runtime())
                .env("SBX_CLAUDE_BIN", &bin)
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .unwrap()
        }
    };
    let ok = |out: &std::process::Output, what: &str| {
        assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    struct Down(std::path::PathBuf, String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = std::process::Command::new(sbx_tests::bin("sbx")).args(["down", &self.1]).env("XDG_STATE_HOME", &self.0).output();
        }
    }
    ok(&sbx(&["up", "--provider", "docker", "--image", &crate::conformance::base_image(), "--name", &name]).await, "sbx up");
    let _down = Down(home.path().to_path_buf(), name.clone());
    let out = sbx(&["agent", "install", &name, "claude", "--from-host", "--json"]).await;
    let installed: serde_json::Value = serde_json::from_str(&ok(&out, "agent install")).unwrap();
    assert_eq!(installed["source"], "path");
    assert!(installed["agent"]["version"].as_str().unwrap_or_default().contains("Claude Code"), "{installed}");

    llm.push(Reply::tool("Write", json!({"file_path": "/tmp/work/hello.txt", "content": "written in docker"})));
    llm.push(Reply::text("Done: hello.txt is written."));
    llm.push(Reply::text("It says: written in docker."));
    ok(&sbx(&["exec", &name, "--", "mkdir", "-p", "/tmp/work"]).await, "mkdir");
    let base = format!("ANTHROPIC_BASE_URL={}", llm.base_url());
    let out = sbx(&[
        "session", "new", &name, "--agent", "claude", "--permission-mode", "allow-all", "--cwd", "/tmp/work", "--id", "c1",
        "-e", &base, "-e", "ANTHROPIC_API_KEY=sk-test-not-real", "-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "-e", "CLAUDE_CODE_MAX_RETRIES=0",
    ])
    .await;
    assert_eq!(ok(&out, "session new"), "c1\n");
    let out = sbx(&["session", "send", &name, "c1", "write hello.txt"]).await;
    assert_eq!(ok(&out, "turn 1"), "Done: hello.txt is written.\n");
    let out = sbx(&["exec", &name, "--", "cat", "/tmp/work/hello.txt"]).await;
    assert_eq!(ok(&out, "cat"), "written in docker");
    let out = sbx(&["session", "send", &name, "c1", "what does it say?"]).await;
    assert_eq!(ok(&out, "turn 2"), "It says: written in docker.\n");
    let out = sbx(&["session", "events", &name, "c1", "--json"]).await;
    let events: Vec<Event> = ok(&out, "events").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_gapless(&events);
    let kinds: Vec<&str> = events.iter().map(|e| e.body.type_name()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "turn.completed").count(), 2);
    assert!(kinds.contains(&"permission.requested") && kinds.contains(&"item.delta"));
    // The runtime's pre-turn reachability check (a bare GET of the base URL) carries no key by design;
    // every request to the model API does.
    let model_requests: Vec<_> = llm.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert!(!model_requests.is_empty() && model_requests.iter().all(|r| r.auth), "every model request carried the key the user passed");
}

/// MCP servers and skills given at session creation reach Claude Code in its own config.
#[tokio::test]
async fn claude_gets_the_sessions_mcp_servers_and_skills() {
    let Some(bin) = claude_bin() else { return };
    let s = setup(&bin).await;
    let work = tempfile::tempdir().unwrap();
    let skill = work.path().join("skills/release-notes");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("SKILL.md"), "---\nname: release-notes\ndescription: Write release notes.\n---\nList the changes.\n").unwrap();
    let mut req = session(&s, work.path(), PermissionPolicy::AllowAll);
    // Any stdio MCP server will do: the runtime's own permission server answers `initialize`.
    req.mcp_servers = vec![sbx_agent::api::session::McpServer {
        name: "extra".into(),
        command: Some(sbx_tests::bin("sbx-agent").to_string_lossy().into_owned()),
        args: vec!["permission-mcp".into(), "--socket".into(), "/nonexistent".into()],
        env: Default::default(),
        url: None,
        headers: Default::default(),
    }];
    req.skills = vec![skill.to_string_lossy().into_owned()];
    s.llm.push(Reply::text("hello"));
    let info = s.rt.client.create_session(&req).await.unwrap();
    let events = turn(&s.rt.client, &info.id, "hi", |_| PermissionDecision::Allow).await;
    let init = events
        .iter()
        .find_map(|e| match &e.body {
            EventData::ItemCompleted(i) if i.kind == sbx_agent::api::session::ItemKind::System => e.raw.clone(),
            _ => None,
        })
        .expect("an init system item with claude's own init line in raw");
    let servers: Vec<&str> = init["mcp_servers"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(servers.contains(&"extra") && servers.contains(&"sbx"), "{servers:?}");
    assert!(s.home.path().join(".claude/skills/release-notes/SKILL.md").exists(), "the skill is linked into ~/.claude/skills");
    let skills = init["skills"].to_string();
    assert!(skills.contains("release-notes"), "claude sees the skill: {skills}");
    s.rt.stop().await;
}

/// Two claude sessions in one runtime at the same time: each gets its own answer and its own gapless
/// stream.
#[tokio::test]
async fn two_claude_sessions_at_once() {
    let Some(bin) = claude_bin() else { return };
    let s = setup(&bin).await;
    let (wa, wb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The fake answers by what the request asks, so the two sessions can't take each other's reply.
    s.llm.set_default(Reply::with(|r| {
        let asked = r.last_user_text().unwrap_or_default();
        Reply::SlowText { text: if asked.contains("alpha") { "answer alpha".into() } else { "answer beta".into() }, chunks: 5, delay_ms: 100 }
    }));
    let a = s.rt.client.create_session(&session(&s, wa.path(), PermissionPolicy::AllowAll)).await.unwrap();
    let b = s.rt.client.create_session(&session(&s, wb.path(), PermissionPolicy::AllowAll)).await.unwrap();
    let (ea, eb) = tokio::join!(
        turn(&s.rt.client, &a.id, "say alpha", |_| PermissionDecision::Allow),
        turn(&s.rt.client, &b.id, "say beta", |_| PermissionDecision::Allow),
    );
    assert_eq!(completed(&ea).text.as_deref(), Some("answer alpha"));
    assert_eq!(completed(&eb).text.as_deref(), Some("answer beta"));
    for id in [&a.id, &b.id] {
        let events = all_events(&s.rt.client, id).await;
        assert_gapless(&events);
        assert!(events.iter().all(|e| &e.session_id == id));
    }
    s.rt.stop().await;
}
