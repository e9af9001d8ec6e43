//! Process output is bytes, and none of it is lost: random bytes through `sbx exec -- cat` (local and
//! Docker sandboxes), through run-to-completion and through a managed process's log (frames, SSE and
//! JSON) of the real `sbx-agent` binary, each compared by sha256 with the file; 200 MiB through a
//! log ring of 8 MiB; and where output must be dropped, an explicit marker, a warning and exit 125.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use sbx_agent::api::process::{CreateProcessRequest, LogEntry, LogsQuery, ProcessLimitsUpdate, ProcessStatus, RunRequest};
use sbx_agent::client::{Client, FollowOptions, LogEvent};
use sbx_tests::{bin, wait_for};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// A shell line that makes 16 MiB of random bytes at /tmp/random.bin and prints `sha256sum` of them
/// (the sandbox's own hash: the oracle is on the far side).
pub(crate) const RANDOM_16_MIB: &str = "head -c 16777216 /dev/urandom > /tmp/random.bin && sha256sum /tmp/random.bin";

/// Checks that `got` hashes to what `sha256sum` printed in the sandbox.
pub(crate) fn assert_sha256sum(sha256sum_out: &[u8], got: &[u8]) {
    let want = std::str::from_utf8(sha256sum_out).expect("sha256sum output").split_whitespace().next().expect("a hash");
    assert_eq!(got.len(), 16 * MIB, "byte count through sbx exec");
    assert_eq!(sha(got), want, "bytes through sbx exec differ from the sandbox's file");
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn random_file(path: &Path, len: usize) -> String {
    let mut b = vec![0u8; len];
    getrandom::fill(&mut b).expect("getrandom");
    std::fs::write(path, &b).expect("write");
    sha(&b)
}

/// An isolated sbx home; takes its sandboxes down when dropped.
struct Sbx {
    home: tempfile::TempDir,
    docker: bool,
}

/// What one `sbx` run wrote, with stdout only hashed (it may be hundreds of MiB).
struct Streamed {
    code: Option<i32>,
    len: usize,
    sha: String,
    stdout_head: Vec<u8>,
    stderr: String,
}

impl Sbx {
    fn local() -> Self {
        Self { home: tempfile::tempdir().expect("tempdir"), docker: false }
    }

    /// `None` (with the reason printed) when Docker is missing and SBX_REQUIRE_DOCKER is not set.
    fn docker() -> Option<Self> {
        if !sbx_tests::docker_available() {
            eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
            return None;
        }
        Some(Self { home: tempfile::tempdir().expect("tempdir"), docker: true })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sbx"));
        c.args(args).env("XDG_STATE_HOME", self.home.path()).env("NO_COLOR", "1").env_remove("RUST_LOG").stdin(Stdio::null());
        if self.docker {
            c.env("SBX_RUNTIME", sbx_tests::static_runtime());
        } else {
            // The sbx-agent built next to sbx is the runtime; no Docker in sight.
            c.env_remove("SBX_RUNTIME")
                .env("DOCKER_HOST", format!("unix://{}/no-docker.sock", self.home.path().display()));
        }
        c
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args).output().expect("run sbx");
        assert!(out.status.success(), "sbx {args:?} failed ({:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn up(&self, name: &str) {
        if self.docker {
            self.ok(&["up", "--provider", "docker", "--image", &crate::conformance::base_image(), "--name", name, "-q"]);
        } else {
            self.ok(&["up", "--provider", "local", "--name", name, "-q"]);
        }
    }

    /// `sbx ARGS`, hashing stdout as it streams.
    fn streamed(&self, args: &[&str], env: &[(&str, &str)]) -> Streamed {
        let mut c = self.cmd(args);
        c.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child: Child = c.spawn().expect("spawn sbx");
        let mut err = child.stderr.take().expect("stderr");
        let errs = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let mut out = child.stdout.take().expect("stdout");
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; MIB];
        let (mut len, mut head) = (0, Vec::new());
        loop {
            let n = out.read(&mut buf).expect("read stdout");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if head.len() < 4096 {
                head.extend_from_slice(&buf[..n.min(4096 - head.len())]);
            }
            len += n;
        }
        let status = child.wait().expect("wait");
        Streamed { code: status.code(), len, sha: hex::encode(hasher.finalize()), stdout_head: head, stderr: errs.join().expect("stderr") }
    }

    /// Makes `len` random bytes at `path` inside the sandbox; returns their sha256 as the sandbox's
    /// own `sha256sum` reports it (the oracle is on the far side).
    fn random_in_sandbox(&self, name: &str, path: &str, len: usize) -> String {
        let script = format!("head -c {len} /dev/urandom > {path} && sha256sum {path}");
        let out = self.ok(&["exec", name, "--", "sh", "-c", &script]);
        String::from_utf8(out).expect("sha256sum output").split_whitespace().next().expect("a hash").to_owned()
    }
}

impl Drop for Sbx {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--all"]).output();
    }
}

