//! The lifecycle through the `sbx` binary on every provider (local, Docker, the E2B, Daytona, Vercel and
//! Modal fakes, a real sshd):
//! a bootstrap that fails (`SBX_TEST_FAIL_PHASE`) or is interrupted (SIGINT while
//! `SBX_TEST_PAUSE_AFTER_CREATE` holds it) leaves nothing in `sbx ls`, in the provider (the local
//! directories, Docker, the fake's own list) and exits non-zero; `--keep` keeps it; a failing workspace
//! step of `sbx run` leaves nothing; `sbx up --json` and `sbx status --json` report per-phase timings.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use sbx_tests::fakes::daytona::FakeDaytona;
use sbx_tests::fakes::e2b::FakeE2b;
use sbx_tests::fakes::modal::FakeModal;
use sbx_tests::fakes::vercel::FakeVercel;
use sbx_tests::bin;

/// One provider through the CLI: a home of its own and the env that points `sbx` at the provider.
struct Env {
    provider: &'static str,
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
    e2b: Option<FakeE2b>,
    daytona: Option<FakeDaytona>,
    vercel: Option<FakeVercel>,
    modal: Option<FakeModal>,
    ssh: Option<sbx_tests::sshd::SshServer>,
}

impl Env {
    async fn new(provider: &'static str) -> Option<Self> {
        let home = tempfile::tempdir().expect("tempdir");
        let mut env = Vec::new();
        let (mut e2b, mut daytona, mut vercel, mut modal, mut ssh) = (None, None, None, None, None);
        match provider {
            "local" => env.push(("DOCKER_HOST".to_owned(), format!("unix://{}/no-docker.sock", home.path().display()))),
            other => {
                if !sbx_tests::docker_available() {
                    eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
                    return None;
                }
                env.push(("SBX_RUNTIME".into(), sbx_tests::static_runtime().display().to_string()));
                env.push(("SBX_DOCKER_IMAGE".into(), crate::conformance::base_image()));
                match other {
                    "e2b" => {
                        let fake = FakeE2b::start().await;
                        env.extend(fake.env());
                        e2b = Some(fake);
                    }
                    "daytona" => {
                        let fake = FakeDaytona::start().await;
                        env.extend(fake.env());
                        daytona = Some(fake);
                    }
                    "vercel" => {
                        let fake = FakeVercel::start().await;
                        env.extend(fake.env());
                        vercel = Some(fake);
                    }
                    "modal" => {
                        let fake = FakeModal::start().await;
                        env.extend(fake.env());
                        modal = Some(fake);
                    }
                    "ssh" => {
                        // A real sshd in a container: its client home holds the key and known_hosts.
                        let server = sbx_tests::sshd::SshServer::start(&[]);
                        server.trust();
                        env.push(("HOME".into(), server.home.path().display().to_string()));
                        env.push(("SBX_SSH_HOST".into(), server.dest()));
                        ssh = Some(server);
                    }
                    _ => {}
                }
            }
        }
        Some(Self { provider, home, env, e2b, daytona, vercel, modal, ssh })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sbx"));
        let h = self.home.path();
        c.args(args)
            .current_dir(h)
            .env("XDG_STATE_HOME", h.join("state"))
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("NO_COLOR", "1")
            .env_remove("SBX_RUNTIME")
            .env_remove("SBX_PROVIDER")
            .env_remove("SBX_KEEP")
            .env_remove("SBX_TEST_FAIL_PHASE")
            .env_remove("RUST_LOG")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run sbx")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args, &[]);
        assert!(out.status.success(), "sbx {args:?} failed ({:?}):\n{}", out.status.code(), text(&out.stderr));
        out
    }

