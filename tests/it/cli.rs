//! The `sbx` binary end to end on the local provider: each test has its own `XDG_STATE_HOME`, and
//! `SBX_RUNTIME` is unset so the `sbx-agent` built next to `sbx` is the runtime.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use futures::StreamExt;
use sbx_tests::{bin, wait_for, TestRuntime};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(20);

/// An isolated sbx home; destroys whatever sandboxes are left when dropped.
struct Sbx {
    home: tempfile::TempDir,
}

impl Sbx {
    fn new() -> Self {
        Self { home: tempfile::tempdir().expect("tempdir") }
    }

    /// `sbx ARGS` with this home, ready to spawn.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sbx"));
        c.args(args)
            .env("XDG_STATE_HOME", self.home.path())
            .env_remove("SBX_RUNTIME")
            .env_remove("SBX_PROVIDER")
            .env_remove("RUST_LOG")
            // No Docker: other tests' containers must not show up in (or be collected by) this home.
            .env("DOCKER_HOST", format!("unix://{}/no-docker.sock", self.home.path().display()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs `sbx ARGS` to completion.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run sbx")
    }

    /// Runs `sbx ARGS` with `input` on stdin.
    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// Runs `sbx ARGS` and insists it succeeds.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "sbx {args:?} failed ({:?}):\n{}", out.status, text(&out.stderr));
        out
    }

    /// The local provider's sandbox directories.
    fn sandbox_dirs(&self) -> Vec<PathBuf> {
        let base = self.home.path().join("sbx/local");
        match std::fs::read_dir(&base) {
            Ok(rd) => rd.map(|e| e.expect("entry").path()).filter(|p| p.is_dir()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// `sbx ls --json`.
    fn ls(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["ls", "--json"]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("ls --json is a JSON array")
    }

    /// Starts `sbx up` paused right after the sandbox is made and returns it once that point is
    /// reached (its stderr said the create step is done).
    fn up_paused(&self, name: &str) -> Child {
        let mut child = self
            .cmd(&["up", "--provider", "local", "--name", name])
            .env("SBX_TEST_PAUSE_AFTER_CREATE", "60")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sbx up");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        loop {
            let line = lines.next().expect("sbx up ended before creating the sandbox").expect("read stderr");
            if line.starts_with("creating sandbox on local") && line.contains("done") {
                break;
            }
        }
        // Keep draining stderr so `sbx up` never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        child
    }
}

impl Drop for Sbx {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--all"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("getrandom");
    b
}

/// Whether `pid` is a live process (a zombie counts as dead).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).map(|st| st != "Z" && st != "X"))
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").args([format!("-{sig}"), pid.to_string()]).status().expect("kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Every entry under `root`: relative path → (kind and mode, content hash or link target).
fn tree(root: &Path) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("under root").display().to_string();
            let meta = std::fs::symlink_metadata(&p).expect("meta");
            let mode = meta.permissions().mode() & 0o777;
            let v = if meta.file_type().is_symlink() {
                ("link".to_owned(), std::fs::read_link(&p).expect("link").display().to_string())
            } else if meta.is_dir() {
                stack.push(p.clone());
                (format!("dir {mode:o}"), String::new())
            } else {
                (format!("file {mode:o}"), sha(&std::fs::read(&p).expect("read")))
            };
            out.insert(rel, v);
        }
    }
    out
}

