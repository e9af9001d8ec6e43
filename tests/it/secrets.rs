//! No secret inside a sandbox, on every provider (local, Docker, the E2B fake, the Daytona fake with a
//! daemon that splits commands without a shell, the Vercel fake): after `sbx up --credentials claude`, mock-agent
//! sessions (which must see the keys), a runtime killed and started again by the next command, and
//! (Daytona) a stop/start that brings the runtime back through its autostart script, neither the
//! runtime's token nor the keys are in any file of the sandbox, in any `/proc/*/cmdline` or
//! `/proc/*/environ` (the runtime's included), in the runtime's log at trace level, or in anything
//! `sbx` printed.

use std::path::{Path, PathBuf};
use std::process::Output;

use sbx_tests::bin;
use sbx_tests::fakes::daytona::{FakeConfig, FakeDaytona};
use sbx_tests::fakes::e2b::FakeE2b;
use sbx_tests::fakes::modal::FakeModal;
use sbx_tests::fakes::vercel::FakeVercel;

pub(crate) enum Target {
    Local,
    Docker,
    E2b(FakeE2b),
    Daytona(FakeDaytona),
    Vercel(FakeVercel),
    Modal(FakeModal),
}

impl Target {
    pub(crate) fn provider(&self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Docker => "docker",
            Target::E2b(_) => "e2b",
            Target::Daytona(_) => "daytona",
            Target::Vercel(_) => "vercel",
            Target::Modal(_) => "modal",
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Target::Local | Target::Docker => Vec::new(),
            Target::E2b(f) => f.env(),
            Target::Daytona(f) => f.env(),
            Target::Vercel(f) => f.env(),
            Target::Modal(f) => f.env(),
        }
    }

    /// The Docker container behind sandbox `id` (none for local).
    fn container(&self, id: &str) -> Option<String> {
        match self {
            Target::Local => None,
            Target::Docker => Some(id.to_owned()),
            Target::E2b(f) => f.container(id),
            Target::Daytona(f) => f.container_of(id),
            Target::Vercel(f) => f.container_of(id),
            Target::Modal(f) => f.container_of(id),
        }
    }
}

pub(crate) struct Box_ {
    pub(crate) target: Target,
    pub(crate) home: tempfile::TempDir,
    pub(crate) name: String,
    /// Everything `sbx` printed.
    pub(crate) transcript: String,
    /// More environment for `sbx` (e.g. the keyless upstream URLs, the agent binaries).
    pub(crate) extra: Vec<(String, String)>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Box_ {
    /// `sbx ARGS` with this box's clean environment (not run yet).
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let h = self.home.path();
        let mut c = tokio::process::Command::new(bin("sbx"));
        // A clean environment: the keys are only in the files under this test's $HOME.
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", h)
            .env("XDG_STATE_HOME", h.join("state"))
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        if let Ok(v) = std::env::var("DOCKER_HOST") {
            c.env("DOCKER_HOST", v);
        }
        for (k, v) in self.target.env().into_iter().chain(self.extra.iter().cloned()) {
            c.env(k, v);
        }
        c
    }

    pub(crate) async fn run(&mut self, args: &[&str]) -> Output {
        let out = self.command(args).output().await.expect("run sbx");
        self.transcript.push_str(&text(&out.stdout));
        self.transcript.push_str(&text(&out.stderr));
        out
    }

