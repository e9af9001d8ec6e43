//! File transfer benchmark: `sbx cp` and the runtime's file API against `docker cp` into and out of the
//! same container, in the same run. Prints times, ratios (sbx time / docker time, lower is better) and
//! peak memory; never fails on time.
//!
//! - (a) `sbx cp` of a 200 MiB tree (200 files of 1 MiB) host -> sandbox vs `docker cp` (target <= 1.0x);
//! - (b) one 1 GiB file, both directions, vs `docker cp` (target <= 1.0x), with the peak RSS of the `sbx`
//!   process on the host and of the runtime in the sandbox (both must stay flat: streaming, no buffering);
//! - (c) the same uploads straight through the runtime's file API (`PUT /v1/fs/file`,
//!   `POST /v1/fs/upload-batch`) from this process, with no CLI in between (target <= 2x);
//! - for reference, the Docker provider's own upload (the bootstrap channel, Docker's archive API),
//!   which `sbx cp` does not use: `sbx cp` always goes through the runtime.
//!
//! `SBX_BENCH_SBX` picks the `sbx` binary (default: the release build, else the debug one) and
//! `SBX_RUNTIME` the runtime, e.g. to measure an older build against the same baseline. Sizes: `SBX_BENCH_BIG_MIB` (default 1024) and `SBX_BENCH_TREE_FILES` (default 200) shrink them for a
//! quick look. Run: `bash install/bench.sh` (or `cargo bench -p sbx-tests --bench transfer` after
//! building `sbx` and the static runtime).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sbx_agent::client::{Client, WriteOptions};
use sbx_providers::Provider as _;

const MIB: u64 = 1024 * 1024;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sbx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SBX_BENCH_SBX") {
        return PathBuf::from(p);
    }
    let root = sbx_tests::workspace_root();
    let dir = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    ["release", "debug"].iter().map(|p| dir.join(p).join("sbx")).find(|p| p.exists()).expect("build sbx first")
}

fn image() -> String {
    std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into())
}

fn checked(c: &mut Command) -> String {
    let out = c.stdin(Stdio::null()).output().expect("spawn");
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) -> String {
    checked(Command::new("docker").args(args))
}