/// 16 MiB and 200 MiB of random bytes through `sbx exec NAME -- cat FILE`: same sha256, exit 0, no warning.
fn exec_cat_is_exact_and_whole(sbx: &Sbx) {
    sbx.up("bytes");
    let want = sbx.random_in_sandbox("bytes", "small.bin", 16 * MIB);
    let got = sbx.streamed(&["exec", "bytes", "--", "cat", "small.bin"], &[]);
    assert_eq!((got.code, got.len), (Some(0), 16 * MIB), "{}", got.stderr);
    assert_eq!(got.sha, want, "16 MiB through sbx exec differ");
    assert!(got.stderr.is_empty(), "{}", got.stderr);

    // Twenty-five times the runtime's 8 MiB log: backpressure, not loss.
    let want = sbx.random_in_sandbox("bytes", "big.bin", 200 * MIB);
    let started = std::time::Instant::now();
    let got = sbx.streamed(&["exec", "bytes", "--", "cat", "big.bin"], &[]);
    eprintln!("200 MiB through sbx exec in {:?}", started.elapsed());
    assert_eq!((got.code, got.len), (Some(0), 200 * MIB), "{}", got.stderr);
    assert_eq!(got.sha, want, "200 MiB through sbx exec differ");
    assert!(got.stderr.is_empty(), "{}", got.stderr);
    sbx.ok(&["exec", "bytes", "--", "rm", "-f", "small.bin", "big.bin"]);
}

#[test]
fn exec_output_is_byte_exact_and_whole_on_local() {
    exec_cat_is_exact_and_whole(&Sbx::local());
}

#[test]
fn exec_output_is_byte_exact_and_whole_on_docker() {
    let Some(sbx) = Sbx::docker() else { return };
    exec_cat_is_exact_and_whole(&sbx);
}

/// When output is dropped anyway (here: the test hook starts the command without the hold and
/// follows it late, after it wrote 20 MB into an 8 MiB log), `sbx exec` says how much, and exits 125.
#[test]
fn exec_warns_and_exits_125_when_output_was_lost() {
    let sbx = Sbx::local();
    sbx.up("lossy");
    let total = 20_000_000usize;
    let script = format!("head -c {total} /dev/zero");
    let got = sbx.streamed(
        &["exec", "lossy", "--", "sh", "-c", &script],
        &[("SBX_TEST_EXEC_UNHELD_FOLLOW_DELAY_MS", "2000")],
    );
    assert_eq!(got.code, Some(125), "{}", got.stderr);
    let warning = got.stderr.lines().find(|l| l.starts_with("sbx: warning: ")).unwrap_or_else(|| panic!("{}", got.stderr));
    let lost: usize = warning["sbx: warning: ".len()..].split(' ').next().and_then(|n| n.parse().ok()).expect(warning);
    assert!(lost > 0 && got.len + lost == total, "{} printed + {lost} lost != {total}: {}", got.len, got.stderr);
    assert!(got.stdout_head.iter().all(|&b| b == 0));
    assert!(got.stderr.contains("the command exited with 0, but") && got.stderr.contains("exiting with 125"), "{}", got.stderr);

    // With the hold (the default), the same command loses nothing.
    let got = sbx.streamed(&["exec", "lossy", "--", "sh", "-c", &script], &[]);
    assert_eq!((got.code, got.len), (Some(0), total), "{}", got.stderr);
}

/// The real `sbx-agent` binary on a Unix socket in a temporary directory, killed when dropped.
struct Agent {
    child: Child,
    client: Client,
    dir: tempfile::TempDir,
}

