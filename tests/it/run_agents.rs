//! `sbx run` on Docker with the real Claude Code and Codex, from the stock base image, against the
//! fake LLM on the Docker bridge: each agent fixes a seeded bug and the check passes. The agents get
//! into the sandboxes with `agent_install: auto` (from this machine's binaries) or `vendor` (a local
//! server laid out like the vendors' channels), and reach the model through `llm:` alone: no
//! hand-written agent configuration. Fails, not skips, without Docker or the agents when
//! `SBX_REQUIRE_DOCKER=1` / `SBX_REQUIRE_AGENTS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sbx_tests::fake_llm::{FakeLlm, Recorded, Reply};
use sbx_tests::release_channel::ReleaseChannel;
use serde_json::{json, Value};

fn agent_bin(agent: &str) -> Option<PathBuf> {
    let var = format!("SBX_{}_BIN", agent.to_uppercase());
    match std::env::var_os(&var).filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("SBX_REQUIRE_AGENTS").as_deref() == Ok("1") => panic!("SBX_REQUIRE_AGENTS=1 but {var} is unset"),
        None => {
            eprintln!("skipped: {var} is unset");
            None
        }
    }
}

/// The seeded bug: `add` subtracts; the check runs the test script.
fn seed_workspace(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("calc.sh"), "add() { echo $(($1 - $2)); }\n").unwrap();
    std::fs::write(dir.join("test.sh"), ". ./calc.sh\n[ \"$(add 2 3)\" = 5 ] || { echo \"add 2 3 gave $(add 2 3)\"; exit 1; }\necho ok\n").unwrap();
}

const FIX: &str = "printf 'add() { echo $(($1 + $2)); }\\n' > calc.sh";

/// Claude Code: run the fix through its Bash tool, then say so.
fn script_claude(llm: &FakeLlm) {
    llm.push(Reply::tool("Bash", json!({"command": FIX, "description": "fix add"})));
    llm.push(Reply::text("Fixed: add now adds."));
}

/// Codex: the same through its shell tool, by the name this Codex offers.
fn script_codex(llm: &FakeLlm) {
    llm.push(Reply::with(|req: &Recorded| {
        let names = req.tool_names();
        if names.iter().any(|n| n == "exec_command") {
            Reply::tool("exec_command", json!({"cmd": FIX}))
        } else if names.iter().any(|n| n == "shell") {
            Reply::tool("shell", json!({"command": ["bash", "-lc", FIX]}))
        } else {
            Reply::text(format!("no shell tool among {names:?}"))
        }
    }));
    llm.push(Reply::text("Fixed: add now adds."));
}

struct Run {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Run {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        seed_workspace(&dir.path().join("repo"));
        Self { dir, home: tempfile::tempdir().unwrap() }
    }

    /// `sbx run` with this config; `env` on top of the test environment.
    fn run(&self, yaml: &str, env: &[(&str, String)]) -> (std::process::Output, PathBuf) {
        std::fs::write(self.dir.path().join("sbx.yaml"), yaml).unwrap();
        let results = self.dir.path().join("results");
        let mut cmd = Command::new(sbx_tests::bin("sbx"));
        cmd.args(["run", "-f", "sbx.yaml", "--results"])
            .arg(&results)
            .current_dir(self.dir.path())
            .env("XDG_STATE_HOME", self.home.path())
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        (cmd.output().unwrap(), results)
    }
}

fn task_json(results: &Path, task: &str) -> Value {
    let p = results.join(task).join("task.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn yaml(agent_install: &str, claude_llm: &str, codex_llm: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  provider: docker\n  image: {image}\n  agent_install: {agent_install}\n  timeout: 10m\n  concurrency: 2\n\
         tasks:\n  - name: fix-claude\n    agent: claude\n    workspace: ./repo\n    prompt: Fix add in calc.sh so test.sh passes\n    check: sh test.sh\n    llm: {{base_url: '{claude_llm}'}}\n\
         \x20 - name: fix-codex\n    agent: codex\n    model: gpt-test\n    workspace: ./repo\n    prompt: Fix add in calc.sh so test.sh passes\n    check: sh test.sh\n    llm: {{base_url: '{codex_llm}'}}\n",
        image = crate::conformance::base_image()
    )
}

