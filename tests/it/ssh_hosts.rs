//! The ssh provider beyond one plain host: a host behind a jump host (`ProxyJump` and
//! `ProxyCommand` from `~/.ssh/config`), `sbx run` spreading tasks over two hosts, and bad input
//! (unreachable host, refused key, no writable directory, an unsupported architecture), each a clear
//! error and exit code with nothing left behind. Real sshd containers (`sbx_tests::sshd`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use sbx_providers::lifecycle::Lifecycle;
use sbx_providers::ssh::SshProvider;
use sbx_providers::{ExecSpec, SandboxSpec};
use sbx_tests::bin;
use sbx_tests::sshd::SshServer;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Docker network removed on drop.
struct Network(String);
impl Network {
    fn new() -> Self {
        let name = format!("sbx-test-jump-{}", sbx_providers::random_hex(4));
        let out = Command::new("docker").args(["network", "create", "--label", sbx_tests::sshd::LABEL, &name]).output().expect("docker network");
        assert!(out.status.success(), "{}", text(&out.stderr));
        Self(name)
    }
}
impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["network", "rm", &self.0]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_behind_a_jump_host_through_proxyjump_and_proxycommand() {
    let net = Network::new();
    let inner_name = format!("sbx-inner-{}", sbx_providers::random_hex(4));
    let inner = SshServer::start_on_network(&net.0, &inner_name);
    let jump = SshServer::start(&[]);
    let connect = Command::new("docker").args(["network", "connect", &net.0, &jump.container]).output().expect("docker network connect");
    assert!(connect.status.success(), "{}", text(&connect.stderr));
    // The inner host's name resolves only on the Docker network: reaching it proves the hop.
    assert!(std::net::ToSocketAddrs::to_socket_addrs(&(inner_name.as_str(), 22)).is_err(), "{inner_name} resolves here");

    // One client (the jump server's home): its key works on both, known_hosts knows both.
    inner.authorize(&jump.key().with_extension("pub"));
    std::fs::write(jump.known_hosts(), format!("{}{}", jump.host_key_lines(), inner.host_key_lines_as(&inner_name))).unwrap();
    let ssh_dir = jump.home.path().join(".ssh");
    let config = format!(
        "Host jump\n  HostName 127.0.0.1\n  Port {port}\n  User sbx\n\n\
         Host inner\n  HostName {inner_name}\n  User sbx\n  ProxyJump jump\n\n\
         Host inner-cmd\n  HostName {inner_name}\n  User sbx\n  \
         ProxyCommand ssh -F none -i {key} -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -o BatchMode=yes -p {port} -W %h:%p sbx@127.0.0.1\n",
        port = jump.port,
        key = jump.key().display(),
        kh = jump.known_hosts().display(),
    );
    std::fs::write(ssh_dir.join("config"), config).unwrap();

    for alias in ["inner", "inner-cmd"] {
        let provider = Arc::new(SshProvider::new(vec![alias.to_owned()], jump.opts()).with_runtime(&sbx_tests::static_runtime()));
        let lc = Lifecycle::new(provider.clone()).with_runtime(sbx_tests::static_runtime()).keep_on_failure(false);
        // Each step bounded: a hang (seen once under heavy load, not reproduced) fails naming its step.
        let ready = within(&format!("up through {alias}"), lc.up(&SandboxSpec::named("hop"))).await.unwrap_or_else(|e| panic!("up through {alias}: {e}"));
        assert!(ready.sandbox.id.starts_with(&format!("{alias}/")), "{}", ready.sandbox.id);
        let client = ready.runtime.client().expect("client");
        within(&format!("health through {alias}"), client.health()).await.unwrap_or_else(|e| panic!("health through {alias}: {e}"));
        let cat = ExecSpec::new(["cat", "/etc/hostname"]);
        let exec = sbx_providers::Provider::exec(&*provider, &ready.sandbox.id, &cat);
        let out = within(&format!("exec through {alias}"), exec).await.expect("exec");
        let (on_inner, on_jump) = (text(&inner.sh("hostname").stdout), text(&jump.sh("hostname").stdout));
        assert_eq!(text(&out.stdout), on_inner, "{alias}: the command ran on the inner host, not {on_jump}");
        assert!(!inner.leftovers().is_empty(), "{alias}: the sandbox is on the inner host");
        assert!(jump.leftovers().is_empty(), "{alias}: nothing on the jump host");
        within(&format!("teardown through {alias}"), lc.teardown(&ready.sandbox.id)).await.expect("teardown");
        assert!(inner.leftovers().is_empty(), "{alias}: left on the inner host: {:?}", inner.leftovers());
    }
}

/// `fut`, or a panic naming `what` after two minutes.
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(120), fut).await.unwrap_or_else(|_| panic!("{what}: no result within 120 s"))
}

