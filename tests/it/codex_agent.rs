//! The `codex` adapter end to end: the real Codex (`SBX_CODEX_BIN`, from `install/test-deps.sh`)
//! installed into an in-process runtime through the install API, driven through the sessions API
//! against the fake LLM. Skipped with a printed reason when `SBX_CODEX_BIN` is unset, unless
//! `SBX_REQUIRE_AGENTS=1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sbx_agent::api::session::{
    ContentPart, CreateSessionRequest, Event, EventData, EventSource, InstallAgentRequest, ItemKind, ItemStatus, McpServer,
    PermissionDecision, PermissionKind, PermissionPolicy, TurnCompleted, TurnOutcome,
};
use sbx_agent::client::Client;
use sbx_tests::sessions::{all_events, assert_gapless, types};
use sbx_tests::fake_llm::{FakeLlm, Recorded, Reply};
use sbx_tests::{wait_for, TestRuntime};
use serde_json::json;

fn codex_bin() -> Option<PathBuf> {
    match std::env::var_os("SBX_CODEX_BIN") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.exists(), "SBX_CODEX_BIN={} does not exist", p.display());
            Some(p)
        }
        _ => {
            if std::env::var("SBX_REQUIRE_AGENTS").as_deref() == Ok("1") {
                panic!("SBX_CODEX_BIN is required (SBX_REQUIRE_AGENTS=1): run install/test-deps.sh and source ~/.cache/sbx-test/env.sh");
            }
            eprintln!("skipping: SBX_CODEX_BIN is not set (run install/test-deps.sh, then source ~/.cache/sbx-test/env.sh)");
            None
        }
    }
}

/// A fake LLM, a `CODEX_HOME` pointing Codex at it, and the directories a session needs.
struct Env {
    llm: FakeLlm,
    work: tempfile::TempDir,
    codex_home: tempfile::TempDir,
    home: tempfile::TempDir,
    state: tempfile::TempDir,
    /// Holds a link named `codex` to the binary, to install from.
    bin_dir: tempfile::TempDir,
}

