//! A real OpenSSH server for the ssh provider's tests: a container of `$SBX_SSHD_IMAGE`
//! (templates/sshd/, built by install/test-deps.sh) on a loopback port, key-only auth, user `sbx`
//! without sudo whose login shell is fish (with a chatty config.fish), `/tmp` mounted `noexec`. The
//! client side is a temporary HOME with its own key pair and known_hosts. Missing image = failure,
//! never a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The label on every container this module starts (for finding leftovers).
pub const LABEL: &str = "dev.sbx.test=sshd";

/// One sshd container and a client home that can log in to it.
pub struct SshServer {
    /// The container id.
    pub container: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The client's HOME (`.ssh/id_ed25519`, `.ssh/known_hosts`).
    pub home: tempfile::TempDir,
}

/// The image to run: `$SBX_SSHD_IMAGE`, which must exist.
pub fn image() -> String {
    let image = std::env::var("SBX_SSHD_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        panic!("SBX_SSHD_IMAGE is not set: run install/test-deps.sh and `. ~/.cache/sbx-test/env.sh` (the ssh tests need a real sshd)")
    });
    let ok = Command::new("docker").args(["image", "inspect", &image]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "sshd image {image} not found: run install/test-deps.sh");
    image
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A port of 127.0.0.1 that nothing listens on just now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

impl SshServer {
    /// Starts a server; `sshd_opts` go to sshd as `-o` options (e.g. `AllowTcpForwarding=no`).
    pub fn start(sshd_opts: &[&str]) -> Self {
        Self::start_with(sshd_opts, false, None)
    }

    /// Starts a server on the Docker network `network` under the container name `name`, which only
    /// that network's members can resolve (a host behind a jump host).
    pub fn start_on_network(network: &str, name: &str) -> Self {
        Self::start_with(&[], false, Some((network, name)))
    }

    /// Starts a server that is also a Docker host, as a build box with Docker is: it shares this
    /// machine's network (so a port Docker publishes on `127.0.0.1` is on the server's loopback too)
    /// and the engine's socket, which its user `sbx` may use (a member of the socket's group). sshd
    /// listens on a free port of 127.0.0.1.
    pub fn start_docker_host() -> Self {
        Self::start_with(&[], true, None)
    }

    fn start_with(sshd_opts: &[&str], docker_host: bool, network: Option<(&str, &str)>) -> Self {
        let image = image();
        let port = if docker_host { free_port() } else { 22 };
        let mut sshd = String::new();
        if docker_host {
            sshd.push_str("g=$(stat -c %g /var/run/docker.sock) && groupadd -o -g \"$g\" hostdocker && usermod -aG hostdocker sbx && ");
        }
        sshd.push_str(&format!("ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e -o Port={port}"));
        for o in sshd_opts {
            sshd.push_str(&format!(" -o {o}"));
        }
        let mut docker = Command::new("docker");
        docker.args(["run", "-d", "--init", "--label", LABEL, "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m"]);
        if let Some((net, name)) = network {
            docker.args(["--network", net, "--name", name]);
        }
        if docker_host {
            docker.args(["--network", "host", "-v", "/var/run/docker.sock:/var/run/docker.sock"]);
            docker.args([&image, "/bin/sh", "-c"]).arg(format!("{sshd} -o ListenAddress=127.0.0.1"));
        } else {
            docker.args(["-p", "127.0.0.1::22", &image, "/bin/sh", "-c", &sshd]);
        }
        let container = text(&run(&mut docker).stdout);
        let home = tempfile::tempdir().expect("tempdir");
        let mut server = Self { container, port, home };
        if !docker_host {
            let port = text(&run(Command::new("docker").args(["port", &server.container, "22/tcp"])).stdout);
            server.port = port.lines().next().and_then(|l| l.rsplit(':').next()).and_then(|p| p.parse().ok()).expect("published port");
        }
        let ssh = server.home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir .ssh");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "sbx-test", "-f"]).arg(ssh.join("id_ed25519")));
        server.authorize(&ssh.join("id_ed25519.pub"));
        server.wait_ready();
        server
    }