/// A process's peak resident set (`VmHWM`) in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Resets a process's `VmHWM` to its current RSS (needs to be its owner or root; false if refused).
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Runs `c` to completion; returns its time and the peak RSS it reached (sampled every 5 ms; VmHWM
/// only grows, so the last sample before exit is the peak but for the final few milliseconds).
fn run_measured(mut c: Command) -> (Duration, u64) {
    let t = Instant::now();
    let mut child = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(k) = peak_kib(pid) {
            peak = peak.max(k);
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t.elapsed();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    (elapsed, peak)
}

fn timed(c: Command) -> Duration {
    run_measured(c).0
}

fn secs(d: Duration) -> String {
    format!("{:7.3} s", d.as_secs_f64())
}

fn report(what: &str, ours: Duration, base: Duration, target: &str) {
    println!(
        "  {what:<44} sbx {}  docker cp {}  ratio {:.2}x (target {target})",
        secs(ours),
        secs(base),
        ours.as_secs_f64() / base.as_secs_f64()
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `files` files of `size` bytes in 10 subdirectories, distinct content per file, mixed modes.
fn make_tree(root: &Path, files: u64, size: u64) {
    use std::os::unix::fs::PermissionsExt;
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..size).map(|j| (j as u32 ^ (i as u32).wrapping_mul(2654435761)) as u8).collect();
        let p = dir.join(format!("f{i}.bin"));
        std::fs::write(&p, data).unwrap();
        if i % 7 == 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

/// A file of `mib` MiB of pseudo-random bytes (written in 1 MiB blocks).
fn make_big(path: &Path, mib: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; MIB as usize];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..mib {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

struct Bench {
    sbx: PathBuf,
    home: tempfile::TempDir,
    name: String,
    cid: String,
}

impl Bench {
    fn sbx(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.sbx);
        c.args(args).env("XDG_STATE_HOME", self.home.path());
        c
    }

    /// The runtime's host pid (the container shares the host's view of its processes).
    fn runtime_pid(&self) -> Option<u32> {
        let top = docker(&["top", &self.cid, "-eo", "pid,args"]);
        top.lines().filter(|l| l.contains("sbx-agent") && l.contains("server")).find_map(|l| l.split_whitespace().next()?.parse().ok())
    }

    /// Clears what the previous round left in the container (outside the timing).
    fn clean(&self) {
        docker(&["exec", &self.cid, "sh", "-c", "rm -rf /workspace/bench /tmp/bench && mkdir -p /workspace/bench /tmp/bench && sync"]);
    }

    /// `(id, endpoint, token)` of the sandbox from sbx's state.
    fn record(&self) -> (String, sbx_providers::Endpoint, String) {
        let db = rusqlite::Connection::open(self.home.path().join("sbx/sbx.db")).expect("state db");
        let (id, endpoint, token) = db
            .query_row("SELECT id, endpoint, token FROM sandboxes WHERE name = ?1", [&self.name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .expect("sandbox record");
        (id, serde_json::from_str(&endpoint).expect("endpoint"), token)
    }

    fn client(&self) -> Client {
        let (_, endpoint, token) = self.record();
        match endpoint.transport {
            sbx_providers::Transport::Http { url } => Client::new(&url, Some(token)).expect("client"),
            sbx_providers::Transport::Unix { path } => Client::unix(path, Some(token)).expect("client"),
        }
    }
}

fn main() {
    if !sbx_tests::docker_available() {
        println!("transfer benchmark skipped: Docker is not available");
        return;
    }
    if std::env::var_os("SBX_RUNTIME").is_none() {
        std::env::set_var("SBX_RUNTIME", sbx_tests::static_runtime());
    }
    let big_mib = env_num("SBX_BENCH_BIG_MIB", 1024);
    let tree_files = env_num("SBX_BENCH_TREE_FILES", 200);
    let rounds = env_num("SBX_BENCH_ROUNDS", 3) as usize;
    let b = Bench { sbx: sbx_binary(), home: tempfile::tempdir().unwrap(), name: "bench-cp".into(), cid: String::new() };
    println!(
        "sbx transfer benchmark ({}), tree {tree_files} x 1 MiB, big file {big_mib} MiB, {} cores, median of {rounds} (big file: 1 round)",
        b.sbx.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    checked(b.sbx(&["up", "--provider", "docker", "--image", &image(), "--name", &b.name, "-q"]).stdout(Stdio::null()));
    let cid = docker(&["ps", "-q", "--filter", &format!("label=dev.sbx.name={}", b.name)]);
    let b = Bench { cid, ..b };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&b, big_mib, tree_files, rounds)));
    let _ = b.sbx(&["down", &b.name, "-q"]).stdin(Stdio::null()).output();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn run(b: &Bench, big_mib: u64, tree_files: u64, rounds: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let host = tempfile::tempdir_in(std::env::var("SBX_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into())).unwrap();
    let tree = host.path().join("tree");
    make_tree(&tree, tree_files, MIB);
    let tree_s = tree.display().to_string();
    let cid = b.cid.as_str();

    // (a) the tree, host -> sandbox; (c) the same through the API; and the provider's archive upload.
    let client = b.client();
    let (id, _, _) = b.record();
    let provider = rt.block_on(sbx_providers::docker::DockerProvider::connect()).expect("docker provider");
    let (mut ours, mut base, mut api, mut prov) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        b.clean();
        ours.push(timed(b.sbx(&["cp", &tree_s, &format!("{}:/workspace/bench/sbx", b.name)])));
        b.clean();
        let mut c = Command::new("docker");
        c.args(["cp", &tree_s, &format!("{cid}:/workspace/bench/docker")]);
        base.push(timed(c));
        b.clean();
        api.push(rt.block_on(async {
            let t = Instant::now();
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let root = tree.clone();
            let packer = tokio::task::spawn_blocking(move || sbx_agent::tar_pack::pack_to_channel(&root, tx));
            let body = reqwest::Body::wrap_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
            client.upload_tar_stream("/workspace/bench/api", body).await.expect("upload-batch");
            packer.await.unwrap().expect("pack");
            t.elapsed()
        }));
        b.clean();
        prov.push(rt.block_on(async {
            let t = Instant::now();
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let root = tree.clone();
            let packer = tokio::task::spawn_blocking(move || sbx_agent::tar_pack::pack_to_channel(&root, tx));
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            provider.upload(&id, Box::pin(stream), "/workspace/bench/provider").await.expect("provider upload");
            packer.await.unwrap().expect("pack");
            t.elapsed()
        }));
    }
    b.clean();
    let base = median(base);
    println!("(a) directory tree, host -> sandbox");
    report("sbx cp (runtime's upload-batch)", median(ours), base, "<= 1.0x");
    println!("(c) the runtime's file API, no CLI");
    report("POST /v1/fs/upload-batch (tree)", median(api), base, "<= 2x");
    println!("    for reference: the Docker provider's archive upload (bootstrap channel)");
    report("Provider::upload (tree)", median(prov), base, "-");

    // (b) one big file both ways, with peak memory; (c) its upload through the API. At most one copy
    // of it on each side at a time (the disk of a shared CI machine is not endless).
    std::fs::remove_dir_all(&tree).unwrap();
    let big = host.path().join("big.bin");
    make_big(&big, big_mib);
    let big_s = big.display().to_string();
    let rt_pid = b.runtime_pid();
    let runtime_peak = |f: &mut dyn FnMut() -> Duration| -> (Duration, Option<u64>) {
        let reset = rt_pid.is_some_and(reset_peak);
        let d = f();
        (d, rt_pid.filter(|_| reset).and_then(peak_kib))
    };
    let show_peak = |host: Option<u64>, runtime: Option<u64>| {
        let mib = |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{} MiB", k / 1024));
        match host {
            Some(h) => format!("peak RSS: sbx {}, runtime {}", mib(Some(h)), mib(runtime)),
            None => format!("peak RSS: runtime {}", mib(runtime)),
        }
    };
    let remote = "/workspace/bench/big.bin";
    println!("(b) one {big_mib} MiB file");
    let mut host_peak = 0;
    b.clean();
    let (up, up_rt) = runtime_peak(&mut || {
        let (d, p) = run_measured(b.sbx(&["cp", &big_s, &format!("{}:{remote}", b.name)]));
        host_peak = p;
        d
    });
    let up_host = host_peak;
    b.clean();
    let mut c = Command::new("docker");
    c.args(["cp", &big_s, &format!("{cid}:{remote}")]);
    let up_base = timed(c);
    let want = docker(&["exec", cid, "sh", "-c", &format!("sha256sum < {remote}")]);
    let down_file = host.path().join("down.bin");
    let down_s = down_file.display().to_string();
    let (down, down_rt) = runtime_peak(&mut || {
        let (d, p) = run_measured(b.sbx(&["cp", &format!("{}:{remote}", b.name), &down_s]));
        host_peak = p;
        d
    });
    let down_host = host_peak;
    let got = checked(Command::new("sh").arg("-c").arg(format!("sha256sum < {down_s}")));
    assert_eq!(got, want, "the round trip changed the file");
    std::fs::remove_file(&down_file).unwrap();
    let mut c = Command::new("docker");
    c.args(["cp", &format!("{cid}:{remote}"), &down_s]);
    let down_base = timed(c);
    std::fs::remove_file(&down_file).unwrap();
    report("sbx cp host -> sandbox", up, up_base, "<= 1.0x");
    println!("  {:<44} {}", "", show_peak(Some(up_host), up_rt));
    report("sbx cp sandbox -> host", down, down_base, "<= 1.0x");
    println!("  {:<44} {}", "", show_peak(Some(down_host), down_rt));
    b.clean();
    let (api_up, api_rt) = runtime_peak(&mut || {
        rt.block_on(async {
            let t = Instant::now();
            let file = tokio::fs::File::open(&big).await.unwrap();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, MIB as usize));
            client.write_stream(remote, body, WriteOptions::default()).await.expect("PUT /v1/fs/file");
            t.elapsed()
        })
    });
    report("PUT /v1/fs/file (c)", api_up, up_base, "<= 2x");
    println!("  {:<44} {}", "", show_peak(None, api_rt));
    b.clean();
}