    fn up_args<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        vec!["up", "--provider", self.provider, "--name", name]
    }

    /// `sbx ls --json` rows of this home (not the orphans other tests' Docker containers look like).
    fn ls(&self) -> Vec<serde_json::Value> {
        let all: Vec<serde_json::Value> = serde_json::from_slice(&self.ok(&["ls", "--json"]).stdout).expect("ls --json");
        all.into_iter().filter(|r| r["orphan"] != true).collect()
    }

    /// What the provider still has of sandbox `name`, asked of the platform: the local directories,
    /// Docker's containers with the name label, the fake's own list.
    async fn leftovers(&self, name: &str) -> Vec<String> {
        let mut left = Vec::new();
        match self.provider {
            "local" => {
                let base = self.home.path().join("state/sbx/local");
                if let Ok(rd) = std::fs::read_dir(&base) {
                    left.extend(rd.filter_map(Result::ok).filter(|e| e.path().is_dir()).map(|e| e.path().display().to_string()));
                }
            }
            "docker" => {
                let filter = format!("label={}={name}", sbx_providers::labels::NAME);
                let out = Command::new("docker").args(["ps", "-a", "-q", "--filter", &filter]).output().expect("docker ps");
                left.extend(text(&out.stdout).lines().map(|l| format!("container {l}")));
            }
            _ => {}
        }
        if let Some(f) = &self.e2b {
            left.extend(f.sandbox_ids());
        }
        if let Some(f) = &self.daytona {
            left.extend(f.sandbox_ids());
        }
        if let Some(f) = &self.vercel {
            left.extend(f.sandbox_names());
        }
        if let Some(f) = &self.modal {
            left.extend(f.running_ids());
        }
        if let Some(s) = &self.ssh {
            left.extend(s.leftovers());
        }
        left
    }

    async fn assert_nothing_left(&self, name: &str, what: &str) {
        assert!(self.ls().is_empty(), "{}: {what}: sbx ls still lists {:?}", self.provider, self.ls());
        let left = self.leftovers(name).await;
        assert!(left.is_empty(), "{}: {what} left {left:?}", self.provider);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &sbx_tests::random_token()[..6])
}

/// `sbx up` with a phase made to fail: a clear error, non-zero exit, nothing left.
async fn failed_phases_leave_nothing(provider: &'static str) {
    let Some(env) = Env::new(provider).await else { return };
    for phase in ["runtime_upload", "healthy"] {
        let name = unique("f");
        let out = env.run(&env.up_args(&name), &[("SBX_TEST_FAIL_PHASE", phase)]);
        let err = text(&out.stderr);
        // Non-zero, and not a usage error (the exit-code table in docs/cli.md says which kind).
        assert!(matches!(out.status.code(), Some(c) if c != 0 && c != 2), "{provider}/{phase}: {:?}: {err}", out.status.code());
        assert!(err.contains(&format!("error: {phase} failed")), "{provider}/{phase}: the error names the phase: {err}");
        env.assert_nothing_left(&name, &format!("a failed {phase}")).await;
    }
}

/// SIGINT while `sbx up` waits after create: exit 130, nothing left.
async fn interrupted_up_leaves_nothing(provider: &'static str) {
    let Some(env) = Env::new(provider).await else { return };
    let name = unique("i");
    let mut child = env
        .cmd(&env.up_args(&name))
        .env("SBX_TEST_PAUSE_AFTER_CREATE", "120")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sbx up");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines.next().expect("sbx up ended before creating the sandbox").expect("read stderr");
        if line.starts_with(&format!("creating sandbox on {provider}")) && line.contains("done") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(env.leftovers(&name).await.len(), 1, "{provider}: the sandbox exists while `sbx up` waits");
    let st = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{provider}: {status:?}");
    env.assert_nothing_left(&name, "an interrupted up").await;
}

/// `--keep` keeps a sandbox whose bootstrap failed, listed as `kept`; `sbx down` removes it.
async fn keep_keeps_a_failed_sandbox(provider: &'static str) {
    let Some(env) = Env::new(provider).await else { return };
    let name = unique("k");
    let mut args = env.up_args(&name);
    args.push("--keep");
    let out = env.run(&args, &[("SBX_TEST_FAIL_PHASE", "healthy")]);
    let err = text(&out.stderr);
    assert!(matches!(out.status.code(), Some(c) if c != 0 && c != 2), "{provider}: {:?}: {err}", out.status.code());
    assert!(err.contains("was kept for debugging") && err.contains(&format!("sbx down {name}")), "{provider}: {err}");
    let ls = env.ls();
    assert_eq!(ls.len(), 1, "{provider}: {ls:?}");
    assert_eq!(ls[0]["name"], name.as_str());
    // One thing on most providers; on an SSH host its directory and its still-running runtime.
    let kept = env.leftovers(&name).await;
    assert!(!kept.is_empty(), "{provider}: the provider still has it");
    env.ok(&["down", &name]);
    env.assert_nothing_left(&name, "down after --keep").await;
}

