//! The generic ACP adapter against a scripted fake ACP agent (`tests/fakes/acp_agent.py`, Python's
//! standard library only), configured as the runtime's `agents/acp.json` would configure any agent:
//! the mapping of `session/update`s, the permission round trip, `fs/*` confined to the session's
//! directory, terminals, cancel, and agents that misbehave.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sbx_agent::api::session::{
    ContentPart, CreateSessionRequest, EndReason, Event, EventData, ItemKind, ItemStatus, McpServer, PermissionDecision, PermissionPolicy, SessionState,
    TurnCompleted, TurnOutcome,
};
use sbx_agent::client::Client;
use sbx_tests::sessions::{all_events, assert_gapless, types};
use sbx_tests::{wait_for, workspace_root, TestRuntime};

/// A rooted runtime whose state directory configures the fake as ACP agents `fake`, `fake-dies`
/// (exits during `initialize`) and `missing` (not installed).
async fn runtime() -> (TestRuntime, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let script = workspace_root().join("tests/fakes/acp_agent.py");
    assert!(script.exists(), "{} is missing", script.display());
    let s = script.to_string_lossy();
    let config = serde_json::json!({"agents": [
        {"id": "fake", "name": "Fake ACP agent", "command": "python3", "args": ["-u", s], "credentials": ["FAKE_ACP_KEY"]},
        {"id": "fake-dies", "command": "python3", "args": [s, "--exit-on-initialize"], "credentials": ["FAKE_ACP_KEY"]},
        {"id": "missing", "command": "/nonexistent/acp-agent", "installHint": "pip install missing-acp-agent"},
    ]});
    std::fs::create_dir_all(state.path().join("agents")).unwrap();
    std::fs::write(state.path().join("agents/acp.json"), config.to_string()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (r, st) = (root.path().to_path_buf(), state.path().to_path_buf());
    let mut rt = TestRuntime::start_with(move |c| {
        c.root = Some(r);
        c.state_dir = Some(st);
    })
    .await;
    rt.root = Some(root);
    (rt, state)
}

fn fake(policy: PermissionPolicy) -> CreateSessionRequest {
    CreateSessionRequest { agent: "fake".into(), permission_policy: policy, ..Default::default() }
}

/// Sends `text` and follows the turn to its end, answering permission requests with `reply` (`None`:
/// cancel the turn instead). Returns the turn's events.
pub(crate) async fn turn(client: &Client, id: &str, text: &str, reply: Option<PermissionDecision>) -> Vec<Event> {
    let t = client.send_message(id, text, false).await.unwrap();
    let mut follow = client.follow_events(id, t.first_sequence - 1).await.unwrap();
    let mut out = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = follow.next().await {
            let ev = ev.unwrap();
            if let EventData::PermissionRequested(p) = &ev.body {
                match reply {
                    Some(d) => client.reply_permission(id, &p.permission_id, d, None).await.unwrap(),
                    None => assert!(client.cancel_turn(id).await.unwrap()),
                }
            }
            let end = matches!(ev.body, EventData::TurnCompleted(_) | EventData::SessionEnded(_));
            out.push(ev);
            if end {
                break;
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the turn did not end within 60 s: {:?}", types(&out));
    out
}

pub(crate) fn completed(events: &[Event]) -> TurnCompleted {
    events.iter().rev().find_map(|e| if let EventData::TurnCompleted(t) = &e.body { Some(t.clone()) } else { None }).expect("turn.completed")
}

pub(crate) fn tool_results(events: &[Event]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for e in events {
        if let EventData::ItemCompleted(i) = &e.body {
            for c in &i.content {
                if let ContentPart::ToolResult { output, is_error, .. } = c {
                    out.push((output.clone(), *is_error));
                }
            }
        }
    }
    out
}

pub(crate) fn said(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::ItemCompleted(i) if i.kind == ItemKind::Message && i.role == Some(sbx_agent::api::session::Role::Assistant) => {
                i.content.iter().find_map(|c| if let ContentPart::Text { text } = c { Some(text.clone()) } else { None })
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_acp_turn_streams_text_tools_files_and_terminals_into_the_event_schema() {
    let (rt, _state) = runtime().await;
    let mut req = fake(PermissionPolicy::Ask);
    req.mode = Some("yolo".into());
    req.env.insert("FAKE_ACP_KEY".into(), "k-123".into());
    req.mcp_servers = vec![McpServer {
        name: "files".into(),
        command: Some("mcp-files".into()),
        args: vec!["--ro".into()],
        env: [("LEVEL".to_owned(), "1".to_owned())].into(),
        url: None,
        headers: Default::default(),
    }];
    let s = rt.client.create_session(&req).await.unwrap();
    let agents = rt.client.list_agents().await.unwrap();
    let info = agents.iter().find(|a| a.id == "fake").expect("the configured agent is listed");
    assert!(info.installed && info.capabilities.permissions, "{info:?}");
    assert!(agents.iter().any(|a| a.id == "vibe"), "the vibe preset is listed");

    let script = "say hello there\nthink hmm\nplan\nusage\nwrite notes/a.txt hi there\nread notes/a.txt\nread ../outside.txt\n\
                  term echo out; echo err >&2; exit 3\nenv FAKE_ACP_KEY\nmcp";
    let events = turn(&rt.client, &s.id, script, Some(PermissionDecision::Allow)).await;
    let done = completed(&events);
    assert_eq!((done.outcome, done.stop_reason.as_deref()), (TurnOutcome::Completed, Some("end_turn")));
    let usage = done.usage.clone().expect("usage from the prompt's answer");
    assert_eq!((usage.output_tokens, usage.cache_read_tokens), (7, 2));
    assert_eq!(done.cost_usd, Some(0.25));
    assert_eq!(std::fs::read_to_string(rt.root_path().join("notes/a.txt")).unwrap(), "hi there");

    // Chunks in a row are one message (until a tool call or the turn's end).
    let texts = said(&events);
    assert_eq!(texts[0], "hello there", "two chunks, one message");
    let all_text = texts.concat();
    assert!(all_text.contains("wrote notes/a.txthi there"), "fs/read_text_file read the file back: {texts:?}");
    assert!(all_text.contains("refused: `../outside.txt` is outside the session's working directory"), "{texts:?}");
    assert!(all_text.contains("exit 3FAKE_ACP_KEY=k-123"), "the terminal's exit code, the session env reaches the agent: {texts:?}");
    let mcp: serde_json::Value = serde_json::from_str(&all_text[all_text.find("[{").expect("the mcp step's JSON")..]).unwrap();
    assert_eq!(mcp, serde_json::json!([{"name": "files", "command": "mcp-files", "args": ["--ro"], "env": [{"name": "LEVEL", "value": "1"}]}]));
    let deltas = events.iter().filter(|e| matches!(&e.body, EventData::ItemDelta(d) if d.delta == "hello" || d.delta == " there")).count();
    assert_eq!(deltas, 2, "each chunk is a delta");
    assert!(events.iter().any(|e| matches!(&e.body, EventData::ItemCompleted(i) if i.kind == ItemKind::Reasoning)));
    let statuses: Vec<(String, Option<String>)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::ItemCompleted(i) if i.kind == ItemKind::System => {
                i.content
                    .iter()
                    .find_map(|c| if let ContentPart::Status { label, detail } = c { Some((label.clone(), detail.clone())) } else { None })
            }
            _ => None,
        })
        .collect();
    assert!(statuses.contains(&("mode".into(), Some("yolo".into()))), "session/set_mode took the session's mode: {statuses:?}");
    assert!(statuses.contains(&("commands".into(), Some("init".into()))), "{statuses:?}");
    assert!(statuses.iter().any(|(l, d)| l == "plan" && d.as_deref() == Some("[completed] look around\n[pending] write the file")));

    // The write: a tool call named by the agent, asked, allowed, with the file and its diff.
    let asked: Vec<_> = events.iter().filter_map(|e| if let EventData::PermissionRequested(p) = &e.body { Some(p.clone()) } else { None }).collect();
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].tool_name.as_str(), asked[0].title.as_str()), ("write_file", "Write notes/a.txt"));
    assert_eq!(asked[0].input, serde_json::json!({"path": "notes/a.txt", "content": "hi there"}));
    assert!(asked[0].item_id.is_some());
    let results = tool_results(&events);
    assert_eq!(results[0], ("wrote 8 bytes".into(), false));
    assert!(results[1].0.contains("out") && results[1].0.contains("err"), "the terminal's output: {results:?}");
    let diff = events.iter().find_map(|e| match &e.body {
        EventData::ItemCompleted(i) if i.kind == ItemKind::ToolCall => {
            i.content.iter().find_map(|c| if let ContentPart::FileRef { diff, .. } = c { diff.clone() } else { None })
        }
        _ => None,
    });
    assert!(diff.is_some_and(|d| d.ends_with("+hi there\n")));
    // Every agent event carries its ACP message.
    assert!(events.iter().any(|e| e.raw.as_ref().is_some_and(|r| r["method"] == "session/update")));

    let all = all_events(&rt.client, &s.id).await;
    assert_gapless(&all);
    rt.stop().await;
}

