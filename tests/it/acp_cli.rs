//! `sbx acp` driven by the official ACP Python SDK (`tests/oracle/acp_client.py`, the venv of
//! install/test-deps.sh) against the real Claude Code in a local sandbox, with the fake LLM on
//! loopback: initialize, a new session, a prompt whose Write tool call is asked of the editor
//! (`session/request_permission`) and allowed, the file written, the answer streamed back as ACP
//! updates. `SBX_CLAUDE_BIN` and `SBX_TEST_VENV` are required: missing, the test fails.

use sbx_tests::fake_llm::{FakeLlm, Reply};
use serde_json::{json, Value};

fn required(var: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| panic!("{var} is unset: run install/test-deps.sh"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_acp_serves_real_claude_to_the_official_acp_sdk() {
    let claude = required("SBX_CLAUDE_BIN");
    let python = format!("{}/bin/python", required("SBX_TEST_VENV"));
    let llm = FakeLlm::start().await;
    let home = tempfile::tempdir().unwrap();
    let claude_home = tempfile::tempdir().unwrap();
    // Short: Claude's permission socket lives under the local sandbox's state, and a Unix socket path
    // has at most 107 bytes.
    let name = format!("ac{}", &sbx_tests::random_token()[..4]);
    let sbx = |args: &[&str]| {
        let out = std::process::Command::new(sbx_tests::bin("sbx"))
            .args(args)
            .env("XDG_STATE_HOME", home.path())
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("SBX_CLAUDE_BIN", &claude)
            .env("NO_COLOR", "1")
            .output()
            .expect("run sbx");
        assert!(out.status.success(), "sbx {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sbx(&["up", "--provider", "local", "--name", &name]);
    struct Down<'a>(&'a dyn Fn(&[&str]) -> String, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.0)(&["down", &self.1])));
        }
    }
    let _down = Down(&sbx, name.clone());
    sbx(&["agent", "install", &name, "claude", "--from-host"]);
    let root = sbx(&["exec", &name, "--", "pwd"]).trim().to_owned();

    llm.push(Reply::tool("Write", json!({"file_path": format!("{root}/hello.txt"), "content": "written for the editor"})));
    llm.push(Reply::text("Done: hello.txt is written."));
    let env = |k: &str, v: &str| format!("{k}={v}");
    let out = tokio::process::Command::new(&python)
        .arg(sbx_tests::workspace_root().join("tests/oracle/acp_client.py"))
        .args(["write hello.txt", "--"])
        .arg(sbx_tests::bin("sbx"))
        .args(["acp", &name, "--agent", "claude"])
        .args(["-e", &env("ANTHROPIC_BASE_URL", &llm.base_url()), "-e", "ANTHROPIC_API_KEY=sk-test-not-a-real-key"])
        .args(["-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "-e", "CLAUDE_CODE_MAX_RETRIES=0"])
        .args(["-e", &env("HOME", &claude_home.path().to_string_lossy())])
        .env("XDG_STATE_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run the SDK client");
    assert!(out.status.success(), "the ACP client failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(r["stopReason"], "end_turn", "{r}");
    let asked = r["asked"].as_array().expect("asked");
    assert_eq!(asked.len(), 1, "one permission request reached the editor: {r}");
    assert_eq!(asked[0]["kind"], "edit", "{r}");
    assert_eq!(asked[0]["options"], json!(["allow_once", "allow_always", "reject_once"]));
    let kinds: Vec<&str> = r["kinds"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(kinds.contains(&"tool_call") && kinds.contains(&"agent_message_chunk"), "{kinds:?}");
    assert!(r["statuses"].as_array().unwrap().iter().any(|s| s == "completed"), "{r}");
    assert!(r["text"].as_str().unwrap_or_default().contains("hello.txt is written"), "{r}");
    assert_eq!(sbx(&["fs", "cat", &name, "hello.txt"]), "written for the editor");
}
