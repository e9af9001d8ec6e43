//! Agent sessions through the runtime's HTTP API, with the built-in mock agent: the event schema,
//! turns, permissions and questions, cancel, crashes, resuming streams, and surviving a SIGKILL.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use sbx_agent::api::session::{
    ContentPart, CreateSessionRequest, EndReason, Event, EventData, EventSource, PermissionDecision, PermissionPolicy,
    SessionState, TurnOutcome,
};
use sbx_agent::client::Client;
use sbx_tests::sessions::{all_events, assert_gapless, types, free_port};
use sbx_tests::{wait_for, TestRuntime};

fn mock(policy: PermissionPolicy) -> CreateSessionRequest {
    CreateSessionRequest { agent: "mock".into(), permission_policy: policy, ..Default::default() }
}

/// Follows the session's events from `offset` until a `turn.completed` and returns them.
async fn until_turn_completed(client: &Client, id: &str, offset: u64) -> Vec<Event> {
    let mut follow = client.follow_events(id, offset).await.expect("follow");
    let mut out = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = follow.next().await {
            let ev = ev.expect("event");
            let done = matches!(ev.body, EventData::TurnCompleted(_));
            out.push(ev);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "no turn.completed within 60 s; got {:?}", types(&out));
    out
}

#[tokio::test]
async fn two_turns_write_a_file_then_answer_with_a_gapless_event_stream() {
    let rt = TestRuntime::start_rooted().await;
    let s = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    assert_eq!(s.state, SessionState::Idle);
    let t1 = rt.client.send_message(&s.id, "write notes/hello.txt hi there", true).await.unwrap();
    let done = t1.completed.expect("waited for the turn");
    assert_eq!(done.outcome, TurnOutcome::Completed);
    assert_eq!(std::fs::read_to_string(rt.root_path().join("notes/hello.txt")).unwrap(), "hi there");
    let t2 = rt.client.send_message(&s.id, "echo all done", true).await.unwrap();
    assert_eq!(t2.completed.unwrap().text.as_deref(), Some("all done"));

    let events = all_events(&rt.client, &s.id).await;
    assert_gapless(&events);
    assert!(events.iter().all(|e| e.session_id == s.id));
    let t = types(&events);
    assert_eq!(t[0], "session.started");
    assert_eq!(t.iter().filter(|t| **t == "turn.started").count(), 2);
    assert_eq!(t.iter().filter(|t| **t == "turn.completed").count(), 2);
    // Turn 1: the user's message, a tool call asked and allowed by policy, its result with the file.
    let first_turn: Vec<&str> = t[1..].iter().take_while(|t| **t != "turn.completed").copied().collect();
    assert_eq!(
        first_turn,
        vec![
            "turn.started", "item.started", "item.completed", // user message
            "item.started", "permission.requested", "permission.resolved", // tool call, asked
            "item.completed", "item.started", "item.completed", // call done, result
            "item.started", "item.delta", "item.completed", // assistant says so
        ]
    );
    let resolved = events.iter().find_map(|e| match &e.body {
        EventData::PermissionResolved(p) => Some(p.clone()),
        _ => None,
    });
    let resolved = resolved.unwrap();
    assert_eq!((resolved.decision, resolved.by.as_str()), (PermissionDecision::Allow, "policy"));
    let file_ref = events.iter().any(|e| match &e.body {
        EventData::ItemCompleted(i) => i.content.iter().any(|c| matches!(c, ContentPart::FileRef { path, .. } if path == "notes/hello.txt")),
        _ => false,
    });
    assert!(file_ref, "the tool result names the file it wrote");
    assert!(events.iter().filter(|e| e.source == EventSource::Runtime).all(|e| e.raw.is_none()));
    rt.stop().await;
}