    pub(crate) async fn ok(&mut self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "sbx {args:?} failed ({:?}):\n{}", out.status.code(), text(&out.stderr));
        text(&out.stdout)
    }

    pub(crate) fn id(&self) -> String {
        let db = rusqlite::Connection::open(self.home.path().join("state/sbx/sbx.db")).expect("state db");
        db.query_row("SELECT id FROM sandboxes WHERE name = ?1", [&self.name], |r| r.get::<_, String>(0)).expect("id")
    }

    pub(crate) fn token(&self) -> String {
        let db = rusqlite::Connection::open(self.home.path().join("state/sbx/sbx.db")).expect("state db");
        db.query_row("SELECT token FROM sandboxes WHERE name = ?1", [&self.name], |r| r.get::<_, String>(0)).expect("token")
    }

    /// Runs `script` with `sh` where the sandbox's processes run (in its container; on this host for
    /// local), `stdin` on its standard input. Secrets only ever travel on stdin, so the scan itself
    /// puts none on a command line.
    pub(crate) async fn sh(&self, script: &str, stdin: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncWriteExt;
        let mut c = match self.target.container(&self.id()) {
            Some(container) => {
                let mut c = tokio::process::Command::new("docker");
                c.args(["exec", "-i", &container, "sh", "-c", script]);
                c
            }
            None => {
                let mut c = tokio::process::Command::new("sh");
                c.args(["-c", script]);
                c
            }
        };
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).await.expect("write stdin");
        drop(input);
        let out = child.wait_with_output().await.expect("wait");
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
        out.stdout
    }

    /// Kills the runtime (SIGKILL, so it cannot tidy up), as a crash would.
    pub(crate) async fn kill_runtime(&self) {
        // The runtime's command line names its binary and `server`; for local also this sandbox's dir.
        let mark = match self.target {
            Target::Local => format!("{}", self.home.path().join("state/sbx/local").join(self.id()).display()),
            _ => String::new(),
        };
        let script = "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
             case \"$c\" in *sbx-agent\\ server*\"$1\"*) kill -9 ${p#/proc/}; echo killed;; esac; done";
        let script = format!("set -- '{mark}'; {script}");
        let out = text(&self.sh(&script, b"").await);
        assert!(out.contains("killed"), "no runtime process found to kill");
    }

    /// Every place in the sandbox that holds one of `secrets` (by label), or nothing.
    pub(crate) async fn scan(&self, secrets: &[(&str, &str)]) -> Vec<String> {
        let mut hits = Vec::new();
        // /proc: every process's command line and environment, the runtime's included, taken by a
        // shell that skips only itself (its children are `cat`s of paths, and hold no secret).
        let procs = self
            .sh(
                "for p in /proc/[0-9]*; do [ \"${p#/proc/}\" = \"$$\" ] && continue; \
                 printf '\\n@@ %s cmdline ' \"$p\"; cat \"$p/cmdline\" 2>/dev/null; \
                 printf '\\n@@ %s environ ' \"$p\"; cat \"$p/environ\" 2>/dev/null; done; true",
                b"",
            )
            .await;
        for line in procs.split(|b| *b == b'\n') {
            for (what, secret) in secrets {
                if find(line, secret.as_bytes()) {
                    let head = text(&line[..line.len().min(60)]);
                    hits.push(format!("{what} in {head}"));
                }
            }
        }
        // Files.
        match self.target {
            Target::Local => {
                // The local sandbox is its directory (which holds the runtime's state dir and log).
                let dir = self.home.path().join("state/sbx/local");
                for path in walk(&dir) {
                    let Ok(bytes) = std::fs::read(&path) else { continue };
                    for (what, secret) in secrets {
                        if find(&bytes, secret.as_bytes()) {
                            hits.push(format!("{what} in file {}", path.display()));
                        }
                    }
                }
            }
            _ => {
                // The patterns arrive on stdin (`-f -`), so grep's own command line holds none.
                let patterns: String = secrets.iter().map(|(_, s)| format!("{s}\n")).collect();
                let files = self
                    .sh(
                        "grep -rlF -f /dev/stdin / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; true",
                        patterns.as_bytes(),
                    )
                    .await;
                for f in text(&files).lines().filter(|l| !l.is_empty()) {
                    hits.push(format!("a secret in file {f}"));
                }
            }
        }
        hits
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

pub(crate) fn write(home: &Path, rel: &str, body: &str) {
    let p = home.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

async fn no_secret_in_the_sandbox(target: Target) {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let api_key = format!("sk-ant-api03-LEAKCHECK{}", sbx_tests::random_token());
    let oauth = format!("sk-ant-oat01-LEAKCHECK{}", sbx_tests::random_token());
    write(h, ".claude.json", &format!(r#"{{"primaryApiKey": "{api_key}"}}"#));
    write(h, ".claude/.credentials.json", &format!(r#"{{"claudeAiOauth": {{"accessToken": "{oauth}", "expiresAt": 99999999999999}}}}"#));
    let name = format!("leak-{}-{}", target.provider(), &sbx_tests::random_token()[..6]);
    let mut b = Box_ { target, home, name: name.clone(), transcript: String::new(), extra: Vec::new() };
    let provider = b.target.provider();
    let mut up = vec!["up", "--provider", provider, "--name", &name, "--credentials", "claude", "--env", "SBX_AGENT_LOG=trace"];
    let image = crate::conformance::base_image();
    if matches!(b.target, Target::Docker) {
        up.extend(["--image", image.as_str()]);
    }
    b.ok(&up).await;

    // The agent session sees exactly the named keys (compared by hash: the check prints no secret).
    use sha2::{Digest, Sha256};
    let want = hex::encode(Sha256::digest(format!("{api_key}|{oauth}")));
    let probe = "run printf '%s|%s' \"$ANTHROPIC_API_KEY\" \"$CLAUDE_CODE_OAUTH_TOKEN\" | sha256sum";
    let seen = b.ok(&["prompt", &name, probe, "--agent", "mock", "--approve", "all"]).await;
    assert!(seen.contains(&want), "the mock agent got the credentials: {seen}");
    let exec_env = b.ok(&["exec", &name, "--", "env"]).await;
    assert!(!exec_env.contains("LEAKCHECK"), "sbx exec does not see session-only keys");

    // A runtime that died is started again by the next command, and gets the keys again from the host.
    b.kill_runtime().await;
    let seen = b.ok(&["prompt", &name, probe, "--agent", "mock", "--approve", "all"]).await;
    assert!(seen.contains(&want), "after a restart the agent still gets the credentials: {seen}");
    if matches!(b.target, Target::Daytona(_)) {
        // Stop/start: the autostart script brings the runtime back with no secret; the next command
        // notices the runtime holds none and sends them.
        b.ok(&["pause", &name]).await;
        b.ok(&["resume", &name]).await;
        let seen = b.ok(&["prompt", &name, probe, "--agent", "mock", "--approve", "all"]).await;
        assert!(seen.contains(&want), "after stop/start the agent still gets the credentials: {seen}");
        let cat = b.ok(&["exec", &name, "--", "sh", "-c", "cat $HOME/.cache/sbx/daytona-autostart.sh"]).await;
        assert!(cat.contains("--token-sha256"), "{cat}");
    }

    let token = b.token();
    assert_eq!(token.len(), 32);
    // The provider's own token, where the fake has one the scan can look for.
    let provider_token = match &b.target {
        Target::Vercel(f) => Some(f.token().to_owned()),
        Target::Modal(f) => Some(f.token_secret().to_owned()),
        _ => None,
    };
    let mut secrets = vec![("the api key", api_key.as_str()), ("the oauth token", oauth.as_str()), ("the runtime token", token.as_str())];
    if let Some(t) = &provider_token {
        secrets.push(("the provider token", t.as_str()));
    }
    let hits = b.scan(&secrets).await;
    assert!(hits.is_empty(), "secrets inside the {provider} sandbox: {hits:#?}");

    let logs = b.ok(&["logs", &name]).await;
    assert!(logs.contains("TRACE"), "the runtime logged at trace level");
    assert!(logs.contains("session environment set"), "{logs}");
    for (what, secret) in secrets {
        assert!(!logs.contains(secret), "{what} is in the runtime's log");
        assert!(!b.transcript.contains(secret), "{what} is in sbx's output or log");
    }
    b.ok(&["down", &name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_a_local_sandbox() {
    no_secret_in_the_sandbox(Target::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_a_docker_sandbox() {
    assert!(sbx_tests::docker_available(), "Docker is required");
    no_secret_in_the_sandbox(Target::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_an_e2b_sandbox() {
    assert!(sbx_tests::docker_available(), "Docker is required (the fake E2B runs sandboxes as containers)");
    no_secret_in_the_sandbox(Target::E2b(FakeE2b::start().await)).await;
}

/// Also the proof that the Daytona provider works when the daemon runs commands without a shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_a_daytona_sandbox_whose_daemon_splits_commands() {
    assert!(sbx_tests::docker_available(), "Docker is required (the fake Daytona runs sandboxes as containers)");
    let fake = FakeDaytona::start_with(FakeConfig { split_commands: true, ..FakeConfig::default() }).await;
    no_secret_in_the_sandbox(Target::Daytona(fake)).await;
}

/// The Vercel token stays on the host too (it only ever goes to the control plane).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_a_vercel_sandbox() {
    assert!(sbx_tests::docker_available(), "Docker is required (the fake Vercel runs sandboxes as containers)");
    no_secret_in_the_sandbox(Target::Vercel(FakeVercel::start().await)).await;
}

/// The Modal token pair stays on the host too (it only ever goes to the control plane).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_a_modal_sandbox() {
    assert!(sbx_tests::docker_available(), "Docker is required (the fake Modal runs sandboxes as containers)");
    no_secret_in_the_sandbox(Target::Modal(FakeModal::start().await)).await;
}
