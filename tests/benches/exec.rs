//! `sbx exec` throughput benchmark: `sbx exec NAME -- cat` of 200 MiB against `docker exec C cat` of
//! the same file in the same container, in the same run. Prints throughputs and the ratio (target:
//! sbx at least 0.8x docker's throughput); never fails on time. Also prints the local provider's
//! figure against plain `cat` on the host, for reference.
//!
//! Run: `cargo build --release && bash install/build-runtime.sh && cargo bench -p sbx-tests --bench exec`
//! (uses target/release/sbx when built, else target/debug/sbx; `SBX_RUNTIME` or the static build is the
//! runtime for Docker).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: usize = 200 * 1024 * 1024;
const ROUNDS: usize = 3;

fn sbx_binary() -> PathBuf {
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

/// Runs `c`, reading its stdout as fast as it comes; returns the time and checks the byte count.
fn drain(mut c: Command) -> Duration {
    let t = Instant::now();
    let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        match out.read(&mut buf).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    assert!(child.wait().expect("wait").success(), "{c:?} failed");
    assert_eq!(n, SIZE, "{c:?} gave {n} bytes");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_s(d: Duration) -> f64 {
    SIZE as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn report(what: &str, ours: Duration, base: Duration, base_name: &str, target: &str) {
    println!(
        "  {what:<34} sbx {:7.0} MiB/s  {base_name} {:7.0} MiB/s  ratio {:.2}x of {base_name}'s throughput (target {target})",
        mib_s(ours),
        mib_s(base),
        base.as_secs_f64() / ours.as_secs_f64()
    );
}

fn main() {
    let sbx = sbx_binary();
    if std::env::var_os("SBX_RUNTIME").is_none() {
        std::env::set_var("SBX_RUNTIME", sbx_tests::static_runtime());
    }
    let home = tempfile::tempdir().expect("tempdir");
    let sbx_cmd = |args: &[&str]| {
        let mut c = Command::new(&sbx);
        c.args(args).env("XDG_STATE_HOME", home.path());
        c
    };
    println!("sbx exec throughput benchmark ({}), {} MiB, median of {ROUNDS}", sbx.display(), SIZE >> 20);

    // Local provider vs plain cat on the host (its processes run on the host).
    checked(&mut sbx_cmd(&["up", "--provider", "local", "--name", "bench-exec-local", "-q"]));
    let script = format!("head -c {SIZE} /dev/urandom > big.bin && pwd");
    let dir = checked(&mut sbx_cmd(&["exec", "bench-exec-local", "--", "sh", "-c", &script]));
    let file = format!("{dir}/big.bin");
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(drain(sbx_cmd(&["exec", "bench-exec-local", "--", "cat", "big.bin"])));
        let mut c = Command::new("cat");
        c.arg(&file);
        base.push(drain(c));
    }
    report("exec cat (local)", median(ours), median(base), "cat", "for reference");
    checked(&mut sbx_cmd(&["down", "bench-exec-local", "-q"]));

    if !sbx_tests::docker_available() {
        println!("  docker part skipped: Docker is not available");
        return;
    }
    checked(&mut sbx_cmd(&["up", "--provider", "docker", "--image", &image(), "--name", "bench-exec", "-q"]));
    let cid = checked(Command::new("docker").args(["ps", "-q", "--filter", "label=dev.sbx.name=bench-exec"]));
    let script = format!("head -c {SIZE} /dev/urandom > /tmp/big.bin");
    checked(Command::new("docker").args(["exec", &cid, "sh", "-c", &script]));
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(drain(sbx_cmd(&["exec", "bench-exec", "--", "cat", "/tmp/big.bin"])));
        let mut c = Command::new("docker");
        c.args(["exec", &cid, "cat", "/tmp/big.bin"]);
        base.push(drain(c));
    }
    report("exec cat (docker)", median(ours), median(base), "docker", ">= 0.8x");
    checked(&mut sbx_cmd(&["down", "bench-exec", "-q"]));
}