    /// Adds a public key to the server user's authorized_keys.
    pub fn authorize(&self, pubkey: &Path) {
        let key = std::fs::read(pubkey).expect("public key");
        let mut child = Command::new("docker")
            .args(["exec", "-i", "-u", "sbx", &self.container, "sh", "-c", "cat >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("docker exec");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), &key).expect("write key");
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success(), "authorizing the key failed");
    }

    /// Waits until sshd greets on the port (its host keys exist by then).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8];
                if std::io::Read::read_exact(&mut s, &mut buf).is_ok() && &buf[..7] == b"SSH-2.0" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "sshd in {} did not answer: {}", self.container, self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The destination to give sbx.
    pub fn dest(&self) -> String {
        format!("sbx@127.0.0.1:{}", self.port)
    }

    /// The client's key file.
    pub fn key(&self) -> PathBuf {
        self.home.path().join(".ssh/id_ed25519")
    }

    /// The client's known_hosts.
    pub fn known_hosts(&self) -> PathBuf {
        self.home.path().join(".ssh/known_hosts")
    }

    /// The server's host key lines as known_hosts wants them (`[127.0.0.1]:port type key`).
    pub fn host_key_lines(&self) -> String {
        let out = run(Command::new("docker").args(["exec", &self.container, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]));
        text(&out.stdout)
            .lines()
            .map(|l| {
                let mut f = l.split_whitespace();
                format!("[127.0.0.1]:{} {} {}\n", self.port, f.next().unwrap_or_default(), f.next().unwrap_or_default())
            })
            .collect()
    }

    /// The server's host keys as known_hosts lines for `host` on port 22 (a name on its network).
    pub fn host_key_lines_as(&self, host: &str) -> String {
        let out = run(Command::new("docker").args(["exec", &self.container, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]));
        text(&out.stdout)
            .lines()
            .map(|l| {
                let mut f = l.split_whitespace();
                format!("{host} {} {}\n", f.next().unwrap_or_default(), f.next().unwrap_or_default())
            })
            .collect()
    }

    /// Writes known_hosts with this server's keys (after a comment line).
    pub fn trust(&self) {
        std::fs::write(self.known_hosts(), format!("# sbx test\n{}", self.host_key_lines())).expect("known_hosts");
    }

    /// Provider options for this client home: key files only (no agent), nothing learnt.
    pub fn opts(&self) -> sbx_providers::ssh::SshOptions {
        let mut o = sbx_providers::ssh::SshOptions::from_env();
        o.home = self.home.path().to_path_buf();
        o.agent_socket = None;
        o.accept_new = false;
        o.config_file = Some(self.home.path().join(".ssh/config"));
        o.known_hosts = None;
        o.identity_files = Vec::new();
        o
    }

    /// Runs `script` in the container as the server's user, with /bin/sh.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("docker").args(["exec", "-u", "sbx", &self.container, "sh", "-c", script]).output().expect("docker exec")
    }

    /// What is left under the user's sandboxes directory, and sbx-agent processes still running.
    pub fn leftovers(&self) -> Vec<String> {
        let out = self.sh("ls -A ~/.sbx/sandboxes 2>/dev/null; ps -eo pid=,args= | grep '[s]bx-agent' | grep -v defunct || true");
        text(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    /// sshd's log.
    pub fn logs(&self) -> String {
        let out = Command::new("docker").args(["logs", "--tail", "30", &self.container]).output().expect("docker logs");
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    /// Cuts every SSH connection to the server (sshd's per-connection processes), leaving the
    /// listener and everything started detached alone.
    pub fn drop_connections(&self) {
        let out =
            Command::new("docker").args(["exec", &self.container, "sh", "-c", "pkill -KILL -f '^sshd: sbx' ; true"]).output().expect("docker exec");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.container]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