#[tokio::test]
async fn acp_denials_cancels_and_cancelled_permissions() {
    let (rt, _state) = runtime().await;
    let s = rt.client.create_session(&fake(PermissionPolicy::Ask)).await.unwrap();

    let events = turn(&rt.client, &s.id, "write no.txt nope", Some(PermissionDecision::Deny)).await;
    assert!(!rt.root_path().join("no.txt").exists(), "a denied write must not happen");
    assert_eq!(tool_results(&events), vec![("denied by the user (reject_once)".to_owned(), true)]);
    assert!(events.iter().any(|e| matches!(&e.body, EventData::ItemCompleted(i) if i.kind == ItemKind::ToolCall && i.status == ItemStatus::Failed)));
    assert_eq!(completed(&events).outcome, TurnOutcome::Completed);

    // A cancel while the agent works: session/cancel, and the agent ends the turn as cancelled.
    let t = rt.client.send_message(&s.id, "say working\nsleep 30000\nsay never", false).await.unwrap();
    let started = Instant::now();
    let mut follow = rt.client.follow_events(&s.id, t.first_sequence - 1).await.unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = follow.next().await {
        let ev = ev.unwrap();
        // The first delta ("working"): the agent is asleep now.
        if matches!(&ev.body, EventData::ItemDelta(_)) && !seen.iter().any(|e: &Event| matches!(e.body, EventData::ItemDelta(_))) {
            assert!(rt.client.cancel_turn(&s.id).await.unwrap());
        }
        let end = matches!(ev.body, EventData::TurnCompleted(_));
        seen.push(ev);
        if end {
            break;
        }
    }
    let done = completed(&seen);
    assert_eq!((done.outcome, done.stop_reason.as_deref()), (TurnOutcome::Cancelled, Some("cancelled")));
    assert!(started.elapsed() < Duration::from_secs(20), "the cancel took {:?}", started.elapsed());
    assert!(!said(&seen).concat().contains("never"));

    // A cancel while a permission request waits: it is resolved by the runtime, the tool never runs.
    let events = turn(&rt.client, &s.id, "write later.txt x", None).await;
    assert_eq!(completed(&events).outcome, TurnOutcome::Cancelled);
    let resolved = events.iter().find_map(|e| if let EventData::PermissionResolved(p) = &e.body { Some(p.clone()) } else { None });
    assert_eq!(resolved.map(|p| (p.decision, p.by)), Some((PermissionDecision::Deny, "runtime".to_owned())));
    assert!(!rt.root_path().join("later.txt").exists());

    // The same agent process goes on.
    let events = turn(&rt.client, &s.id, "say still here", None).await;
    assert_eq!(said(&events), vec!["still here".to_owned()]);
    assert_gapless(&all_events(&rt.client, &s.id).await);
    rt.stop().await;
}

