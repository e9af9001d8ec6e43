//! The ssh provider against OpenSSH's own tools, same server, same run (a real sshd in a container,
//! `sbx_tests::sshd`): `sbx exec NAME true` vs `ssh host true` (target ≤ 1.0×), `sbx cp` of a 200 MB
//! tree vs `scp -r` (target ≤ 1.0×), and installing the runtime on a fresh host the first and the
//! second time (`sbx up` with and without the upload). Prints figures and ratios; never fails on time.
//!
//! Run: `source ~/.cache/sbx-test/env.sh && cargo build --release && bash install/build-runtime.sh &&
//! cargo bench -p sbx-tests --bench ssh` (uses target/release/sbx when built, else target/debug/sbx).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sbx_tests::sshd::SshServer;

const ROUNDS: usize = 7;
const TREE_FILES: usize = 200;
const FILE_SIZE: usize = 1024 * 1024;

fn sbx_binary() -> PathBuf {
    let root = sbx_tests::workspace_root();
    let dir = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    ["release", "debug"].iter().map(|p| dir.join(p).join("sbx")).find(|p| p.exists()).expect("build sbx first")
}

/// Runs `c` to success and returns how long it took.
fn timed(c: &mut Command) -> Duration {
    let t = Instant::now();
    let out = c.stdin(Stdio::null()).output().expect("spawn");
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, ours: Duration, base: Duration, base_name: &str, target: &str) {
    println!(
        "  {what:<30} sbx {:8.1} ms  {base_name} {:8.1} ms  ratio {:.2}x of {base_name}'s time (target {target})",
        ms(ours),
        ms(base),
        ours.as_secs_f64() / base.as_secs_f64()
    );
}

/// 200 files of 1 MiB of random bytes in three directories.
fn make_tree(root: &Path) {
    use std::io::Read;
    let mut random = std::fs::File::open("/dev/urandom").expect("urandom");
    let mut buf = vec![0u8; FILE_SIZE];
    for i in 0..TREE_FILES {
        let dir = root.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&dir).expect("mkdir");
        random.read_exact(&mut buf).expect("random");
        std::fs::write(dir.join(format!("f{i}.bin")), &buf).expect("write");
    }
}

fn main() {
    let sbx = sbx_binary();
    let runtime = sbx_tests::static_runtime();
    let server = SshServer::start(&[]);
    server.trust();
    // OpenSSH's scp (SFTP) fails when the login shell prints anything ("Received message too long"),
    // as the test user's fish greeting does; sbx does not mind it. The baseline needs a quiet shell.
    let quiet = server.sh("rm -f ~/.config/fish/config.fish");
    assert!(quiet.status.success());
    let state = tempfile::tempdir().expect("tempdir");
    let sbx_cmd = |args: &[&str]| {
        let mut c = Command::new(&sbx);
        c.args(args)
            .env("HOME", server.home.path())
            .env("XDG_STATE_HOME", state.path())
            .env("XDG_CONFIG_HOME", state.path().join("config"))
            .env("SBX_RUNTIME", &runtime)
            .env("SBX_SSH_HOST", server.dest())
            .env_remove("SSH_AUTH_SOCK");
        c
    };
    let ssh_cmd = |program: &str| {
        let mut c = Command::new(program);
        c.args(["-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-i")
            .arg(server.key())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", server.known_hosts().display()))
            .arg(if program == "scp" { "-P" } else { "-p" })
            .arg(server.port.to_string());
        c
    };
    println!("ssh provider benchmark ({}), sshd in a container on loopback, median of {ROUNDS}", sbx.display());

    // Installing the runtime: the first `sbx up` on a fresh host uploads it, the second finds it there.
    let first = timed(&mut sbx_cmd(&["up", "--provider", "ssh", "--name", "bench-a", "-q"]));
    let second = timed(&mut sbx_cmd(&["up", "--provider", "ssh", "--name", "bench-b", "-q"]));
    println!(
        "  {:<30} first {:8.1} ms (runtime uploaded, {:.1} MiB)  second {:8.1} ms (reused)",
        "sbx up on a fresh host",
        ms(first),
        std::fs::metadata(&runtime).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0),
        ms(second)
    );
    timed(&mut sbx_cmd(&["down", "bench-b", "-q"]));

    // A command: a fresh `sbx exec` process (connect, forward, run) vs a fresh `ssh` process.
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(timed(&mut sbx_cmd(&["exec", "bench-a", "--", "true"])));
        base.push(timed(ssh_cmd("ssh").arg(server.dest().split(':').next().expect("user@host")).arg("true")));
    }
    report("exec true", median(ours), median(base), "ssh", "<= 1.0x");

    // A 200 MiB tree, into the sandbox.
    let tree = tempfile::tempdir().expect("tempdir");
    make_tree(tree.path());
    let src = tree.path().display().to_string();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..3 {
        ours.push(timed(&mut sbx_cmd(&["cp", &src, &format!("bench-a:tree{i}")])));
        let dest = format!("{}:scp-tree{i}", server.dest().split(':').next().expect("user@host"));
        base.push(timed(ssh_cmd("scp").args(["-q", "-r", &src, &dest])));
    }
    report(&format!("cp of {TREE_FILES} x 1 MiB"), median(ours), median(base), "scp -r", "<= 1.0x");
    let _ = server.sh("rm -rf ~/scp-tree*");
    timed(&mut sbx_cmd(&["down", "bench-a", "-q"]));
}
