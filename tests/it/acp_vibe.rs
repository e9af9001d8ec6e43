//! The real `vibe-acp` (Mistral's `mistral-vibe`, from PyPI) behind the ACP adapter, in a Docker
//! sandbox made from the Debian 13 image `templates/vibe/build.sh` builds (`SBX_VIBE_IMAGE`, set by
//! install/test-deps.sh), against the fake LLM's OpenAI Chat Completions endpoint on the Docker
//! bridge: a turn that writes a file through vibe's `write_file` tool after a permission request, a
//! denied write, and a cancel while the model streams. Docker and the image are required: missing,
//! the test fails.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sbx_agent::api::session::{CreateSessionRequest, EventData, ItemKind, ItemStatus, PermissionDecision, PermissionPolicy, TurnOutcome};
use sbx_agent::client::WriteOptions;
use sbx_providers::bootstrap::bootstrap;
use sbx_providers::docker::DockerProvider;
use sbx_providers::{Provider, SandboxSpec};
use sbx_tests::fake_llm::{FakeLlm, Reply};
use sbx_tests::sessions::{all_events, assert_gapless, types};
use serde_json::json;

use crate::acp::{completed, said, tool_results, turn};

/// Removes the container when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", &self.0]).output();
    }
}

/// A `write_file` call as vibe offers it: the path's argument name is read from the request's tool
/// schema (3.0.2 declares `path`; its Python tool class says `file_path`).
fn write_file(path: &'static str, content: &'static str) -> Reply {
    Reply::with(move |r| {
        let names = r.chat_tool_names();
        assert!(names.iter().any(|n| n == "write_file"), "vibe offers no write_file tool: {names:?}");
        let props = r.chat_tool("write_file").and_then(|f| f.pointer("/parameters/properties")).cloned().unwrap_or_default();
        let key = if props.get("path").is_some() { "path" } else { "file_path" };
        Reply::tool("write_file", json!({key: path, "content": content}))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vibe_acp_in_docker_writes_a_file_takes_a_denial_and_a_cancel() {
    let image = std::env::var("SBX_VIBE_IMAGE").ok().filter(|v| !v.is_empty()).expect("SBX_VIBE_IMAGE is unset: run install/test-deps.sh");
    assert!(sbx_tests::docker_available(), "Docker is required");
    let gateway = sbx_tests::fake_llm::docker_bridge_gateway().expect("Docker's bridge network has no gateway to put the fake LLM on");
    let llm = FakeLlm::start_on(gateway).await;

    let state = tempfile::tempdir().unwrap();
    let p = DockerProvider::connect().await.expect("connect to Docker");
    let p = p.with_state_dir(state.path()).with_runtime(sbx_tests::static_runtime()).with_image(image);
    let sandbox = p.create(&SandboxSpec::named("vibe")).await.expect("create");
    let _guard = Cleanup(sandbox.id.clone());
    let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
    let handle = bootstrap(&p, &sandbox.id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    let client = handle.client().expect("client");

    // vibe's own config: the fake as an OpenAI-style provider with no key (nothing secret in a file).
    let config = format!(
        "active_model = \"fake\"\ndefault_agent = \"ask\"\nenable_telemetry = false\nenable_update_checks = false\n\
         enable_auto_update = false\n\n[[providers]]\nname = \"fake\"\napi_base = \"{}\"\napi_style = \"openai\"\n\
         backend = \"generic\"\napi_key_env_var = \"\"\n\n[[models]]\nname = \"fake-model\"\nprovider = \"fake\"\nalias = \"fake\"\n",
        llm.openai_base_url()
    );
    client.write_bytes("/tmp/vibe-home/config.toml", config.into_bytes(), WriteOptions { parents: true, ..Default::default() }).await.unwrap();
    client.mkdir("/workspace/w", true).await.unwrap();
    let agent = client.agent("vibe").await.unwrap();
    assert!(agent.installed, "vibe-acp is on the image's PATH: {agent:?}");

    let req = CreateSessionRequest {
        agent: "vibe".into(),
        cwd: Some("/workspace/w".into()),
        env: [("VIBE_HOME".to_owned(), "/tmp/vibe-home".to_owned())].into(),
        permission_policy: PermissionPolicy::Ask,
        ..Default::default()
    };
    let s = client.create_session(&req).await.expect("vibe-acp starts");

    // 1. A write through vibe's tool, asked and allowed.
    llm.push(write_file("/workspace/w/hello.txt", "written by vibe"));
    llm.push(Reply::text("Done: hello.txt is written."));
    let events = turn(&client, &s.id, "write hello.txt", Some(PermissionDecision::Allow)).await;
    let done = completed(&events);
    assert_eq!((done.outcome, done.stop_reason.as_deref()), (TurnOutcome::Completed, Some("end_turn")), "{:?}", types(&events));
    let written = client.read_bytes("/workspace/w/hello.txt").await;
    assert!(
        written.as_ref().is_ok_and(|b| &b[..] == b"written by vibe"),
        "{written:?}; the model saw: {}",
        llm.conversation_requests().last().map(|r| r.body["messages"].to_string()).unwrap_or_default()
    );
    let asked = events.iter().find_map(|e| if let EventData::PermissionRequested(p) = &e.body { Some(p.clone()) } else { None });
    let asked = asked.expect("vibe asked before writing");
    assert_eq!(asked.tool_name, "write_file");
    assert!(asked.item_id.is_some(), "the request points at its tool-call item");
    assert!(said(&events).iter().any(|t| t.contains("hello.txt is written")), "{:?}", said(&events));
    assert!(events
        .iter()
        .any(|e| matches!(&e.body, EventData::ItemCompleted(i) if i.kind == ItemKind::ToolCall && i.status == ItemStatus::Completed)));

    // 2. A denied write: nothing written, the model is told, the turn ends normally.
    llm.push(write_file("/workspace/w/denied.txt", "nope"));
    llm.push(Reply::text("Understood, I will not write it."));
    let before = llm.conversation_requests().len();
    let events = turn(&client, &s.id, "write denied.txt", Some(PermissionDecision::Deny)).await;
    assert_eq!(completed(&events).outcome, TurnOutcome::Completed);
    assert!(client.stat("/workspace/w/denied.txt").await.is_err(), "a denied write must not happen");
    assert!(tool_results(&events).iter().any(|(_, err)| *err), "the call's result is an error: {:?}", tool_results(&events));
    let told = llm.conversation_requests()[before..].iter().any(|r| r.chat_tool_result().is_some());
    assert!(told, "the next model request carries the refused call's result");

    // 3. A cancel while the model streams its answer.
    llm.push(Reply::SlowText { text: "a long and slow answer ".repeat(20), chunks: 40, delay_ms: 250 });
    let t = client.send_message(&s.id, "tell me a long story", false).await.unwrap();
    let mut follow = client.follow_events(&s.id, t.first_sequence - 1).await.unwrap();
    let mut cancelled_at = None;
    let mut seen = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = follow.next().await {
            let ev = ev.unwrap();
            if matches!(ev.body, EventData::ItemDelta(_)) && cancelled_at.is_none() {
                assert!(client.cancel_turn(&s.id).await.unwrap());
                cancelled_at = Some(Instant::now());
            }
            let end = matches!(ev.body, EventData::TurnCompleted(_));
            seen.push(ev);
            if end {
                break;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "the cancelled turn did not end: {:?}", types(&seen));
    let done = completed(&seen);
    assert_eq!(done.outcome, TurnOutcome::Cancelled, "{:?}", types(&seen));
    let took = cancelled_at.expect("a delta arrived before the cancel").elapsed();
    assert!(took < Duration::from_secs(9), "the turn ended {took:?} after the cancel (the stream alone takes 10 s)");

    let all = all_events(&client, &s.id).await;
    assert_gapless(&all);
    let native = |e: &&sbx_agent::api::session::Event| matches!(e.body, EventData::ItemDelta(_) | EventData::PermissionRequested(_));
    assert!(all.iter().filter(native).all(|e| e.raw.is_some()), "deltas and permission requests keep their ACP message");
    client.end_session(&s.id, false).await.unwrap();
    p.destroy(&sandbox.id).await.expect("destroy");
}

/// `sbx run` with `agent: vibe`: an ACP agent as a task's agent, from the Debian 13 image, its own
/// endpoint configuration written by the task's `setup:` (sbx configures only claude's and codex's),
/// fixing a seeded bug through vibe's `write_file`; the check passes and the diff holds the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_run_with_vibe_as_the_agent_fixes_a_bug() {
    let image = std::env::var("SBX_VIBE_IMAGE").ok().filter(|v| !v.is_empty()).expect("SBX_VIBE_IMAGE is unset: run install/test-deps.sh");
    assert!(sbx_tests::docker_available(), "Docker is required");
    let gateway = sbx_tests::fake_llm::docker_bridge_gateway().expect("Docker's bridge network has no gateway to put the fake LLM on");
    let llm = FakeLlm::start_on(gateway).await;
    llm.push(write_file("/workspace/work/calc.sh", "add() { echo $(($1 + $2)); }\n"));
    llm.push(Reply::text("Fixed: add adds now."));

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("calc.sh"), "add() { echo $(($1 - $2)); }\n").unwrap();
    std::fs::write(repo.join("test.sh"), ". ./calc.sh\n[ \"$(add 2 3)\" = 5 ]\n").unwrap();
    let config = format!(
        "active_model = 'fake'\ndefault_agent = 'auto-approve'\nenable_telemetry = false\nenable_update_checks = false\n\
         enable_auto_update = false\n[[providers]]\nname = 'fake'\napi_base = '{}'\napi_style = 'openai'\nbackend = 'generic'\n\
         api_key_env_var = ''\n[[models]]\nname = 'fake-model'\nprovider = 'fake'\nalias = 'fake'\n",
        llm.openai_base_url()
    );
    std::fs::write(dir.path().join("vibe.toml"), config).unwrap();
    let yaml = format!(
        "version: 1\ndefaults:\n  provider: docker\n  image: {image}\n  timeout: 5m\ntasks:\n  - name: fix-vibe\n    agent: vibe\n    \
         workspace: ./repo\n    env: {{VIBE_HOME: /tmp/vibe-home}}\n    setup:\n      - mkdir -p /tmp/vibe-home && mv .vibe.toml /tmp/vibe-home/config.toml\n    \
         prompt: Fix add in calc.sh so test.sh passes\n    check: sh test.sh\n"
    );
    // The config reaches the sandbox with the workspace (a hidden file the setup moves out of it).
    std::fs::rename(dir.path().join("vibe.toml"), repo.join(".vibe.toml")).unwrap();
    std::fs::write(dir.path().join("sbx.yaml"), yaml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(sbx_tests::bin("sbx"))
            .args(["run", "-f", "sbx.yaml", "--results"])
            .arg(&results)
            .current_dir(dir.path())
            .env("XDG_STATE_HOME", home.path())
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let task: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(results.join("fix-vibe/task.json")).unwrap_or_else(|e| panic!("{e}\n{stderr}"))).unwrap();
    let events = std::fs::read_to_string(results.join("fix-vibe/events.jsonl")).unwrap_or_default();
    assert_eq!(task["status"], "passed", "{task:#}\n{stderr}\nevents: {events}");
    assert_eq!(task["agentInstall"]["source"], "image", "{task:#}");
    let diff = std::fs::read_to_string(results.join("fix-vibe/diff.patch")).unwrap();
    assert!(diff.contains("+add() { echo $(($1 + $2)); }"), "{diff}");
    assert!(events.contains("\"write_file\""), "the fix came through vibe's tool: {events}");
    assert!(out.status.success(), "sbx run exit {:?}\n{stderr}", out.status.code());
}