/// The `mode` labels of the turn's status items (`current_mode_update`).
fn modes_seen(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::ItemCompleted(i) if i.kind == ItemKind::System => i.content.iter().find_map(|c| match c {
                ContentPart::Status { label, detail } if label == "mode" => detail.clone(),
                _ => None,
            }),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_acp_session_switches_mode_between_turns() {
    let (rt, state) = runtime().await;
    let s = rt.client.create_session(&fake(PermissionPolicy::AllowAll)).await.unwrap();
    turn(&rt.client, &s.id, "say first", None).await;

    // session/set_mode to the agent; the session records it and the agent's update arrives with the next turn.
    let info = rt.client.set_mode(&s.id, "yolo").await.unwrap();
    assert_eq!(info.mode.as_deref(), Some("yolo"));
    assert_eq!(rt.client.session(&s.id).await.unwrap().mode.as_deref(), Some("yolo"));
    let events = turn(&rt.client, &s.id, "say second", None).await;
    assert_eq!(modes_seen(&events), vec!["yolo".to_owned()]);
    assert_eq!(said(&events), vec!["second".to_owned()]);
    let meta = std::fs::read_to_string(state.path().join("sessions").join(&s.id).join("session.json")).unwrap();
    assert!(meta.contains("\"mode\": \"yolo\""), "a restart starts the agent in the new mode: {meta}");

    // A mode the agent does not have: refused with its words, the session keeps its mode and goes on.
    let err = rt.client.set_mode(&s.id, "plan").await.unwrap_err().to_string();
    assert!(err.contains("refused mode `plan`") && err.contains("unknown mode plan"), "{err}");
    assert_eq!(rt.client.session(&s.id).await.unwrap().mode.as_deref(), Some("yolo"));

    // Not while a turn runs (409), and not with an empty mode (400).
    rt.client.send_message(&s.id, "say busy\nsleep 3000", false).await.unwrap();
    let err = rt.client.set_mode(&s.id, "ask").await.unwrap_err().to_string();
    assert!(err.contains("is running a turn"), "{err}");
    assert!(rt.client.cancel_turn(&s.id).await.unwrap());
    wait_for(Duration::from_secs(20), || async { rt.client.session(&s.id).await.unwrap().state == SessionState::Idle }).await;
    let err = rt.client.set_mode(&s.id, " ").await.unwrap_err().to_string();
    assert!(err.contains("`mode` is empty"), "{err}");

    // The native adapters take their mode at the start: the mock has one, and says so for another.
    let m = rt.client.create_session(&CreateSessionRequest { agent: "mock".into(), ..Default::default() }).await.unwrap();
    assert_eq!(rt.client.set_mode(&m.id, "default").await.unwrap().mode.as_deref(), Some("default"));
    let err = rt.client.set_mode(&m.id, "plan").await.unwrap_err().to_string();
    assert!(err.contains("no mode `plan`; its modes: default"), "{err}");
    assert_gapless(&all_events(&rt.client, &s.id).await);
    rt.stop().await;
}

#[tokio::test]
async fn misbehaving_acp_agents_give_errors_not_hangs() {
    let (rt, _state) = runtime().await;

    // Not installed: says how to install it.
    let err = rt.client.create_session(&CreateSessionRequest { agent: "missing".into(), ..Default::default() }).await.unwrap_err();
    assert!(err.to_string().contains("pip install missing-acp-agent"), "{err}");

    // Exits during initialize: the creation fails with what it said.
    let err = rt.client.create_session(&CreateSessionRequest { agent: "fake-dies".into(), ..Default::default() }).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exited during `initialize`") && msg.contains("no API key configured"), "{msg}");

    // A mode it does not have.
    let req = CreateSessionRequest { agent: "fake".into(), mode: Some("warp".into()), ..Default::default() };
    let err = rt.client.create_session(&req).await.unwrap_err();
    assert!(err.to_string().contains("no mode `warp`; its modes: ask, yolo"), "{err}");

    // Output that is not JSON-RPC: an error event each, and the turn goes on.
    let s = rt.client.create_session(&fake(PermissionPolicy::AllowAll)).await.unwrap();
    let events = turn(&rt.client, &s.id, "garbage\nsay after", None).await;
    let errors: Vec<_> = events.iter().filter_map(|e| if let EventData::Error(x) = &e.body { Some(x.clone()) } else { None }).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.code == "agent_error" && e.message.contains("malformed JSON-RPC")));
    assert!(errors[1].message.contains("\\xff\\xfe{oops"), "bytes that are no UTF-8 are shown, not lost: {}", errors[1].message);
    assert_eq!(said(&events), vec!["after".to_owned()]);
    assert_eq!(completed(&events).outcome, TurnOutcome::Completed);

    // A failed prompt: an error event and a failed turn; the session goes on.
    let events = turn(&rt.client, &s.id, "fail", None).await;
    assert_eq!(completed(&events).outcome, TurnOutcome::Failed);
    assert!(events.iter().any(|e| matches!(&e.body, EventData::Error(x) if x.message.contains("the fake was told to fail"))));

    // Exits in the middle of a turn: the session ends with an error naming what it said.
    let events = turn(&rt.client, &s.id, "say bye\nexit", None).await;
    assert_eq!(completed(&events).outcome, TurnOutcome::Failed);
    let ended_in = |evs: &[Event]| evs.iter().find_map(|e| if let EventData::SessionEnded(x) = &e.body { Some(x.clone()) } else { None });
    assert!(wait_for(Duration::from_secs(10), || async { ended_in(&all_events(&rt.client, &s.id).await).is_some() }).await);
    let ended = ended_in(&all_events(&rt.client, &s.id).await).expect("session.ended");
    assert_eq!(ended.reason, EndReason::Error);
    assert!(ended.message.as_deref().is_some_and(|m| m.contains("exiting as told")), "{ended:?}");
    assert_gapless(&all_events(&rt.client, &s.id).await);
    rt.stop().await;
}
