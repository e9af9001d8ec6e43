//! Provider benchmark: the `sbx` CLI against plain `docker` in the same run. Prints figures and
//! ratios; never fails on time.
//!
//! - `sbx up --provider docker` to a healthy runtime vs `docker run -d` of the same image plus waiting
//!   for a trivial HTTP listener in it (target <= 1.5x);
//! - `sbx exec NAME true` vs `docker exec C true` (target <= 1.0x);
//! - `sbx cp` of a 200 MB tree into the sandbox vs `docker cp` of it into the container (target <= 1.0x);
//! - `sbx up --provider local` to healthy (target <= 50 ms).
//!
//! Run: `cargo build --release && bash install/build-runtime.sh && cargo bench -p sbx-tests --bench providers`
//! (uses target/release/sbx when built, else target/debug/sbx; `SBX_RUNTIME` or the static build is the
//! runtime for Docker).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "sbx-base:latest";

fn sbx_binary() -> PathBuf {
    let root = sbx_tests::workspace_root();
    let dir = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    ["release", "debug"].iter().map(|p| dir.join(p).join("sbx")).find(|p| p.exists()).expect("build sbx first")
}

struct Env {
    sbx: PathBuf,
    home: tempfile::TempDir,
}

impl Env {
    fn sbx(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.sbx);
        c.args(args).env("XDG_STATE_HOME", self.home.path()).stdin(Stdio::null()).stdout(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) {
        let out = self.sbx(args).stderr(Stdio::piped()).output().expect("run sbx");
        assert!(out.status.success(), "sbx {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).stdin(Stdio::null()).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.1} ms", d.as_secs_f64() * 1000.0)
}

fn report(what: &str, ours: Duration, base: Duration, target: &str) {
    println!("  {what:<34} sbx {}  docker {}  ratio {:.2}x (target {target})", ms(ours), ms(base), ours.as_secs_f64() / base.as_secs_f64());
}

/// `docker run -d` plus polling until the container's HTTP listener answers.
fn docker_run_to_listening() -> (Duration, String) {
    let t = Instant::now();
    let id = docker(&["run", "-d", "--init", "-p", "127.0.0.1::8000", IMAGE, "python3", "-m", "http.server", "8000"]);
    let port = docker(&["port", &id, "8000/tcp"]);
    let addr = port.lines().next().expect("port").to_owned();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (t.elapsed(), id)
}

fn make_tree(root: &Path, files: usize, size: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..size).map(|j| (j as u32 ^ (i as u32).wrapping_mul(2654435761)) as u8).collect();
        std::fs::write(dir.join(format!("f{i}.bin")), data).unwrap();
    }
}

fn main() {
    if !sbx_tests::docker_available() {
        println!("providers benchmark skipped: Docker is not available");
        return;
    }
    let sbx = sbx_binary();
    if std::env::var_os("SBX_RUNTIME").is_none() {
        std::env::set_var("SBX_RUNTIME", sbx_tests::static_runtime());
    }
    let env = Env { sbx: sbx.clone(), home: tempfile::tempdir().unwrap() };
    println!("sbx provider benchmark ({})", sbx.display());

    // 1. up to healthy vs docker run to listening (3 rounds each, medians).
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let name = format!("bench-up-{i}");
        ours.push(timed(|| env.run(&["up", "--provider", "docker", "--name", &name, "-q"])));
        env.run(&["down", &name, "-q"]);
        let (d, id) = docker_run_to_listening();
        base.push(d);
        docker(&["rm", "-f", &id]);
    }
    report("up (docker) to healthy", median(ours), median(base), "<= 1.5x");

    // 2. exec `true`.
    env.run(&["up", "--provider", "docker", "--name", "bench", "-q"]);
    let cid = docker(&["ps", "-q", "--filter", "label=dev.sbx.name=bench"]);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        ours.push(timed(|| env.run(&["exec", "bench", "--", "true"])));
        base.push(timed(|| {
            docker(&["exec", &cid, "true"]);
        }));
    }
    report("exec true", median(ours), median(base), "<= 1.0x");

    // 3. cp of a 200 MB tree (200 files of 1 MB).
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 200, 1 << 20);
    let tree = src.path().display().to_string();
    let ours = timed(|| env.run(&["cp", &tree, "bench:/workspace/tree-sbx"]));
    let base = timed(|| {
        docker(&["cp", &tree, &format!("{cid}:/workspace/tree-docker")]);
    });
    report("cp 200 MB tree into the sandbox", ours, base, "<= 1.0x");
    env.run(&["down", "bench", "-q"]);

    // 4. local up to healthy.
    let mut local = Vec::new();
    for i in 0..5 {
        let name = format!("bench-local-{i}");
        local.push(timed(|| env.run(&["up", "--provider", "local", "--name", &name, "-q"])));
        env.run(&["down", &name, "-q"]);
    }
    println!("  {:<34} sbx {}  (target <= 50 ms)", "up (local) to healthy", ms(median(local)));
}