#[tokio::test]
async fn a_denied_permission_keeps_the_tool_from_running_and_the_agent_is_told() {
    let rt = TestRuntime::start_rooted().await;
    let s = rt.client.create_session(&mock(PermissionPolicy::Ask)).await.unwrap();
    let turn = rt.client.send_message(&s.id, "write secret.txt nope", false).await.unwrap();
    let mut follow = rt.client.follow_events(&s.id, turn.first_sequence - 1).await.unwrap();
    let mut denied = false;
    let mut tool_error = None;
    while let Some(ev) = follow.next().await {
        let ev = ev.unwrap();
        match &ev.body {
            EventData::PermissionRequested(p) => {
                assert_eq!(p.tool_name, "write");
                let info = rt.client.session(&s.id).await.unwrap();
                assert_eq!(info.pending_permissions, vec![p.permission_id.clone()]);
                rt.client.reply_permission(&s.id, &p.permission_id, PermissionDecision::Deny, Some("not today".into())).await.unwrap();
                denied = true;
            }
            EventData::ItemCompleted(i) => {
                for c in &i.content {
                    if let ContentPart::ToolResult { output, is_error, .. } = c {
                        tool_error = Some((output.clone(), *is_error));
                    }
                }
            }
            EventData::TurnCompleted(_) => break,
            _ => {}
        }
    }
    assert!(denied);
    assert_eq!(tool_error, Some(("not today".to_owned(), true)), "the agent sees the denial as a failed tool result");
    assert!(!rt.root_path().join("secret.txt").exists(), "a denied tool must not run");
    // A second reply to the same request is a clear 404.
    let err = rt.client.reply_permission(&s.id, "perm_1", PermissionDecision::Allow, None).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    rt.stop().await;
}

