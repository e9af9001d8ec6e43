//! The exit-code table of `docs/cli.md` and the JSON error object, through the real `sbx` binary: each
//! kind of failure exits with its own code, and under `--json` prints exactly one JSON object on
//! stdout, clap's usage errors included.

use std::process::Output;

use sbx_tests::bin;
use sbx_tests::fakes::e2b::{FakeE2b, Route};
use serde_json::Value;

/// An isolated sbx home (state and config), with no provider keys in the environment.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin("sbx"));
        c.args(args)
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("NO_COLOR", "1")
            .env_remove("SBX_RUNTIME")
            .env_remove("SBX_PROVIDER")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        for key in ["E2B_API_KEY", "DAYTONA_API_KEY", "VERCEL_TOKEN", "VERCEL_OIDC_TOKEN", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"] {
            c.env_remove(key);
        }
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().await.expect("run sbx")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::process::Command::new(bin("sbx"))
            .args(["down", "--all"])
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .output();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts `out` failed with `exit` and printed exactly one JSON error object whose `code` is `name`
/// on stdout; returns the object's `error`.
fn json_error(out: &Output, exit: i32, name: &str) -> Value {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(exit), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "one JSON line on stdout, got:\n{stdout}\nstderr: {stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let error = v["error"].clone();
    assert_eq!(error["code"], name, "{v}");
    assert_eq!(error["exit"], exit, "{v}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    error
}

#[tokio::test]
async fn unknown_provider_is_a_usage_error_listing_the_choices() {
    let home = Home::new();
    let out = home.run(&["up", "--provider", "nope", "--name", "a"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = home.run(&["up", "--provider", "nope", "--name", "a", "--json"]).await;
    json_error(&out, 2, "usage");
    insta::assert_snapshot!("unknown_provider_json", text(&out.stdout));
}

#[tokio::test]
async fn clap_usage_errors_are_json_under_json_and_help_stays_text() {
    let home = Home::new();
    // Without --json: clap's own text on stderr, nothing on stdout, exit 2.
    let out = home.run(&["up", "--bogus"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("unexpected argument '--bogus'"), "{}", text(&out.stderr));

    // With --json (before or after the bad flag): one JSON object on stdout, exit 2.
    for args in [&["up", "--bogus", "--json"][..], &["--json", "up", "--bogus"][..]] {
        let out = home.run(args).await;
        let error = json_error(&out, 2, "usage");
        assert_eq!(error["message"], "unexpected argument '--bogus' found", "{args:?}");
        assert!(error["hint"].as_str().is_some_and(|h| !h.is_empty()), "{error}");
    }
    let out = home.run(&["up", "--bogus", "--json"]).await;
    insta::assert_snapshot!("bad_flag_json", text(&out.stdout));
    // A bad value and a missing subcommand are usage errors too.
    json_error(&home.run(&["ls", "--json", "--color", "sometimes"]).await, 2, "usage");
    json_error(&home.run(&["--json"]).await, 2, "usage");
    // `--json` after `--` belongs to the remote command, not to sbx: plain clap text.
    let out = home.run(&["exec", "--bogus", "x", "--", "echo", "--json"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    // --help and --version stay plain text on stdout and exit 0, with or without --json.
    for args in [&["--help"][..], &["up", "--help", "--json"][..], &["--version", "--json"][..]] {
        let out = home.run(args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(!stdout.trim_start().starts_with('{') && !stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[tokio::test]
async fn a_missing_api_key_exits_3() {
    let home = Home::new();
    let out = home.run(&["up", "--provider", "e2b", "--name", "nokey"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = home.run(&["up", "--provider", "e2b", "--name", "nokey", "--json"]).await;
    let error = json_error(&out, 3, "auth");
    assert!(error["hint"].as_str().is_some_and(|h| h.contains("sbx auth status")), "{error}");
    insta::assert_snapshot!("missing_key_json", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_exit_4_and_refused_keys_3() {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return;
    }
    let fake = FakeE2b::start().await;
    let home = Home::new();
    let with_fake = |args: &[&str]| {
        let mut c = home.cmd(args);
        c.envs(fake.env()).env("SBX_RUNTIME", sbx_tests::static_runtime());
        c
    };
    // The control plane answers 500 to every try of the create (the client retries 5xx, 4 tries by
    // default): a provider failure, and nothing is left.
    for _ in 0..4 {
        fake.fail_next(Route::Create, 500, None);
    }
    let out = with_fake(&["up", "--provider", "e2b", "--name", "api500", "--json"]).output().await.expect("run sbx");
    let error = json_error(&out, 4, "provider");
    assert!(error["message"].as_str().unwrap_or_default().contains("HTTP 500"), "{error}");
    assert!(fake.sandbox_ids().is_empty());
    // A key the control plane refuses is an auth failure.
    let out = with_fake(&["up", "--provider", "e2b", "--name", "badkey", "--json"])
        .env("E2B_API_KEY", "wrong")
        .output()
        .await
        .expect("run sbx");
    json_error(&out, 3, "auth");
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test]
async fn a_missing_docker_image_exits_2() {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return;
    }
    let home = Home::new();
    // sbx's base image is built locally, never pulled: a tag that was not built is missing at once.
    let image = format!("sbx-base:no-such-tag-{}", std::process::id());
    let out = home
        .cmd(&["up", "--provider", "docker", "--image", &image, "--name", "noimage", "--json"])
        .env("SBX_RUNTIME", sbx_tests::static_runtime())
        .output()
        .await
        .expect("run sbx");
    let error = json_error(&out, 2, "usage");
    assert!(error["message"].as_str().unwrap_or_default().contains(&image), "{error}");
    assert!(error["hint"].as_str().unwrap_or_default().contains("build.sh"), "{error}");
    // `sbx ls` also lists other tests' Docker sandboxes (as orphans of this home): look for this one.
    let out = home.run(&["ls", "--json"]).await;
    assert!(!text(&out.stdout).contains("\"noimage\""), "a failed up leaves no sandbox: {}", text(&out.stdout));
}

#[tokio::test]
async fn an_agent_that_is_not_installed_exits_6() {
    let home = Home::new();
    // A PATH without the test machine's agent binaries: the local runtime looks there for them.
    let cmd = |args: &[&str]| {
        let mut c = home.cmd(args);
        c.env("PATH", "/usr/bin:/bin");
        c
    };
    let out = cmd(&["up", "--provider", "local", "--name", "noagent"]).output().await.expect("run sbx");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cmd(&["agent", "ls", "noagent", "--json"]).output().await.expect("run sbx");
    let agents: Vec<Value> = serde_json::from_slice(&out.stdout).expect("agent ls --json");
    let missing = agents
        .iter()
        .find(|a| a["installed"] == false)
        .and_then(|a| a["id"].as_str())
        .unwrap_or_else(|| panic!("this test needs an agent that is not installed in a fresh local sandbox: {agents:?}"))
        .to_owned();
    let out = cmd(&["prompt", "noagent", "hi", "--agent", &missing]).output().await.expect("run sbx");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not installed"), "{}", text(&out.stderr));
    let out = cmd(&["session", "new", "noagent", "--agent", &missing, "--json"]).output().await.expect("run sbx");
    let error = json_error(&out, 6, "agent");
    assert!(error["hint"].as_str().unwrap_or_default().contains("sbx agent install"), "{error}");
    // An agent sbx does not know is the user's input, not a missing install.
    let out = cmd(&["prompt", "noagent", "hi", "--agent", "gpt-pilot"]).output().await.expect("run sbx");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A turn the agent fails exits 6 too.
    let out = cmd(&["prompt", "noagent", "fail on purpose", "--agent", "mock"]).output().await.expect("run sbx");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
}