fn assert_both_fixed(out: &std::process::Output, results: &Path, source: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    for task in ["fix-claude", "fix-codex"] {
        let t = task_json(results, task);
        assert_eq!(t["status"], "passed", "{task}: {t:#}\n{stderr}\nevents: {}", std::fs::read_to_string(results.join(task).join("events.jsonl")).unwrap_or_default());
        assert_eq!(t["agentInstall"]["source"], source, "{task}: {t:#}");
        assert!(t["agentInstall"]["version"].as_str().is_some_and(|v| !v.is_empty()), "{task}: {t:#}");
        let phases = t["phases"].as_array().cloned().unwrap_or_default();
        assert!(phases.iter().any(|p| p["name"] == "agent_install" && p["outcome"] == "ok"), "the install is a phase of its own: {t:#}");
        assert_eq!(t["checkExitCode"], 0, "{task}");
        let diff = std::fs::read_to_string(results.join(task).join("diff.patch")).unwrap();
        assert!(diff.contains("+add() { echo $(($1 + $2)); }"), "{task}: {diff}");
        eprintln!("{task}: agent from {} ({}) in {} ms", t["agentInstall"]["source"], t["agentInstall"]["version"], t["agentInstall"]["durationMs"]);
    }
    assert!(out.status.success(), "sbx run exit {:?}\n{stderr}", out.status.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_run_on_docker_real_agents_fix_a_bug_installed_from_the_host_with_llm_only() {
    let (Some(_), Some(_)) = (agent_bin("claude"), agent_bin("codex")) else { return };
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let gateway = sbx_tests::fake_llm::docker_bridge_gateway().expect("a Docker bridge gateway address");
    let (claude_llm, codex_llm) = (FakeLlm::start_on(gateway).await, FakeLlm::start_on(gateway).await);
    script_claude(&claude_llm);
    script_codex(&codex_llm);
    let run = Run::new();
    let config = yaml("auto", &claude_llm.base_url(), &codex_llm.base_url());
    // SBX_CLAUDE_BIN / SBX_CODEX_BIN (from the test environment) are "this machine's" binaries.
    let (out, results) = tokio::task::block_in_place(|| run.run(&config, &[]));
    assert_both_fixed(&out, &results, "host");
    let t = task_json(&results, "fix-claude");
    let tried = t["agentInstall"]["tried"].as_array().cloned().unwrap_or_default();
    assert!(tried.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with("image:"))), "auto looked in the image first: {t:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_run_on_docker_real_agents_fix_a_bug_installed_from_the_vendor_channel() {
    let (Some(claude), Some(codex)) = (agent_bin("claude"), agent_bin("codex")) else { return };
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let gateway = sbx_tests::fake_llm::docker_bridge_gateway().expect("a Docker bridge gateway address");
    let channel = ReleaseChannel::start_on(gateway).await;
    let (c2, x2) = (claude.clone(), codex.clone());
    let ch = &channel;
    tokio::task::block_in_place(|| {
        ch.publish_claude("2.0.0", &c2, None);
        ch.point_claude("stable", "2.0.0");
        ch.publish_codex("0.163.0", &x2, true, None);
    });
    let (claude_llm, codex_llm) = (FakeLlm::start_on(gateway).await, FakeLlm::start_on(gateway).await);
    script_claude(&claude_llm);
    script_codex(&codex_llm);
    let run = Run::new();
    let config = yaml("vendor", &claude_llm.base_url(), &codex_llm.base_url());
    let env = [("SBX_CLAUDE_RELEASES_URL", channel.claude_url()), ("SBX_CODEX_RELEASES_URL", channel.codex_url())];
    let (out, results) = tokio::task::block_in_place(|| run.run(&config, &env));
    assert_both_fixed(&out, &results, "vendor");
    assert_eq!(task_json(&results, "fix-claude")["agentInstall"]["channelVersion"], "2.0.0");
    let hits = channel.hits();
    assert!(hits.iter().any(|h| h.ends_with("/claude/2.0.0/manifest.json")), "{hits:?}");
    assert!(hits.iter().any(|h| h.ends_with("codex-package_SHA256SUMS")), "{hits:?}");
}

/// `keyless: true` on a matrix of tasks: every task's real claude fixes the bug through the relay this
/// `sbx run` serves (the fake LLM listens on this host's loopback only, so the relay is the only way to
/// it), the fake sees the real key, and `sbx usage` has one audit row per model request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_run_keyless_matrix_every_task_completes_and_each_model_request_is_audited() {
    let Some(_) = agent_bin("claude") else { return };
    assert!(sbx_tests::docker_available(), "Docker is required");
    let llm = FakeLlm::start().await;
    // Tasks run side by side: each request is answered from what it carries, not from a shared queue.
    llm.set_default(Reply::with(|req: &Recorded| match req.last_tool_result() {
        Some(_) => Reply::text("Fixed: add now adds."),
        None => Reply::tool("Bash", json!({"command": FIX, "description": "fix add"})),
    }));
    let run = Run::new();
    let key = format!("sk-ant-api03-RUNKEYLESS{}", sbx_tests::random_token());
    std::fs::write(run.home.path().join(".claude.json"), format!(r#"{{"primaryApiKey": "{key}"}}"#)).unwrap();
    let config = format!(
        "version: 1\ndefaults:\n  provider: docker\n  image: {image}\n  agent: claude\n  agent_install: auto\n  keyless: true\n  timeout: 10m\n  concurrency: 2\n\
         tasks:\n  - name: fix\n    workspace: ./repo\n    prompt: Fix add in calc.sh so test.sh passes\n    check: sh test.sh\n    matrix:\n      env.RUN: [one, two]\n",
        image = crate::conformance::base_image()
    );
    let home = run.home.path().to_path_buf();
    let env = [("HOME", home.display().to_string()), ("SBX_KEYLESS_ANTHROPIC_URL", llm.base_url())];
    let (out, results) = tokio::task::block_in_place(|| run.run(&config, &env));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sbx run exit {:?}\n{stderr}", out.status.code());
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["passed"].as_u64(), summary["failed"].as_u64()), (Some(2), Some(0)), "{summary:#}");
    let posts: Vec<Recorded> = llm.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert!(posts.len() >= 4, "two turns of two requests each at least: {}", posts.len());
    assert!(posts.iter().all(|r| r.header("x-api-key") == Some(key.as_str())), "every request reached the fake with the real key");
    let usage = Command::new(sbx_tests::bin("sbx"))
        .args(["usage", "--json"])
        .env("HOME", &home)
        .env("XDG_STATE_HOME", &home)
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&usage.stdout).expect("usage json");
    let audited: Vec<&Value> = rows["requests"].as_array().map(|a| a.iter().filter(|r| r["method"] == "POST").collect()).unwrap_or_default();
    assert_eq!(audited.len(), posts.len(), "one audit row per model request: {rows:#}");
    assert!(audited.iter().all(|r| r["status"] == 200), "{rows:#}");
}