/// A small tree with nesting, binary content, an executable, a symlink and an empty directory.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src/deep/er")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::fs::write(root.join("README.md"), "# hello\n").expect("write");
    std::fs::write(root.join("src/deep/er/blob.bin"), random_bytes(200_000)).expect("write");
    std::fs::write(root.join("src/run.sh"), "#!/bin/sh\necho run\n").expect("write");
    std::fs::set_permissions(root.join("src/run.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    symlink("deep/er/blob.bin", root.join("src/blob-link")).expect("symlink");
}

#[test]
fn up_exec_fs_cp_ls_down() {
    let sbx = Sbx::new();
    let out = sbx.ok(&["up", "--provider", "local", "--name", "e2e"]);
    assert_eq!(text(&out.stdout), "e2e\n");

    // exec: the remote exit code becomes ours; stdout and stderr stay apart.
    let out = sbx.run(&["exec", "e2e", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&out), 3, "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    // exec -i forwards stdin.
    let out = sbx.run_with_stdin(&["exec", "e2e", "-i", "--", "cat"], b"hello through stdin\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello through stdin\n");

    // fs put / get / cat: a binary file survives the round trip byte for byte.
    let local = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(1_500_000);
    let src = local.path().join("data.bin");
    std::fs::write(&src, &data).expect("write");
    sbx.ok(&["fs", "put", "e2e", src.to_str().expect("utf8"), "data.bin"]);
    let back = local.path().join("back.bin");
    sbx.ok(&["fs", "get", "e2e", "data.bin", back.to_str().expect("utf8")]);
    assert_eq!(sha(&std::fs::read(&back).expect("read")), sha(&data));
    let out = sbx.ok(&["fs", "cat", "e2e", "data.bin"]);
    assert_eq!(sha(&out.stdout), sha(&data));
    let out = sbx.ok(&["fs", "stat", "e2e", "data.bin", "--json"]);
    let stat: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stat["size"], 1_500_000);

    // cp: a directory tree to the sandbox and back, identical.
    let tree_src = local.path().join("proj");
    make_tree(&tree_src);
    sbx.ok(&["cp", tree_src.to_str().expect("utf8"), "e2e:proj"]);
    let out = sbx.ok(&["fs", "ls", "e2e", "proj", "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = listing["entries"].as_array().expect("entries").iter().map(|e| e["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["README.md", "empty", "src"]);
    let remote_root = PathBuf::from(listing["path"].as_str().expect("path"));
    assert_eq!(tree(&remote_root), tree(&tree_src), "the sandbox's copy differs");
    let tree_back = local.path().join("proj-back");
    sbx.ok(&["cp", "e2e:proj", tree_back.to_str().expect("utf8")]);
    assert_eq!(tree(&tree_back), tree(&tree_src), "the copy back differs");
    // Onto an existing directory, the source goes inside it under its own name (cp semantics).
    let into = local.path().join("into");
    std::fs::create_dir(&into).expect("mkdir");
    sbx.ok(&["cp", "e2e:proj/src", into.to_str().expect("utf8")]);
    assert_eq!(tree(&into.join("src")), tree(&tree_src.join("src")));
    sbx.ok(&["cp", tree_src.join("src").to_str().expect("utf8"), "e2e:proj/empty"]);
    assert_eq!(tree(&remote_root.join("empty/src")), tree(&tree_src.join("src")));

    // logs: the runtime's own log, through the runtime.
    let out = sbx.ok(&["logs", "e2e", "-n", "5"]);
    assert!(text(&out.stdout).contains("starting"), "runtime log: {}", text(&out.stdout));

    let rows = sbx.ls();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "e2e");
    assert_eq!(sbx.sandbox_dirs().len(), 1);

    sbx.ok(&["down", "e2e"]);
    assert!(sbx.ls().is_empty());
    assert!(sbx.sandbox_dirs().is_empty(), "left behind: {:?}", sbx.sandbox_dirs());
}

#[test]
fn cp_errors_are_clear() {
    let sbx = Sbx::new();
    sbx.ok(&["up", "--provider", "local", "--name", "cpe"]);
    let out = sbx.run(&["cp", "/definitely/not/here", "cpe:x"]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr), "error: `/definitely/not/here` does not exist\n");
    let out = sbx.run(&["cp", "cpe:nope", "/tmp/whatever"]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr), "error: `cpe:nope` does not exist\n");
    let out = sbx.run(&["fs", "cat", "cpe", "nope"]);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("`nope` does not exist"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn ctrl_c_during_up_cleans_up() {
    let sbx = Sbx::new();
    let mut child = sbx.up_paused("x");
    assert_eq!(sbx.sandbox_dirs().len(), 1, "the sandbox should exist while `sbx up` is paused");
    signal(child.id(), "INT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(sbx.sandbox_dirs().is_empty(), "left behind: {:?}", sbx.sandbox_dirs());
    assert!(sbx.ls().is_empty());
}

#[tokio::test]
async fn killed_up_leaves_a_labelled_sandbox_that_gc_removes() {
    let sbx = Sbx::new();
    let mut child = sbx.up_paused("k");
    signal(child.id(), "KILL");
    child.wait().expect("wait");
    let dirs = sbx.sandbox_dirs();
    assert_eq!(dirs.len(), 1);
    let meta = std::fs::read_to_string(dirs[0].join(".sbx/meta.json")).expect("meta");
    assert!(meta.contains("dev.sbx."), "no sbx labels in {meta}");
    sbx.ok(&["gc"]);
    assert!(wait_for(WAIT, || async { !dirs[0].exists() }).await, "gc left {}", dirs[0].display());
    assert!(sbx.ls().is_empty());
}

#[tokio::test]
async fn a_killed_runtime_is_restarted() {
    let sbx = Sbx::new();
    sbx.ok(&["up", "--provider", "local", "--name", "rt"]);
    let out = sbx.ok(&["status", "rt", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let pid = status["runtime"]["pid"].as_u64().expect("runtime.pid") as u32;
    signal(pid, "KILL");
    assert!(wait_for(WAIT, || async { !alive(pid) }).await, "runtime {pid} survived");
    let out = sbx.run(&["exec", "rt", "--", "echo", "ok"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
    let out = sbx.ok(&["status", "rt", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_ne!(status["runtime"]["pid"].as_u64(), Some(u64::from(pid)));
}

/// Runs a command that must fail as bad usage (exit 2) and returns its stderr.
fn usage_error(sbx: &Sbx, args: &[&str]) -> String {
    let out = sbx.run(args);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 2, "sbx {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "sbx {args:?}: one line expected, got:\n{err}");
    assert!(out.stdout.is_empty(), "sbx {args:?} printed on stdout");
    err
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let sbx = Sbx::new();
    insta::assert_snapshot!("unknown_provider", usage_error(&sbx, &["up", "--provider", "nope", "--name", "a"]));
    insta::assert_snapshot!("bad_name", usage_error(&sbx, &["up", "--provider", "local", "--name", "no way!"]));
    insta::assert_snapshot!("unknown_sandbox", usage_error(&sbx, &["exec", "ghost", "--", "true"]));
    insta::assert_snapshot!("network_none_on_local", usage_error(&sbx, &["up", "--provider", "local", "--name", "a", "--network", "none"]));
    insta::assert_snapshot!("cp_both_local", usage_error(&sbx, &["cp", "a", "b"]));
    insta::assert_snapshot!("cp_both_remote", usage_error(&sbx, &["cp", "a:x", "b:y"]));
    insta::assert_snapshot!("fs_unknown_sandbox", usage_error(&sbx, &["fs", "ls", "ghost"]));
    assert!(sbx.sandbox_dirs().is_empty());
}

#[test]
fn duplicate_name_is_refused() {
    let sbx = Sbx::new();
    sbx.ok(&["up", "--provider", "local", "--name", "twin"]);
    insta::assert_snapshot!("duplicate_name", usage_error(&sbx, &["up", "--provider", "local", "--name", "twin"]));
    assert_eq!(sbx.sandbox_dirs().len(), 1);
}

#[test]
fn version_says_what_sbx_is() {
    let out = Sbx::new().ok(&["--version"]);
    let line = text(&out.stdout);
    // The build, named: version, git commit (12 hex digits, or "unknown" outside git) and target triple;
    // the snapshot matches only when every filter below found its part.
    assert!(line.contains(std::env::consts::ARCH) && line.contains(std::env::consts::OS), "{line}");
    insta::with_settings!({ filters => vec![
        (r"^sbx \d+\.\d+\.\d+\S*", "sbx [VERSION]"),
        (r"\(([0-9a-f]{12}|unknown) ", "([COMMIT] "),
        (r" [a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+(-[a-z0-9_]+)?\)", " [TARGET])"),
    ] }, {
        insta::assert_snapshot!("version", line);
    });
}

#[test]
fn completions_bash_prints_a_script() {
    let out = Sbx::new().ok(&["completions", "bash"]);
    let script = text(&out.stdout);
    assert!(script.contains("complete -F") && script.contains("sbx"), "{}", &script[..script.len().min(300)]);
    assert!(script.contains("cp") && script.contains("logs"));
    // `--provider` completes to the registered providers (from the registry, in its order).
    let providers = sbx_providers::registry::names().join(" ");
    assert!(script.contains(&providers), "no `{providers}` in the completion script");
}

#[tokio::test]
async fn runtime_log_tails_and_follows_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sbx-agent.log");
    std::fs::write(&file, "one\ntwo\nthree\n").expect("write");
    let f = file.clone();
    let rt = TestRuntime::start_with(move |c| c.log_file = Some(f)).await;

    let whole: Vec<u8> = collect(rt.client.runtime_log(false, None).await.expect("log")).await;
    assert_eq!(text(&whole), "one\ntwo\nthree\n");
    let last = collect(rt.client.runtime_log(false, Some(2)).await.expect("tail")).await;
    assert_eq!(text(&last), "two\nthree\n");

    // Following: the last line now, then whatever is appended.
    let mut follow = rt.client.runtime_log(true, Some(1)).await.expect("follow");
    let mut seen = Vec::new();
    let mut appended = false;
    let got_all = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = follow.next().await {
            seen.extend_from_slice(&chunk.expect("chunk"));
            if !appended && text(&seen) == "three\n" {
                let mut f = std::fs::OpenOptions::new().append(true).open(&file).expect("open");
                f.write_all(b"four\nfive\n").expect("append");
                appended = true;
            }
            if text(&seen) == "three\nfour\nfive\n" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got_all, Ok(true), "followed: {:?}", text(&seen));
    // An open follow would hold the server's graceful shutdown.
    drop(follow);
    rt.stop().await;

    // A runtime that logs to stdout says so.
    let rt = TestRuntime::start().await;
    let err = rt.client.runtime_log(false, None).await.err().expect("404");
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().contains("stdout"), "{err}");
    rt.stop().await;
}

async fn collect(mut s: sbx_agent::client::ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

/// Several `sbx up` at once share one SQLite state (WAL, busy timeout): every distinct name succeeds and
/// is listed once; racing on one name lets exactly one win and the others fail cleanly with exit 2.
#[test]
fn concurrent_ups_never_corrupt_the_state() {
    let sbx = Sbx::new();
    let distinct: Vec<Child> = (0..6)
        .map(|i| {
            sbx.cmd(&["up", "--provider", "local", "--name", &format!("par{i}"), "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn up")
        })
        .collect();
    for child in distinct {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "parallel up failed: {}", text(&out.stderr));
    }
    let same: Vec<Child> = (0..4)
        .map(|_| {
            sbx.cmd(&["up", "--provider", "local", "--name", "contested", "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn up")
        })
        .collect();
    let codes: Vec<i32> = same.into_iter().map(|c| code(&c.wait_with_output().expect("wait"))).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "exactly one `contested` wins: {codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 2), "losers exit 2: {codes:?}");
    let mut names: Vec<String> = sbx.ls().iter().map(|r| r["name"].as_str().expect("name").to_owned()).collect();
    names.sort();
    let mut want: Vec<String> = (0..6).map(|i| format!("par{i}")).collect();
    want.push("contested".into());
    want.sort();
    assert_eq!(names, want);
    // Every listed sandbox is real and answers.
    for n in &want {
        let out = sbx.ok(&["exec", n, "--", "echo", "ok"]);
        assert_eq!(text(&out.stdout).trim(), "ok");
    }
    assert_eq!(sbx.sandbox_dirs().len(), want.len(), "no half-made leftovers from the losers");
}

/// Agent sessions through the CLI with the mock agent: new, send, prompt (exit codes), approvals,
/// events as JSON lines, and transcripts that outlive the sandbox.
/// `sbx shell` as ssh does it: piped stdin and no `-t` is plain input to the shell (no terminal, so a
/// shell that queries its terminal cannot wait forever); `-t` gives a terminal all the same.
#[test]
fn shell_reads_piped_input_without_a_terminal_unless_t() {
    let sbx = Sbx::new();
    sbx.ok(&["up", "--provider", "local", "--name", "sh1"]);
    let out = sbx.run_with_stdin(&["shell", "sh1"], b"tty\nexit 3\n");
    assert_eq!(text(&out.stdout), "not a tty\n", "{}", text(&out.stderr));
    assert_eq!(code(&out), 3, "the shell's exit code");
    let out = sbx.run_with_stdin(&["shell", "-t", "sh1", "--", "/bin/sh"], b"echo tty=$(test -t 0 && echo yes)\nexit 5\n");
    assert!(text(&out.stdout).contains("tty=yes"), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 5);
    sbx.ok(&["down", "sh1"]);
}

/// Any ACP agent is an entry, added from the host: `sbx agent add` (flags or a JSON file), used by a
/// session like a built-in agent, refused when a credential would be written into the sandbox,
/// removed by `sbx agent rm`.
#[test]
fn any_acp_agent_is_an_entry_added_from_the_cli() {
    let sbx = Sbx::new();
    sbx.ok(&["up", "--provider", "local", "--name", "acpadd"]);
    let script = sbx_tests::workspace_root().join("tests/fakes/acp_agent.py");
    let script = script.to_str().expect("utf-8 path");
    let out = sbx.ok(&[
        "agent", "add", "acpadd", "fake", "--command", "python3", "--arg", "-u", "--arg", script, "--credential", "FAKE_ACP_KEY",
        "--mode", "ask=asks first", "--mode", "yolo", "--install-hint", "pip install fake-acp",
    ]);
    assert!(text(&out.stdout).starts_with("fake: python3 (installed: "), "{}", text(&out.stdout));
    let out = sbx.ok(&["agent", "ls", "acpadd", "--json"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let fake = agents.as_array().expect("array").iter().find(|a| a["id"] == "fake").expect("the added agent is listed");
    let modes: Vec<&str> = fake["modes"].as_array().expect("modes").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(modes, ["ask", "yolo"]);

    // A session with it, as with any agent.
    let out = sbx.ok(&["prompt", "acpadd", "say hello from an entry", "--agent", "fake", "-e", "FAKE_ACP_KEY=k-1"]);
    assert_eq!(text(&out.stdout).trim(), "hello from an entry", "stderr: {}", text(&out.stderr));

    // The same from a file replaces the entry; an id that does not match the file's is refused.
    let file = sbx.home.path().join("fake.json");
    let entry = serde_json::json!({"id": "fake", "command": "python3", "args": ["-u", script], "installHint": "from a file"});
    std::fs::write(&file, entry.to_string()).unwrap();
    sbx.ok(&["agent", "add", "acpadd", "fake", "--file", file.to_str().unwrap()]);
    let out = sbx.ok(&["agent", "ls", "acpadd", "--json"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let fakes: Vec<&serde_json::Value> = agents.as_array().expect("array").iter().filter(|a| a["id"] == "fake").collect();
    assert_eq!(fakes.len(), 1, "replaced, not added twice");
    assert_eq!(fakes[0]["installHint"], serde_json::Value::Null, "installed: no hint shown");
    assert!(fakes[0]["modes"].as_array().is_none_or(|m| m.is_empty()), "the file's entry has no modes: {}", fakes[0]);
    let out = sbx.run(&["agent", "add", "acpadd", "other", "--file", file.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("is for agent `fake`"), "{}", text(&out.stderr));

    // Refused, with the reason: a credential among the plain settings (it would be written to a file
    // in the sandbox), a built-in id, a bad id.
    let out = sbx.run(&["agent", "add", "acpadd", "leaky", "--command", "x", "--credential", "LEAKY_KEY", "-e", "LEAKY_KEY=sk-1"]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("credential LEAKY_KEY in `env`"), "{}", text(&out.stderr));
    let out = sbx.run(&["agent", "add", "acpadd", "claude", "--command", "x"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("built-in agent"), "{}", text(&out.stderr));
    let out = sbx.run(&["agent", "add", "acpadd", "a b", "--command", "x"]);
    assert_eq!(code(&out), 2);
    let out = sbx.run(&["agent", "add", "acpadd", "nocmd"]);
    assert_eq!(code(&out), 2, "--command or --file is needed");

    sbx.ok(&["agent", "rm", "acpadd", "fake"]);
    let out = sbx.ok(&["agent", "ls", "acpadd", "--json"]);
    assert!(!text(&out.stdout).contains("\"id\":\"fake\""), "{}", text(&out.stdout));
    let out = sbx.run(&["agent", "rm", "acpadd", "fake"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("no configured ACP agent `fake`"), "{}", text(&out.stderr));
    let out = sbx.run(&["agent", "rm", "acpadd", "claude"]);
    assert_eq!(code(&out), 2);
    sbx.ok(&["down", "acpadd"]);
}

#[test]
fn sessions_prompt_and_transcripts_through_the_cli() {
    let sbx = Sbx::new();
    sbx.ok(&["up", "--provider", "local", "--name", "ag"]);
    let out = sbx.ok(&["agent", "ls", "ag", "--json"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = agents.as_array().expect("array").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, ["claude", "codex", "mock", "vibe", "gemini", "opencode", "openhands"], "native agents, then the ACP presets");

    let out = sbx.ok(&["session", "new", "ag", "--agent", "mock", "--permission-mode", "allow-all", "--id", "s1"]);
    assert_eq!(text(&out.stdout), "s1\n");
    let out = sbx.ok(&["session", "send", "ag", "s1", "write hello.txt hi\necho done"]);
    assert_eq!(text(&out.stdout), "wrote hello.txt\ndone\n", "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("→ write"), "tool calls are shown: {}", text(&out.stderr));
    let out = sbx.ok(&["exec", "ag", "--", "cat", "hello.txt"]);
    assert_eq!(text(&out.stdout), "hi");

    // prompt: the answer on stdout; a failing agent exits 6.
    let out = sbx.ok(&["prompt", "ag", "echo hello", "--agent", "mock"]);
    assert_eq!(text(&out.stdout), "hello\n");
    let out = sbx.run(&["prompt", "ag", "fail the tests are red", "--agent", "mock"]);
    assert_eq!(code(&out), 6);
    assert!(text(&out.stderr).contains("the tests are red"), "{}", text(&out.stderr));
    // Not a terminal and no --approve: permission requests are denied, and the tool does not run.
    let out = sbx.ok(&["prompt", "ag", "write denied.txt x", "--agent", "mock"]);
    assert!(text(&out.stdout).contains("not allowed"), "{}", text(&out.stdout));
    assert_ne!(code(&sbx.run(&["exec", "ag", "--", "test", "-e", "denied.txt"])), 0);
    sbx.ok(&["prompt", "ag", "write allowed.txt x", "--agent", "mock", "--approve", "all"]);
    sbx.ok(&["exec", "ag", "--", "test", "-e", "allowed.txt"]);
    // Unknown agent: a usage error that lists the agents.
    let out = sbx.run(&["prompt", "ag", "hi", "--agent", "gpt-pilot"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("claude, codex, mock"), "{}", text(&out.stderr));

    // attach: follows from the last event this host saw (nothing before it), until the session ends.
    let mut attach = sbx.cmd(&["session", "attach", "ag", "s1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("attach");
    let mut err_lines = BufReader::new(attach.stderr.take().expect("stderr")).lines();
    let first = err_lines.next().expect("attach says where it starts").expect("read");
    assert!(first.starts_with("attached to s1 after event "), "{first}");
    let rest = std::thread::spawn(move || err_lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let out = sbx.ok(&["session", "send", "ag", "s1", "echo live"]);
    assert_eq!(text(&out.stdout), "live\n");
    sbx.ok(&["session", "end", "ag", "s1"]);
    let attached = attach.wait_with_output().expect("attach ends with the session");
    let attach_err = rest.join().expect("stderr");
    assert!(attached.status.success(), "{attach_err}");
    assert_eq!(text(&attached.stdout), "live\n", "attach shows only what came after the host's last event");
    assert!(attach_err.contains("session ended"), "{attach_err}");

    // events --json: one event per line, gapless.
    let out = sbx.ok(&["session", "events", "ag", "s1", "--json"]);
    let seqs: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["sequence"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let out = sbx.ok(&["session", "ls", "ag", "--json"]);
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(sessions.as_array().expect("array").len() >= 4);

    // The transcript outlives the sandbox.
    sbx.ok(&["down", "ag"]);
    let out = sbx.ok(&["session", "export", "ag", "s1", "--format", "markdown"]);
    let md = text(&out.stdout);
    assert!(md.starts_with("# Session s1 (mock)"), "{md}");
    assert!(md.contains("**User:** write hello.txt hi") && md.contains("tool `write`") && md.contains("done"), "{md}");
    let out = sbx.ok(&["session", "export", "ag", "s1", "--format", "jsonl"]);
    assert_eq!(text(&out.stdout).lines().count(), seqs.len());
    let out = sbx.ok(&["session", "ls", "ag"]);
    assert!(text(&out.stdout).contains("s1"));
}