impl Agent {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let token = sbx_tests::random_token();
        let child = Command::new(bin("sbx-agent"))
            .args(["server", "--unix-only", "--unix"])
            .arg(&sock)
            .arg("--root")
            .arg(dir.path())
            .env("SBX_AGENT_TOKEN", &token)
            .env("SBX_AGENT_LOG_STDOUT", "1")
            .env("XDG_STATE_HOME", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sbx-agent");
        let client = Client::unix(&sock, Some(token)).expect("client");
        let up = wait_for(Duration::from_secs(20), || async { client.health().await.is_ok() }).await;
        assert!(up, "sbx-agent did not answer on {}", sock.display());
        Self { child, client, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn concat(entries: &[LogEntry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.data.iter().copied()).collect()
}

/// Follows `id` with the typed client (binary frames) to the exit: (stdout, gaps, exit code).
async fn follow_all(client: &Client, id: &str) -> (Vec<u8>, Vec<sbx_agent::api::process::LogDropped>, Option<i32>) {
    let mut follow = client.follow_logs(id, FollowOptions::default()).await.expect("follow");
    let (mut out, mut gaps, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(ev) = follow.next().await {
        match ev.expect("event") {
            LogEvent::Log(e) => {
                assert_eq!(e.offset as usize, out.len(), "entries continue where the last one ended");
                out.extend_from_slice(&e.data);
            }
            LogEvent::Dropped(g) => gaps.push(g),
            LogEvent::Exit(info) => code = info.exit_code,
        }
    }
    (out, gaps, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_api_returns_output_byte_for_byte() {
    let agent = Agent::start().await;
    let c = &agent.client;
    let want = random_file(&agent.path("random.bin"), 16 * MIB);

    // Run to completion: 16 MiB is exactly the default maxOutputBytes, so nothing is cut.
    let run = c.run(&RunRequest::command("cat", ["random.bin"])).await.expect("run");
    assert!(run.success() && !run.stdout_truncated, "{:?}", run.exit_code);
    assert_eq!((run.stdout.len(), sha(&run.stdout)), (16 * MIB, want.clone()), "run-to-completion output differs");

    // A managed process followed with the typed client (frames), held until the follow starts.
    let req = CreateProcessRequest { hold_output_ms: Some(60_000), ..CreateProcessRequest::command("cat", ["random.bin"]) };
    let p = c.start_process(&req).await.expect("start");
    let (out, gaps, code) = follow_all(c, &p.id).await;
    assert_eq!((code, gaps.len()), (Some(0), 0));
    assert_eq!(sha(&out), want, "followed (frames) output differs");

    // The same log again, complete, as server-sent events (base64 in JSON) and as plain JSON.
    c.set_process_config(ProcessLimitsUpdate { max_log_bytes_per_process: Some(64 * MIB as u64), ..Default::default() })
        .await
        .expect("config");
    let p = c.start_process(&CreateProcessRequest::command("cat", ["random.bin"])).await.expect("start");
    let done = wait_for(Duration::from_secs(30), || async { c.get_process(&p.id).await.expect("get").status == ProcessStatus::Exited }).await;
    assert!(done, "cat did not finish");
    let logs = c.process_logs(&p.id, &LogsQuery::default()).await.expect("logs");
    assert!(!logs.dropped);
    assert_eq!(sha(&concat(&logs.entries)), want, "JSON log output differs");

    let resp = c
        .request(reqwest::Method::GET, &format!("/v1/processes/{}/logs", p.id))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    let mut body = resp.bytes_stream();
    let mut parser = sbx_agent::client::sse::SseParser::new();
    let (mut sse, mut exited) = (Vec::new(), false);
    while let Some(chunk) = body.next().await {
        parser.feed(&chunk.expect("chunk"));
        while let Some(ev) = parser.next_event() {
            match ev.event.as_str() {
                "log" => sse.extend_from_slice(&serde_json::from_str::<LogEntry>(&ev.data).expect("LogEntry").data),
                "exit" => exited = true,
                other => panic!("unexpected event {other}"),
            }
        }
    }
    assert!(exited);
    assert_eq!(sha(&sse), want, "SSE output differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_process_waits_for_its_reader_and_dropped_output_is_marked() {
    let agent = Agent::start().await;
    let c = &agent.client;
    c.set_process_config(ProcessLimitsUpdate { max_log_bytes_per_process: Some(MIB as u64), ..Default::default() })
        .await
        .expect("config");

    // 40 MiB through a 1 MiB log: a follower gets all of it.
    let want = random_file(&agent.path("random.bin"), 40 * MIB);
    let req = CreateProcessRequest { hold_output_ms: Some(60_000), ..CreateProcessRequest::command("cat", ["random.bin"]) };
    let p = c.start_process(&req).await.expect("start");
    let (out, gaps, code) = follow_all(c, &p.id).await;
    assert_eq!((code, gaps.len(), out.len()), (Some(0), 0, 40 * MIB));
    assert_eq!(sha(&out), want);

    // Nobody follows: the oldest output goes, and whoever reads later is told how much.
    let total = 5_000_000u64;
    let p = c.start_process(&CreateProcessRequest::shell(format!("head -c {total} /dev/zero"))).await.expect("start");
    let done = wait_for(Duration::from_secs(30), || async { c.get_process(&p.id).await.expect("get").status == ProcessStatus::Exited }).await;
    assert!(done);
    let logs = c.process_logs(&p.id, &LogsQuery::default()).await.expect("logs");
    let kept = concat(&logs.entries).len() as u64;
    assert!(logs.dropped && logs.dropped_stdout_bytes > 0, "{} dropped", logs.dropped_stdout_bytes);
    assert_eq!(logs.dropped_stdout_bytes + kept, total);
    assert_eq!(logs.entries[0].offset, logs.dropped_stdout_bytes, "the kept output starts where the gap ends");

    let (out, gaps, code) = follow_all_after_gap(c, &p.id).await;
    assert_eq!(code, Some(0));
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].stdout_bytes + out.len() as u64, total);
}

/// Like [`follow_all`], but the first entry starts after the gap.
async fn follow_all_after_gap(
    client: &Client,
    id: &str,
) -> (Vec<u8>, Vec<sbx_agent::api::process::LogDropped>, Option<i32>) {
    let mut follow = client.follow_logs(id, FollowOptions::default()).await.expect("follow");
    let (mut out, mut gaps, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(ev) = follow.next().await {
        match ev.expect("event") {
            LogEvent::Log(e) => {
                assert!(!gaps.is_empty(), "the marker comes before the output after the gap");
                out.extend_from_slice(&e.data);
            }
            LogEvent::Dropped(g) => gaps.push(g),
            LogEvent::Exit(info) => code = info.exit_code,
        }
    }
    (out, gaps, code)
}