/// `sbx` with `home` as HOME and its own state.
fn sbx(home: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin("sbx"));
    c.args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("SBX_RUNTIME", sbx_tests::static_runtime())
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SBX_PROVIDER")
        .env_remove("SBX_SSH_HOST")
        .env_remove("SBX_SSH_ISOLATION")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("sbx")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_run_spreads_tasks_over_the_hosts_within_each_hosts_cap() {
    let a = SshServer::start(&[]);
    let b = SshServer::start(&[]);
    b.authorize(&a.key().with_extension("pub"));
    std::fs::write(a.known_hosts(), format!("{}{}", a.host_key_lines(), b.host_key_lines())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("repo")).unwrap();
    std::fs::write(d.join("repo/README.md"), "hello\n").unwrap();
    let mut y = format!(
        "version: 1\ndefaults:\n  provider: ssh\n  agent: mock\n  concurrency: 4\n  hosts:\n    - {}\n    - {{host: \"{}\", concurrency: 1}}\ntasks:\n",
        a.dest(),
        b.dest()
    );
    for i in 0..5 {
        y.push_str(&format!("  - name: t{i}\n    workspace: ./repo\n    prompt: \"write out/t{i}.txt done {i}\"\n    check: test -f out/t{i}.txt\n"));
    }
    std::fs::write(d.join("sbx.yaml"), y).unwrap();
    let out = sbx(a.home.path(), d, &["run", "-f", "sbx.yaml"], &[]);
    let run = std::fs::read_dir(d.join("sbx-results")).unwrap().next().unwrap().unwrap().path();
    let messages: Vec<String> = (0..5).map(|i| std::fs::read_to_string(run.join(format!("t{i}/task.json"))).unwrap_or_default()).collect();
    assert!(out.status.success(), "{}\n{messages:#?}", text(&out.stderr));
    let mut on = std::collections::BTreeMap::<String, Vec<(u64, u64)>>::new();
    for i in 0..5 {
        let t: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join(format!("t{i}/task.json"))).unwrap()).unwrap();
        assert_eq!(t["status"], "passed", "{t}");
        let host = t["host"].as_str().expect("task.json names the host").to_owned();
        let start = t["startedAtMs"].as_u64().unwrap();
        on.entry(host).or_default().push((start, start + t["durationMs"].as_u64().unwrap()));
    }
    assert_eq!(on.len(), 2, "both hosts got tasks: {on:?}");
    // b (cap 1) never ran two at once.
    let spans = &on[&b.dest()];
    for (i, x) in spans.iter().enumerate() {
        for y in &spans[i + 1..] {
            assert!(x.1 <= y.0 || y.1 <= x.0, "two tasks at once on the capped host: {spans:?}");
        }
    }
    assert!(a.leftovers().is_empty() && b.leftovers().is_empty(), "left: {:?} {:?}", a.leftovers(), b.leftovers());

    // A bad cap is refused before anything runs, with the line.
    std::fs::write(d.join("bad.yaml"), format!("version: 1\ndefaults:\n  provider: ssh\n  hosts: [{{host: \"{}\", concurrency: 0}}]\ntasks:\n  - {{name: x, prompt: hi}}\n", a.dest())).unwrap();
    let out = sbx(a.home.path(), d, &["run", "-f", "bad.yaml", "--validate"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("concurrency 0"), "{}", text(&out.stderr));
}

/// `sbx up --provider ssh` that must fail with `code`, an error containing each of `wants`, and no
/// sandbox recorded or left.
fn up_fails(home: &Path, dir: &Path, env: &[(&str, &str)], code: i32, wants: &[&str]) {
    let out = sbx(home, dir, &["up", "--provider", "ssh", "--name", "bad"], env);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    for w in wants {
        assert!(err.contains(w), "missing {w:?} in: {err}");
    }
    let ls = sbx(home, dir, &["ls", "--json"], &[]);
    assert!(!text(&ls.stdout).contains("\"bad\""), "recorded after a failed up: {}", text(&ls.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_and_leaves_nothing() {
    let server = SshServer::start(&[]);
    server.trust();
    let home = server.home.path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Nobody listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dest = format!("sbx@127.0.0.1:{closed}");
    up_fails(home, d, &[("SBX_SSH_HOST", &dest)], 4, &[&format!("127.0.0.1:{closed}")]);

    // A key the server does not know: auth, with what was tried.
    let other = home.join("other-home");
    std::fs::create_dir_all(other.join(".ssh")).unwrap();
    let k = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(other.join(".ssh/id_ed25519")).output().unwrap();
    assert!(k.status.success());
    std::fs::copy(server.known_hosts(), other.join(".ssh/known_hosts")).unwrap();
    up_fails(&other, d, &[("SBX_SSH_HOST", &server.dest())], 3, &["id_ed25519"]);

    // No writable directory for sbx's files.
    up_fails(home, d, &[("SBX_SSH_HOST", &server.dest()), ("SBX_SSH_DIR", "/proc/sbx")], 4, &["SBX_SSH_DIR"]);
    assert!(server.leftovers().is_empty(), "left on the server: {:?}", server.leftovers());

    // A host of another architecture: refused by name before anything is uploaded.
    let fake = "printf '#!/bin/sh\\ncase \"$1\" in -m) echo aarch64;; *) echo Linux;; esac\\n' > /usr/local/bin/uname && chmod 755 /usr/local/bin/uname";
    let out = Command::new("docker").args(["exec", &server.container, "sh", "-c", fake]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    up_fails(home, d, &[("SBX_SSH_HOST", &server.dest())], 4, &["aarch64", "x86_64 only"]);
    let bin = text(&server.sh("ls -A ~/.sbx/bin 2>/dev/null || true").stdout);
    assert!(bin.trim().is_empty(), "nothing uploaded: {bin}");
}