#[tokio::test]
async fn questions_are_asked_and_answered() {
    let rt = TestRuntime::start().await;
    let s = rt.client.create_session(&mock(PermissionPolicy::Ask)).await.unwrap();
    let turn = rt.client.send_message(&s.id, "ask Deploy now?", false).await.unwrap();
    let mut follow = rt.client.follow_events(&s.id, turn.first_sequence - 1).await.unwrap();
    let mut text = None;
    while let Some(ev) = follow.next().await {
        match ev.unwrap().body {
            EventData::QuestionRequested(q) => {
                assert_eq!((q.question.as_str(), q.options.clone()), ("Deploy now?", vec!["yes".to_owned(), "no".to_owned()]));
                // A permission reply to a question id is refused with a pointer to the right route.
                let err = rt.client.reply_permission(&s.id, &q.question_id, PermissionDecision::Allow, None).await.unwrap_err();
                assert_eq!(err.status(), Some(400));
                rt.client.reply_question(&s.id, &q.question_id, Some("yes".into())).await.unwrap();
            }
            EventData::TurnCompleted(t) => {
                text = t.text;
                break;
            }
            _ => {}
        }
    }
    assert_eq!(text.as_deref(), Some("you answered: yes"));
    rt.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_turn_and_the_session_goes_on() {
    let rt = TestRuntime::start().await;
    let s = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    let turn = rt.client.send_message(&s.id, "sleep 60000\necho never", false).await.unwrap();
    // A second message while the turn runs is refused.
    let busy = rt.client.send_message(&s.id, "echo too soon", false).await.unwrap_err();
    assert_eq!(busy.status(), Some(409));
    assert!(rt.client.cancel_turn(&s.id).await.unwrap());
    let events = until_turn_completed(&rt.client, &s.id, turn.first_sequence - 1).await;
    match &events.last().unwrap().body {
        EventData::TurnCompleted(t) => assert_eq!(t.outcome, TurnOutcome::Cancelled),
        other => panic!("{other:?}"),
    }
    let next = rt.client.send_message(&s.id, "echo again", true).await.unwrap();
    assert_eq!(next.completed.unwrap().outcome, TurnOutcome::Completed);
    assert!(!rt.client.cancel_turn(&s.id).await.unwrap(), "nothing to cancel when idle");
    rt.stop().await;
}

#[tokio::test]
async fn a_failing_turn_reports_an_error_and_a_crash_ends_the_session() {
    let rt = TestRuntime::start().await;
    let s = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    let failed = rt.client.send_message(&s.id, "fail the build is red", true).await.unwrap();
    assert_eq!(failed.completed.unwrap().outcome, TurnOutcome::Failed);
    let crashed = rt.client.send_message(&s.id, "crash", true).await.unwrap();
    assert_eq!(crashed.completed.unwrap().outcome, TurnOutcome::Failed);
    let events = all_events(&rt.client, &s.id).await;
    assert_gapless(&events);
    let errors: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::Error(x) => Some((x.code.clone(), x.message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(errors[0], ("agent_error".to_owned(), "the build is red".to_owned()));
    assert_eq!(errors[1].0, "agent_crashed");
    match &events.last().unwrap().body {
        EventData::SessionEnded(e) => assert_eq!(e.reason, EndReason::Error),
        other => panic!("the last event must be session.ended, got {other:?}"),
    }
    let info = rt.client.session(&s.id).await.unwrap();
    assert_eq!(info.state, SessionState::Ended);
    let err = rt.client.send_message(&s.id, "echo hello?", false).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    rt.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_clearly() {
    let rt = TestRuntime::start().await;
    let unknown = rt.client.create_session(&CreateSessionRequest { agent: "gpt-pilot".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    assert!(unknown.to_string().contains("claude, codex, mock"), "{unknown}");
    let bad_id = rt.client.create_session(&CreateSessionRequest { id: Some("../x".into()), ..mock(PermissionPolicy::Ask) }).await.unwrap_err();
    assert_eq!(bad_id.status(), Some(400));
    let s = rt.client.create_session(&CreateSessionRequest { id: Some("mine".into()), ..mock(PermissionPolicy::Ask) }).await.unwrap();
    assert_eq!(s.id, "mine");
    let dup = rt.client.create_session(&CreateSessionRequest { id: Some("mine".into()), ..mock(PermissionPolicy::Ask) }).await.unwrap_err();
    assert_eq!(dup.status(), Some(409));
    let empty = rt.client.send_message("mine", "  ", false).await.unwrap_err();
    assert_eq!(empty.status(), Some(400));
    let missing = rt.client.session("nope").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    rt.stop().await;
}

#[tokio::test]
async fn an_agent_that_is_not_installed_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = TestRuntime::start_with(|c| c.state_dir = Some(dir.path().to_path_buf())).await;
    let agents = rt.client.list_agents().await.unwrap();
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    // The native adapters first, then the ACP presets (docs/acp.md).
    assert_eq!(ids[..3], ["claude", "codex", "mock"]);
    assert!(["vibe", "gemini", "opencode", "openhands"].iter().all(|a| ids.contains(a)), "{ids:?}");
    let mock_info = agents.iter().find(|a| a.id == "mock").unwrap();
    assert!(mock_info.installed && mock_info.capabilities.permissions);
    // Only meaningful where no claude is on PATH (the test machine keeps agents out of PATH).
    if !agents.iter().find(|a| a.id == "claude").unwrap().installed {
        let err = rt.client.create_session(&CreateSessionRequest { agent: "claude".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains("sbx agent install"), "{err}");
    }
    // Install from a binary already in the sandbox, checked by SHA-256.
    let fake = dir.path().join("fake-codex");
    std::fs::write(&fake, "#!/bin/sh\necho 'codex-cli 9.9.9'\n").unwrap();
    let wrong = sbx_agent::api::session::InstallAgentRequest {
        from_path: Some(fake.to_string_lossy().into()),
        sha256: Some("00".repeat(32)),
        ..Default::default()
    };
    let err = rt.client.install_agent("codex", &wrong).await.unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let right = sbx_agent::api::session::InstallAgentRequest { sha256: None, ..wrong };
    let done = rt.client.install_agent("codex", &right).await.unwrap();
    assert!(done.changed);
    assert_eq!(done.agent.version.as_deref(), Some("codex-cli 9.9.9"));
    assert!(done.agent.path.unwrap().starts_with(&*dir.path().to_string_lossy()));
    rt.stop().await;
}

#[tokio::test]
async fn two_sessions_run_at_once_without_mixing_events() {
    let rt = TestRuntime::start().await;
    let a = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    let b = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    let (ra, rb) = tokio::join!(
        rt.client.send_message(&a.id, "stream 500\necho from a", true),
        rt.client.send_message(&b.id, "stream 700\necho from b", true),
    );
    assert!(ra.unwrap().completed.unwrap().text.unwrap().ends_with("from a"));
    assert!(rb.unwrap().completed.unwrap().text.unwrap().ends_with("from b"));
    for (id, n) in [(&a.id, 500), (&b.id, 700)] {
        let events = all_events(&rt.client, id).await;
        assert_gapless(&events);
        assert!(events.iter().all(|e| &e.session_id == id));
        assert_eq!(events.iter().filter(|e| matches!(e.body, EventData::ItemDelta(_))).count(), n + 1);
    }
    rt.stop().await;
}

#[tokio::test]
async fn reconnecting_the_stream_ten_times_in_a_turn_loses_and_repeats_nothing() {
    let rt = TestRuntime::start().await;
    let s = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    rt.client.send_message(&s.id, "stream 3000\nsleep 300\nstream 3000", false).await.unwrap();
    let url = format!("{}/v1/sessions/{}/events/stream", rt.url(), s.id);
    let http = reqwest::Client::new();
    let mut seen: Vec<u64> = Vec::new();
    let mut last = 0u64;
    let mut reconnects = 0;
    loop {
        let resp = http.get(&url).bearer_auth(&rt.token).header("Last-Event-ID", last.to_string()).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let mut parser = sbx_agent::client::sse::SseParser::new();
        let mut got_here = 0;
        let mut finished = false;
        'read: while let Some(chunk) = body.next().await {
            parser.feed(&chunk.unwrap());
            while let Some(ev) = parser.next_event() {
                let e: Event = serde_json::from_str(&ev.data).unwrap();
                assert_eq!(ev.id.as_deref(), Some(e.sequence.to_string().as_str()));
                seen.push(e.sequence);
                last = e.sequence;
                got_here += 1;
                if matches!(e.body, EventData::TurnCompleted(_)) {
                    finished = true;
                    break 'read;
                }
                // Hang up mid-stream, ten times over.
                if reconnects < 10 && got_here >= 200 {
                    break 'read;
                }
            }
        }
        if finished {
            break;
        }
        reconnects += 1;
    }
    assert!(reconnects >= 10, "only {reconnects} reconnects");
    let want: Vec<u64> = (1..=last).collect();
    assert_eq!(seen, want, "every event exactly once, in order");
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len());
    rt.stop().await;
}

#[tokio::test]
async fn ended_sessions_keep_their_events_and_forget_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let rt = TestRuntime::start_with(|c| c.state_dir = Some(dir.path().to_path_buf())).await;
    let s = rt.client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    rt.client.send_message(&s.id, "echo keep me", true).await.unwrap();
    let ended = rt.client.end_session(&s.id, false).await.unwrap();
    assert_eq!(ended.state, SessionState::Ended);
    assert_eq!(ended.ended.unwrap().terminated_by, "user");
    let before = all_events(&rt.client, &s.id).await;
    let page = rt.client.session_events(&s.id, 0, None).await.unwrap();
    assert!(page.ended);
    rt.stop().await;

    // A new runtime on the same state directory serves the same events.
    let rt = TestRuntime::start_with(|c| c.state_dir = Some(dir.path().to_path_buf())).await;
    let after = all_events(&rt.client, &s.id).await;
    assert_eq!(before, after);
    assert!(rt.client.session_events(&s.id, 0, None).await.unwrap().ended, "still reported ended after the restart");
    // The stream of an ended session replays and ends by itself.
    let mut follow = rt.client.follow_events(&s.id, 0).await.unwrap();
    let mut n = 0;
    while let Some(ev) = follow.next().await {
        ev.unwrap();
        n += 1;
    }
    assert_eq!(n, after.len());
    rt.client.end_session(&s.id, true).await.unwrap();
    assert_eq!(rt.client.session(&s.id).await.unwrap_err().status(), Some(404));
    assert!(!dir.path().join("sessions").join(&s.id).exists());
    rt.stop().await;
}

/// The real runtime binary, killed with SIGKILL mid-turn and started again on the same state dir.
#[tokio::test]
async fn sigkill_mid_turn_then_restart_loses_and_repeats_nothing_and_the_session_continues() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let token = sbx_tests::random_token();
    let spawn = || sbx_tests::sessions::spawn_runtime(port, &state, &token);
    let client = Client::new(&format!("http://127.0.0.1:{port}"), Some(token.clone())).unwrap();
    let mut child = spawn();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let s = client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    rt_turn(&client, &s.id, "echo before").await;
    let turn = client.send_message(&s.id, "stream 2000\nsleep 60000", false).await.unwrap();
    // Read part of the turn, then kill the runtime.
    let mut follow = client.follow_events(&s.id, 0).await.unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = follow.next().await {
        let ev = ev.unwrap();
        seen.push(ev.clone());
        if matches!(&ev.body, EventData::ItemCompleted(i) if i.content.iter().any(|c| matches!(c, ContentPart::Text { text } if text.starts_with("0 1 2")))) {
            break;
        }
    }
    drop(follow);
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let mut child = spawn();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let events = all_events(&client, &s.id).await;
    assert_gapless(&events);
    assert_eq!(&events[..seen.len()], &seen[..], "every event seen before the kill is served again, unchanged");
    let tail: Vec<&str> = types(&events).into_iter().rev().take(2).collect();
    assert_eq!(tail, vec!["turn.completed", "error"]);
    match &events.last().unwrap().body {
        EventData::TurnCompleted(t) => {
            assert_eq!((t.turn_id.as_str(), t.outcome), (turn.turn_id.as_str(), TurnOutcome::Cancelled));
        }
        other => panic!("{other:?}"),
    }
    // The session goes on.
    let info = client.session(&s.id).await.unwrap();
    assert_eq!(info.state, SessionState::Idle);
    let text = rt_turn(&client, &s.id, "echo after").await;
    assert_eq!(text, "after");
    let events = all_events(&client, &s.id).await;
    assert_gapless(&events);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

async fn rt_turn(client: &Client, id: &str, text: &str) -> String {
    let r = client.send_message(id, text, true).await.unwrap();
    r.completed.expect("turn completed").text.unwrap_or_default()
}

/// Installing from a mirror: the URL template is filled in, the SHA-256 is read from `URL.sha256`,
/// and a binary whose checksum does not match is refused and not installed.
#[tokio::test]
async fn agents_install_from_a_mirror_with_a_checksum() {
    use sha2::{Digest, Sha256};
    let script = b"#!/bin/sh\necho 'claude 7.7.7 (Claude Code)'\n".to_vec();
    let good_sum = hex::encode(Sha256::digest(&script));
    let served = script.clone();
    let app = axum::Router::new()
        .route("/claude/7.7.7/linux-x86_64/claude", axum::routing::get(move || { let b = served.clone(); async move { b } }))
        .route("/claude/7.7.7/linux-x86_64/claude.sha256", axum::routing::get(move || { let s = good_sum.clone(); async move { format!("{s}  claude\n") } }))
        .route("/codex/1.0/linux-x86_64/codex", axum::routing::get(|| async { b"#!/bin/sh\necho tampered\n".to_vec() }))
        .route("/codex/1.0/linux-x86_64/codex.sha256", axum::routing::get(|| async { format!("{}\n", "ab".repeat(32)) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mirror = format!("http://{}/{{agent}}/{{version}}/{{os}}-{{arch}}/{{agent}}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let rt = TestRuntime::start_with(|c| c.state_dir = Some(dir.path().to_path_buf())).await;
    let req = |v: &str| sbx_agent::api::session::InstallAgentRequest {
        version: Some(v.into()),
        mirror_url: Some(mirror.clone()),
        ..Default::default()
    };
    let done = rt.client.install_agent("claude", &req("7.7.7")).await.unwrap();
    assert_eq!((done.source.as_str(), done.changed), ("mirror", true));
    assert_eq!(done.agent.version.as_deref(), Some("claude 7.7.7 (Claude Code)"));
    let again = rt.client.install_agent("claude", &req("7.7.7")).await.unwrap();
    assert_eq!((again.source.as_str(), again.changed), ("present", false), "an installed agent is kept");
    let err = rt.client.install_agent("codex", &req("1.0")).await.unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!rt.client.agent("codex").await.unwrap().installed || which_codex_on_path(), "a bad download is not installed");
    let none = sbx_agent::api::session::InstallAgentRequest { reinstall: true, source: Some("mirror".into()), ..Default::default() };
    let none = rt.client.install_agent("codex", &none).await;
    if std::env::var_os("SBX_AGENT_MIRROR").is_none() {
        let err = none.unwrap_err();
        assert!(err.to_string().contains("no mirror given") && err.to_string().contains("SBX_AGENT_MIRROR"), "{err}");
    }
    rt.stop().await;
}

fn which_codex_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("codex").is_file()))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).expect("VmRSS")
}

/// A live session that passes 200,000 events keeps the runtime's memory flat (only a recent tail is
/// held; history is served from the journal), and every event can still be replayed from the start.
#[tokio::test]
async fn a_long_live_session_keeps_runtime_memory_bounded_and_replays_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let token = sbx_tests::random_token();
    let mut child = sbx_tests::sessions::spawn_runtime(port, &state, &token);
    let pid = child.id().unwrap();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), Some(token.clone())).unwrap();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let s = client.create_session(&mock(PermissionPolicy::AllowAll)).await.unwrap();
    rt_turn(&client, &s.id, "echo warm").await;
    let before = rss_kib(pid);

    // Follow the turn live as raw server-sent events (decoding 200,000 typed events is the test's cost,
    // not the runtime's), counting them and watching the runtime's RSS as they pass.
    let n = 200_000;
    let turn = client.send_message(&s.id, &format!("stream {n}"), false).await.unwrap();
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/sessions/{}/events/stream", s.id))
        .bearer_auth(&token)
        .header("Last-Event-ID", (turn.first_sequence - 1).to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut parser = sbx_agent::client::sse::SseParser::new();
    let (mut seen, mut peak) = (0u64, before);
    'read: while let Some(chunk) = body.next().await {
        parser.feed(&chunk.unwrap());
        while let Some(ev) = parser.next_event() {
            seen += 1;
            if seen % 20_000 == 0 {
                peak = peak.max(rss_kib(pid));
            }
            if ev.data.contains("\"type\":\"turn.completed\"") {
                break 'read;
            }
        }
    }
    peak = peak.max(rss_kib(pid));
    assert!(seen > n, "the turn's events ({seen}) hold every delta");
    // Holding every event would take 40+ MiB here (about 200 bytes each); the tail is at most 4 MiB.
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    assert!(growth_mib < 24.0, "runtime RSS grew by {growth_mib:.1} MiB over {seen} live events ({before} KiB before, {peak} KiB peak)");

    // The whole history is still there, in order, read back from the journal.
    let events = all_events(&client, &s.id).await;
    assert_gapless(&events);
    assert_eq!(events.len() as u64, turn.first_sequence - 1 + seen);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