/// A task of `sbx run` whose workspace step fails: the task errors, nothing is left.
async fn failed_workspace_in_run_leaves_nothing(provider: &'static str) {
    let Some(env) = Env::new(provider).await else { return };
    let yaml = format!("version: 1\ndefaults:\n  provider: {provider}\n  agent: mock\ntasks:\n  - name: ws\n    prompt: \"echo hi\"\n");
    std::fs::write(env.home.path().join("sbx.yaml"), yaml).expect("write sbx.yaml");
    let out = env.run(&["run", "-f", "sbx.yaml"], &[("SBX_TEST_FAIL_PHASE", "workspace")]);
    assert_ne!(out.status.code(), Some(0), "{provider}: {}", text(&out.stderr));
    let results = env.home.path().join("sbx-results");
    let run = std::fs::read_dir(&results).expect("sbx-results").next().expect("a run").expect("entry").path();
    let task: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("ws/task.json")).expect("task.json")).expect("json");
    assert_eq!(task["status"], "error", "{task:#}");
    let phases: Vec<(&str, &str)> =
        task["phases"].as_array().expect("phases").iter().map(|p| (p["name"].as_str().unwrap(), p["outcome"].as_str().unwrap())).collect();
    assert_eq!(&phases[..5], [("create", "ok"), ("runtime_upload", "ok"), ("start", "ok"), ("healthy", "ok"), ("workspace", "failed")], "{task:#}");
    assert_eq!(phases.last(), Some(&("down", "ok")), "{task:#}");
    // No sandbox name to filter Docker by: the run's sandboxes carry the task's label.
    let name = task["sandbox"].as_str().expect("sandbox name").to_owned();
    env.assert_nothing_left(&name, "a failed workspace step").await;
}

/// `sbx up --json` and `sbx status --json` report every bootstrap phase with a duration.
async fn up_and_status_report_phases(provider: &'static str) {
    let Some(env) = Env::new(provider).await else { return };
    let name = unique("p");
    let mut args = env.up_args(&name);
    args.push("--json");
    let out = env.ok(&args);
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).expect("up --json");
    // Progress is JSON lines on stderr under --json.
    for line in text(&out.stderr).lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line: {line}: {e}"));
        assert!(ev["event"].is_string(), "{line}");
    }
    let status: serde_json::Value = serde_json::from_slice(&env.ok(&["status", &name, "--json"]).stdout).expect("status --json");
    for doc in [&up, &status] {
        let phases = doc["phases"].as_array().unwrap_or_else(|| panic!("no phases: {doc}"));
        let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["create", "runtime_upload", "start", "healthy"], "{doc}");
        assert!(phases.iter().all(|p| p["durationMs"].is_u64() && p["outcome"] == "ok"), "{doc}");
    }
    assert_eq!(up["phases"], status["phases"]);
    let human = text(&env.ok(&["status", &name]).stdout);
    assert!(human.contains("made in:") && human.contains("create "), "{human}");
    env.ok(&["down", &name]);
    env.assert_nothing_left(&name, "down").await;
}

macro_rules! per_provider {
    ($($provider:ident),+) => {
        $(
            mod $provider {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn failed_phases_leave_nothing() {
                    super::failed_phases_leave_nothing(stringify!($provider)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn interrupted_up_leaves_nothing() {
                    super::interrupted_up_leaves_nothing(stringify!($provider)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn keep_keeps_a_failed_sandbox() {
                    super::keep_keeps_a_failed_sandbox(stringify!($provider)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn failed_workspace_in_run_leaves_nothing() {
                    super::failed_workspace_in_run_leaves_nothing(stringify!($provider)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn up_and_status_report_phases() {
                    super::up_and_status_report_phases(stringify!($provider)).await;
                }
            }
        )+
    };
}

per_provider!(local, docker, e2b, daytona, vercel, modal, ssh);

/// The fault tests above cover every registered provider: a new one must join `per_provider!`.
#[test]
fn the_fault_tests_cover_every_registered_provider() {
    let mut covered = vec!["local", "docker", "e2b", "daytona", "vercel", "modal", "ssh"];
    let mut registered = sbx_providers::registry::names();
    covered.sort_unstable();
    registered.sort_unstable();
    assert_eq!(registered, covered, "add the new provider to per_provider! and Env::new");
}

#[test]
fn unknown_providers_are_named_with_the_valid_ones() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin("sbx"))
        .args(["up", "--provider", "kubernetes", "--name", "v"])
        .env("XDG_STATE_HOME", home.path())
        .env_remove("SBX_PROVIDER")
        .output()
        .expect("sbx");
    assert_eq!(out.status.code(), Some(2));
    let valid = sbx_providers::registry::names().join(", ");
    assert_eq!(text(&out.stderr).trim(), format!("error: unknown provider `kubernetes`; valid providers: {valid}"));
    let out = Command::new(bin("sbx")).args(["providers", "--json"]).output().expect("sbx providers");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, sbx_providers::registry::names());
}