impl Env {
    /// `provider_extra`: more lines for the fake provider's table in `config.toml`.
    async fn new(provider_extra: &str) -> Option<Self> {
        let bin = codex_bin()?;
        let llm = FakeLlm::start().await;
        let bin_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&bin, bin_dir.path().join("codex")).unwrap();
        let codex_home = sbx_tests::fake_llm::codex_home(&llm, provider_extra);
        Some(Self {
            llm,
            work: tempfile::tempdir().unwrap(),
            codex_home,
            home: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            bin_dir,
        })
    }

    /// Installs Codex into the runtime through the install API (from a path).
    async fn install(&self, client: &Client) {
        let link = self.bin_dir.path().join("codex");
        let req = InstallAgentRequest { from_path: Some(link.to_string_lossy().into_owned()), ..Default::default() };
        // The runtime runs `codex --version` right after writing the binary; a process that another
        // test forks at that moment holds the write descriptor until its exec (ETXTBSY), so an
        // install can fail spuriously while tests run in parallel. Tried again, it works.
        let mut attempt = 0;
        let installed = loop {
            attempt += 1;
            match client.install_agent("codex", &req).await {
                Ok(i) => break i,
                Err(e) if attempt < 4 && e.to_string().contains("does not run") => {
                    eprintln!("install attempt {attempt} failed ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("install codex from a path: {e}"),
            }
        };
        assert!(installed.agent.installed, "{installed:?}");
        assert_eq!(installed.source, "path");
        assert!(installed.agent.version.as_deref().is_some_and(|v| v.contains("codex")), "{installed:?}");
    }

    fn session_request(&self, policy: PermissionPolicy) -> CreateSessionRequest {
        let env = BTreeMap::from([
            ("CODEX_HOME".to_owned(), self.codex_home.path().to_string_lossy().into_owned()),
            ("HOME".to_owned(), self.home.path().to_string_lossy().into_owned()),
            ("FAKE_KEY".to_owned(), "x".to_owned()),
        ]);
        CreateSessionRequest {
            agent: "codex".into(),
            cwd: Some(self.work.path().to_string_lossy().into_owned()),
            permission_policy: policy,
            env,
            ..Default::default()
        }
    }

    /// The requests of the model conversation, for failure messages.
    fn dump(&self) -> String {
        self.llm
            .conversation_requests()
            .iter()
            .map(|r| format!("- {} {} last user text {:?}, tool output {:?}", r.method, r.path, r.last_user_text(), r.function_call_output()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An [`Env`] and an in-process runtime (on its state directory) with Codex installed.
struct Setup {
    env: Env,
    rt: TestRuntime,
}

impl std::ops::Deref for Setup {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Setup {
    async fn new(provider_extra: &str) -> Option<Self> {
        let env = Env::new(provider_extra).await?;
        let dir = env.state.path().to_path_buf();
        let rt = TestRuntime::start_with(move |c| c.state_dir = Some(dir)).await;
        env.install(&rt.client).await;
        Some(Self { env, rt })
    }
}

/// Calls Codex's shell tool by the name this Codex offers (0.163: `exec_command` with `cmd`).
fn shell_call(script: String) -> Reply {
    Reply::with(move |req: &Recorded| {
        let names = req.tool_names();
        if names.iter().any(|n| n == "exec_command") {
            Reply::tool("exec_command", json!({"cmd": script}))
        } else if names.iter().any(|n| n == "shell") {
            Reply::tool("shell", json!({"command": ["bash", "-lc", script]}))
        } else {
            Reply::text(format!("no shell tool among {names:?}"))
        }
    })
}

/// All events once `turns` turns have their `turn.completed` readable (a `wait`ed send can answer
/// a moment before its last event is).
async fn events_after_turns(client: &Client, id: &str, turns: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = all_events(client, id).await;
        if completed_turns(&events).len() >= turns || tokio::time::Instant::now() >= deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn completed_turns(events: &[Event]) -> Vec<TurnCompleted> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::TurnCompleted(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// Sends a message and waits (bounded) for its turn to end.
async fn turn(client: &Client, id: &str, text: &str, within: Duration) -> TurnCompleted {
    let sent = tokio::time::timeout(within, client.send_message(id, text, true))
        .await
        .unwrap_or_else(|_| panic!("the turn for {text:?} did not end within {within:?}"))
        .expect("send");
    sent.completed.expect("waited for the turn")
}

/// Waits (bounded) for the first event after `offset` that `pick` likes.
async fn wait_event<T>(client: &Client, id: &str, within: Duration, pick: impl Fn(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let events = all_events(client, id).await;
        if let Some(t) = events.iter().find_map(&pick) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "no such event within {within:?}; got {:?}", types(&events));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn codex_two_turns_run_a_command_then_answer_with_a_gapless_event_stream() {
    let Some(s) = Setup::new("").await else { return };
    let target = s.work.path().join("hello.txt");
    s.llm.push(shell_call(format!("printf hi > '{}' && echo wrote-the-file", target.display())));
    s.llm.push(Reply::text("wrote it"));
    s.llm.push(Reply::text("second answer"));

    let session = s.rt.client.create_session(&s.session_request(PermissionPolicy::AllowAll)).await.expect("create");
    let t1 = turn(&s.rt.client, &session.id, "write hi to hello.txt", Duration::from_secs(120)).await;
    assert_eq!(t1.outcome, TurnOutcome::Completed, "{t1:?}\n{}", s.dump());
    assert_eq!(std::fs::read_to_string(&target).ok().as_deref(), Some("hi"), "{}", s.dump());
    assert_eq!(t1.text.as_deref(), Some("wrote it"));
    let usage = t1.usage.expect("codex reports usage");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0, "{usage:?}");

    let t2 = turn(&s.rt.client, &session.id, "and now?", Duration::from_secs(120)).await;
    assert_eq!(t2.outcome, TurnOutcome::Completed, "{t2:?}");
    assert_eq!(t2.text.as_deref(), Some("second answer"));

    let events = events_after_turns(&s.rt.client, &session.id, 2).await;
    assert_gapless(&events);
    let t = types(&events);
    assert_eq!(t[0], "session.started");
    assert_eq!(t.iter().filter(|x| **x == "turn.started").count(), 2, "{t:?}");
    let turns = completed_turns(&events);
    assert_eq!(turns.len(), 2, "{t:?}");
    assert!(turns.iter().all(|t| t.outcome == TurnOutcome::Completed), "{turns:?}");

    // One permission request for the command, answered by the policy.
    let asked: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::PermissionRequested(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "{t:?}");
    assert_eq!(asked[0].tool_name, "exec_command");
    assert_eq!(asked[0].kind, PermissionKind::Execute);
    assert!(asked[0].title.contains("hello.txt"), "{:?}", asked[0]);
    assert!(asked[0].item_id.is_some(), "the request points at its tool-call item");
    let resolved = events.iter().find_map(|e| match &e.body {
        EventData::PermissionResolved(r) if r.permission_id == asked[0].permission_id => Some(r.clone()),
        _ => None,
    });
    let resolved = resolved.expect("permission.resolved");
    assert_eq!((resolved.decision, resolved.by.as_str()), (PermissionDecision::Allow, "policy"));

    // The command as a tool call and its output as the result, both completed.
    let call = events.iter().find_map(|e| match &e.body {
        EventData::ItemCompleted(i) if i.kind == ItemKind::ToolCall => Some(i.clone()),
        _ => None,
    });
    let call = call.expect("a completed tool call");
    assert_eq!(Some(&call.item_id), asked[0].item_id.as_ref());
    assert_eq!(call.status, ItemStatus::Completed);
    assert!(
        matches!(&call.content[0], ContentPart::ToolCall { name, arguments, .. } if name == "exec_command" && arguments["command"].as_str().is_some_and(|c| c.contains("hello.txt"))),
        "{call:?}"
    );
    let result = events.iter().find_map(|e| match &e.body {
        EventData::ItemCompleted(i) if i.kind == ItemKind::ToolResult => Some(i.clone()),
        _ => None,
    });
    let result = result.expect("a completed tool result");
    assert_eq!(result.parent_id.as_ref(), Some(&call.item_id));
    assert!(
        matches!(&result.content[0], ContentPart::ToolResult { is_error: false, output, .. } if output.contains("wrote-the-file")),
        "{result:?}"
    );

    // Assistant text streams as deltas into message items.
    let messages: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::ItemCompleted(i) if i.kind == ItemKind::Message && e.source == EventSource::Agent => Some(i.clone()),
            _ => None,
        })
        .collect();
    assert!(
        messages.iter().any(|m| m.content == vec![ContentPart::Text { text: "second answer".into() }]),
        "{messages:?}"
    );
    let delta_text: String = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::ItemDelta(d) if messages.last().is_some_and(|m| m.item_id == d.item_id) => Some(d.delta.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(delta_text, "second answer");
    // Translated from Codex (not the user's message the session shows, nor the result items the
    // adapter adds to a Codex tool item).
    let native = |e: &&Event| match &e.body {
        EventData::ItemStarted(i) => !matches!(i.kind, ItemKind::ToolResult) && i.role != Some(sbx_agent::api::session::Role::User),
        EventData::PermissionRequested(_) | EventData::Error(_) => true,
        _ => false,
    };
    let agent: Vec<&Event> = events.iter().filter(|e| e.source == EventSource::Agent).filter(native).collect();
    assert!(agent.iter().all(|e| e.raw.is_some()), "agent events keep Codex's payload: {agent:?}");

    let info = s.rt.client.session(&session.id).await.unwrap();
    assert!(info.native_session_id.is_some(), "the Codex thread id is recorded: {info:?}");
    assert_eq!(s.llm.conversation_requests().len(), 3, "{}", s.dump());
    s.rt.stop().await;
}

#[tokio::test]
async fn codex_denied_command_does_not_run_and_codex_is_told() {
    let Some(s) = Setup::new("").await else { return };
    let target = s.work.path().join("nope.txt");
    s.llm.push(shell_call(format!("printf no > '{}'", target.display())));
    s.llm.push(Reply::text("understood"));

    let session = s.rt.client.create_session(&s.session_request(PermissionPolicy::Ask)).await.expect("create");
    let sent = s.rt.client.send_message(&session.id, "write nope.txt", false).await.expect("send");
    let asked = wait_event(&s.rt.client, &session.id, Duration::from_secs(90), |e| match &e.body {
        EventData::PermissionRequested(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!((asked.tool_name.as_str(), asked.kind), ("exec_command", PermissionKind::Execute));
    let pending = s.rt.client.session(&session.id).await.unwrap().pending_permissions;
    assert_eq!(pending, vec![asked.permission_id.clone()]);
    s.rt
        .client
        .reply_permission(&session.id, &asked.permission_id, PermissionDecision::Deny, Some("not today".into()))
        .await
        .expect("reply");
    let done = wait_event(&s.rt.client, &session.id, Duration::from_secs(90), |e| match &e.body {
        EventData::TurnCompleted(t) if t.turn_id == sent.turn_id => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!(done.outcome, TurnOutcome::Completed, "{done:?}");
    assert_eq!(done.text.as_deref(), Some("understood"));
    assert!(!target.exists(), "a denied command must not run");

    let convo = s.llm.conversation_requests();
    assert_eq!(convo.len(), 2, "{}", s.dump());
    let out = convo[1].function_call_output().expect("the next request carries the tool's output");
    eprintln!("codex told the model: {out:?}");
    assert!(out.content.to_lowercase().contains("reject"), "{out:?}");

    let events = all_events(&s.rt.client, &session.id).await;
    assert_gapless(&events);
    let resolved = events.iter().find_map(|e| match &e.body {
        EventData::PermissionResolved(r) => Some(r.clone()),
        _ => None,
    });
    let resolved = resolved.expect("permission.resolved");
    assert_eq!((resolved.decision, resolved.by.as_str()), (PermissionDecision::Deny, "user"));
    let result = events.iter().find_map(|e| match &e.body {
        EventData::ItemCompleted(i) if i.kind == ItemKind::ToolResult => Some(i.clone()),
        _ => None,
    });
    let result = result.expect("a tool result for the refused call");
    assert_eq!(result.status, ItemStatus::Failed);
    assert!(
        matches!(&result.content[0], ContentPart::ToolResult { is_error: true, output, .. } if output.contains("not today")),
        "{result:?}"
    );
    s.rt.stop().await;
}

#[tokio::test]
async fn codex_model_401_is_a_model_auth_error_and_the_session_goes_on() {
    // Codex retries even a 401 `request_max_retries` times (default 4, with backoff).
    let Some(s) = Setup::new("request_max_retries = 0\nstream_max_retries = 0").await else { return };
    s.llm.push(Reply::Error { status: 401, retry_after: None });
    s.llm.push(Reply::text("better now"));

    let session = s.rt.client.create_session(&s.session_request(PermissionPolicy::AllowAll)).await.expect("create");
    let started = std::time::Instant::now();
    let t1 = turn(&s.rt.client, &session.id, "hi", Duration::from_secs(60)).await;
    eprintln!("the 401 turn took {:?}", started.elapsed());
    assert_eq!(t1.outcome, TurnOutcome::Failed, "{t1:?}");
    let events = events_after_turns(&s.rt.client, &session.id, 1).await;
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::Error(err) => Some((err.clone(), e.raw.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "one error event: {errors:?}");
    assert_eq!(errors[0].0.code, "model_auth", "{errors:?}");
    assert_eq!(errors[0].0.status, Some(401), "{errors:?}");
    assert!(errors[0].1.is_some(), "the error keeps Codex's payload");

    let t2 = turn(&s.rt.client, &session.id, "again", Duration::from_secs(60)).await;
    assert_eq!(t2.outcome, TurnOutcome::Completed, "{t2:?}");
    assert_eq!(t2.text.as_deref(), Some("better now"));
    assert_gapless(&events_after_turns(&s.rt.client, &session.id, 2).await);
    s.rt.stop().await;
}

#[tokio::test]
async fn codex_cancel_mid_turn_then_the_session_takes_another_turn() {
    let Some(s) = Setup::new("").await else { return };
    s.llm.push(Reply::Hang);
    s.llm.push(Reply::text("after the cancel"));

    let session = s.rt.client.create_session(&s.session_request(PermissionPolicy::AllowAll)).await.expect("create");
    let sent = s.rt.client.send_message(&session.id, "take your time", false).await.expect("send");
    let asked = wait_for(Duration::from_secs(60), || async { !s.llm.conversation_requests().is_empty() }).await;
    assert!(asked, "codex never called the model");
    let started = std::time::Instant::now();
    assert!(s.rt.client.cancel_turn(&session.id).await.unwrap(), "a turn was running");
    let done = wait_event(&s.rt.client, &session.id, Duration::from_secs(30), |e| match &e.body {
        EventData::TurnCompleted(t) if t.turn_id == sent.turn_id => Some(t.clone()),
        _ => None,
    })
    .await;
    eprintln!("the cancel took {:?}", started.elapsed());
    assert_eq!(done.outcome, TurnOutcome::Cancelled, "{done:?}");

    let t2 = turn(&s.rt.client, &session.id, "go on", Duration::from_secs(60)).await;
    assert_eq!(t2.outcome, TurnOutcome::Completed, "{t2:?}\n{}", s.dump());
    assert_eq!(t2.text.as_deref(), Some("after the cancel"));
    let events = events_after_turns(&s.rt.client, &session.id, 2).await;
    assert_gapless(&events);
    // Nothing is left open: every item that started also completed.
    let started_items: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventData::ItemStarted(i) => Some(i.item_id.clone()),
            _ => None,
        })
        .collect();
    for id in started_items {
        assert!(
            events.iter().any(|e| matches!(&e.body, EventData::ItemCompleted(i) if i.item_id == id)),
            "item {id} never completed: {:?}",
            types(&events)
        );
    }
    s.rt.stop().await;
}

#[tokio::test]
async fn codex_file_patch_asks_to_edit_and_shows_the_file_with_its_diff() {
    let Some(s) = Setup::new("").await else { return };
    let patch = "*** Begin Patch\n*** Add File: notes.txt\n+patched line\n*** End Patch\n";
    let tools = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&tools);
    s.llm.push(Reply::with(move |req: &Recorded| {
        *seen.lock().unwrap() = req.tool_names();
        match req.tool("apply_patch").and_then(|t| t.get("type")).and_then(|t| t.as_str()) {
            Some("custom") => Reply::tool("apply_patch", json!(patch)),
            Some(_) => Reply::tool("apply_patch", json!({"input": patch})),
            None => Reply::text("no apply_patch tool"),
        }
    }));
    s.llm.push(Reply::text("patched"));
    let mut req = s.session_request(PermissionPolicy::AllowAll);
    // Codex 0.163 offers apply_patch only for models it knows (gpt-5.5: yes; gpt-5-codex: no).
    req.model = Some("gpt-5.5".into());
    let session = s.rt.client.create_session(&req).await.expect("create");
    let t = turn(&s.rt.client, &session.id, "add notes.txt", Duration::from_secs(60)).await;
    assert_eq!(t.outcome, TurnOutcome::Completed, "{t:?}");
    assert_eq!(t.text.as_deref(), Some("patched"), "tools offered: {:?}\n{}", tools.lock().unwrap(), s.dump());
    assert_eq!(std::fs::read_to_string(s.work.path().join("notes.txt")).ok().as_deref(), Some("patched line\n"));

    let events = events_after_turns(&s.rt.client, &session.id, 1).await;
    assert_gapless(&events);
    let asked = events.iter().find_map(|e| match &e.body {
        EventData::PermissionRequested(p) => Some(p.clone()),
        _ => None,
    });
    let asked = asked.expect("a permission request for the patch");
    assert_eq!((asked.tool_name.as_str(), asked.kind), ("apply_patch", PermissionKind::Edit), "{asked:?}");
    assert!(asked.title.contains("notes.txt"), "{asked:?}");
    let call = events.iter().find_map(|e| match &e.body {
        EventData::ItemCompleted(i) if i.kind == ItemKind::ToolCall => Some(i.clone()),
        _ => None,
    });
    let call = call.expect("the patch as a tool call");
    assert!(
        call.content.iter().any(|c| matches!(c, ContentPart::FileRef { path, action, diff } if path.ends_with("notes.txt") && action == "write" && diff.as_deref().is_some_and(|d| d.contains("+patched line")))),
        "{call:?}"
    );
    s.rt.stop().await;
}

#[tokio::test]
async fn codex_sees_the_sessions_skills() {
    let Some(s) = Setup::new("").await else { return };
    let skill = s.work.path().join("skills").join("probe-skill");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: probe-skill\ndescription: Greets in the sbx-probe way when asked for a probe greeting.\n---\n\nSay sbx-probe.\n",
    )
    .unwrap();
    s.llm.push(Reply::text("hello"));
    let mut req = s.session_request(PermissionPolicy::AllowAll);
    req.skills = vec![skill.to_string_lossy().into_owned()];
    let session = s.rt.client.create_session(&req).await.expect("create");
    let t = turn(&s.rt.client, &session.id, "hi", Duration::from_secs(60)).await;
    assert_eq!(t.outcome, TurnOutcome::Completed, "{t:?}");
    assert!(s.codex_home.path().join("skills/probe-skill/SKILL.md").exists(), "linked into $CODEX_HOME/skills");
    let body = s.llm.conversation_requests()[0].body.to_string();
    assert!(body.contains("sbx-probe way"), "the skill is announced to the model");
    s.rt.stop().await;
}

/// A minimal MCP server (stdio, one tool) that notes its environment in `marker`.
const MCP_SERVER: &str = r#"
import json, os, sys
open(sys.argv[1], "w").write(os.environ.get("PROBE_VALUE", ""))
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"].get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
             "serverInfo": {"name": "probe", "version": "1"}}
    elif m["method"] == "tools/list":
        r = {"tools": [{"name": "probe_tool", "description": "probe", "inputSchema": {"type": "object", "properties": {}}}]}
    else:
        r = {}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;

#[tokio::test]
async fn codex_gets_the_sessions_mcp_servers() {
    let Some(s) = Setup::new("").await else { return };
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipping: no python3 for the test's MCP server");
        return;
    }
    let script = s.work.path().join("probe_mcp.py");
    std::fs::write(&script, MCP_SERVER).unwrap();
    let marker = s.work.path().join("probe-started");
    s.llm.push(Reply::text("first"));
    s.llm.push(Reply::text("second"));
    let mut req = s.session_request(PermissionPolicy::AllowAll);
    req.mcp_servers = vec![McpServer {
        name: "probe".into(),
        command: Some("python3".into()),
        args: vec![script.to_string_lossy().into_owned(), marker.to_string_lossy().into_owned()],
        env: BTreeMap::from([("PROBE_VALUE".to_owned(), "from-the-session".to_owned())]),
        url: None,
        headers: BTreeMap::new(),
    }];
    let session = s.rt.client.create_session(&req).await.expect("create");
    // Codex starts MCP servers alongside the first turn; by the second its tools are offered.
    for text in ["hi", "again"] {
        let t = turn(&s.rt.client, &session.id, text, Duration::from_secs(60)).await;
        assert_eq!(t.outcome, TurnOutcome::Completed, "{t:?}");
    }
    assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("from-the-session"), "the MCP server ran with its env");
    let convo = s.llm.conversation_requests();
    let names = convo.last().unwrap().tool_names();
    assert!(names.iter().any(|n| n == "mcp__probe"), "the MCP server's tools are offered: {names:?}");
    s.rt.stop().await;
}

/// The pids of `codex` processes working in `cwd`.
fn codex_pids(cwd: &std::path::Path) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let dir = std::fs::read_link(entry.path().join("cwd")).ok();
        if comm.trim() == "codex" && dir.as_deref() == Some(cwd) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn codex_dying_mid_turn_fails_the_turn_and_ends_the_session_with_its_last_words() {
    let Some(s) = Setup::new("").await else { return };
    s.llm.push(Reply::Hang);
    let session = s.rt.client.create_session(&s.session_request(PermissionPolicy::AllowAll)).await.expect("create");
    let sent = s.rt.client.send_message(&session.id, "hang on", false).await.expect("send");
    assert!(wait_for(Duration::from_secs(60), || async { !s.llm.conversation_requests().is_empty() }).await);
    let pids = codex_pids(s.work.path());
    assert!(!pids.is_empty(), "no codex process found");
    for pid in pids {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let done = wait_event(&s.rt.client, &session.id, Duration::from_secs(30), |e| match &e.body {
        EventData::TurnCompleted(t) if t.turn_id == sent.turn_id => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!(done.outcome, TurnOutcome::Failed);
    let events = all_events(&s.rt.client, &session.id).await;
    assert_gapless(&events);
    let crash = events.iter().find_map(|e| match &e.body {
        EventData::Error(err) if err.code == "agent_crashed" => Some(err.clone()),
        _ => None,
    });
    let crash = crash.expect("an agent_crashed error");
    eprintln!("crash reported as: {}", crash.message);
    assert!(crash.message.contains("codex exited"), "{crash:?}");
    assert!(wait_for(Duration::from_secs(10), || async {
        s.rt.client.session(&session.id).await.is_ok_and(|i| i.ended.is_some())
    })
    .await);
    s.rt.stop().await;
}

/// The real runtime binary, SIGKILLed between two turns (Codex dies with it, at the end of its
/// input) and started again on the same state directory: the session goes on in the same thread.
#[tokio::test]
async fn codex_session_resumes_its_thread_after_the_runtime_is_killed() {
    let Some(env) = Env::new("").await else { return };
    env.llm.push(Reply::text("first"));
    env.llm.push(Reply::text("second"));
    let port = sbx_tests::sessions::free_port();
    let token = sbx_tests::random_token();
    let spawn = || sbx_tests::sessions::spawn_runtime(port, env.state.path(), &token);
    let client = Client::new(&format!("http://127.0.0.1:{port}"), Some(token.clone())).unwrap();
    let mut child = spawn();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    env.install(&client).await;
    let session = client.create_session(&env.session_request(PermissionPolicy::AllowAll)).await.expect("create");
    let t1 = turn(&client, &session.id, "remember the word pineapple", Duration::from_secs(60)).await;
    assert_eq!(t1.outcome, TurnOutcome::Completed, "{t1:?}");
    let thread = client.session(&session.id).await.unwrap().native_session_id.expect("thread id");

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut child = spawn();
    assert!(wait_for(Duration::from_secs(10), || async { client.health().await.is_ok() }).await);
    let t2 = turn(&client, &session.id, "which word?", Duration::from_secs(60)).await;
    assert_eq!(t2.outcome, TurnOutcome::Completed, "{t2:?}");
    assert_eq!(t2.text.as_deref(), Some("second"));
    // Only this turn's usage (Codex also repeats the last turn's usage when it resumes a thread).
    assert_eq!(t2.usage.as_ref().map(|u| u.output_tokens), Some(1), "{t2:?}");
    let info = client.session(&session.id).await.unwrap();
    assert_eq!(info.native_session_id.as_deref(), Some(thread.as_str()), "the same Codex thread goes on");

    // The resumed thread still holds the first turn: Codex sends it to the model again.
    let convo = env.llm.conversation_requests();
    assert_eq!(convo.len(), 2, "{}", env.dump());
    let history = convo[1].body["input"].to_string();
    assert!(history.contains("pineapple") && history.contains("which word?"), "{history}");
    let events = events_after_turns(&client, &session.id, 2).await;
    assert_gapless(&events);
    assert!(
        !events.iter().any(|e| matches!(&e.body, EventData::ItemCompleted(i) if i.kind == ItemKind::System)),
        "no 'thread not resumed' notice: {:?}",
        types(&events)
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
