//! The host end of the runtime's HTTP: a Unix socket in a private directory on this machine, each
//! connection to it carried over the one SSH connection as a `direct-tcpip` channel to the runtime on
//! the host's loopback (or, for `--isolation docker`, to a port Docker published there, or as a
//! `direct-streamlocal` channel to the host's Docker engine). It lives as long as this process (the runtime client outlives the provider);
//! a later `sbx` process finds the socket dead and asks the provider for a new one.
//!
//! Where the server forbids forwarding (`AllowTcpForwarding no`), each connection instead runs
//! `sbx-agent connect` on the host through an exec channel, which relays its stdin/stdout to the
//! runtime's port: the same bytes, one session channel per HTTP connection.

use std::path::PathBuf;
use std::sync::Arc;

use super::conn::{private_dir, short_hash, Conn};
use crate::{Error, Result};

/// The directory that holds this user's forwarding sockets.
fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("sbx-ssh"),
        None => std::env::temp_dir().join(format!("sbx-ssh-{}", nix::unistd::getuid())),
    }
}

/// The runtime's binary and the sandbox's directory on a host, from its user's home (asked of the
/// host only when the fallback needs them).
pub type Paths = Arc<dyn Fn(&str) -> (String, String) + Send + Sync>;

/// What a forwarder's connections go to on the host.
#[derive(Clone)]
pub enum Remote {
    /// A sandbox's runtime on the host's loopback `port`; where TCP forwarding is forbidden, through
    /// `sbx-agent connect` run in the sandbox's directory (`paths`).
    Runtime { port: u16, paths: Paths },
    /// A TCP port on the host's loopback (one Docker published), with no fallback.
    Port(u16),
    /// A Unix socket on the host (its Docker engine).
    Socket(String),
}

/// Starts a forwarder named by `key` (a sandbox and port, a host's engine) to `remote`, returning
/// its socket path.
pub fn start(conn: Arc<Conn>, key: &str, remote: Remote) -> Result<PathBuf> {
    let dir = socket_dir();
    private_dir(&dir).map_err(|e| Error::io("the directory for SSH forwarding sockets", e))?;
    sweep(&dir);
    let path = dir.join(format!("{}-{}.sock", std::process::id(), short_hash(key)));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| Error::io(format!("listen on {}", path.display()), e))?;
    let remote = Arc::new(remote);
    tokio::spawn(async move {
        loop {
            let Ok((local, _)) = listener.accept().await else { break };
            tokio::spawn(relay(conn.clone(), remote.clone(), local));
        }
    });
    Ok(path)
}

/// Carries one local connection to `remote` until either side ends.
async fn relay(conn: Arc<Conn>, remote: Arc<Remote>, mut local: tokio::net::UnixStream) {
    let channel = match &*remote {
        Remote::Runtime { port, paths } => match conn.direct_tcpip(*port).await {
            Ok(Some(ch)) => Ok(ch),
            Ok(None) => {
                let (binary, sandbox_dir) = match conn.home().await {
                    Ok(home) => paths(&home),
                    Err(e) => {
                        tracing::warn!(error = %e, "ssh: cannot reach the runtime");
                        return;
                    }
                };
                // Run inside the sandbox's directory: `sbx down` ends every process working there, so
                // a relay an idle pooled connection still holds open does not outlive the sandbox.
                let relay = format!("cd {} && exec {} connect --port {port}", super::q(&sandbox_dir), super::q(&binary));
                if let Err(e) = conn.pipe(&relay, local).await {
                    tracing::warn!(error = %e, "ssh: cannot reach the runtime");
                }
                return;
            }
            Err(e) => Err(e),
        },
        Remote::Port(port) => conn.direct_tcpip_only(*port).await,
        Remote::Socket(path) => conn.direct_streamlocal(path).await,
    };
    match channel {
        Ok(ch) => {
            let mut remote = ch.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
        }
        Err(e) => tracing::warn!(error = %e, "ssh: cannot forward"),
    }
}

/// Removes sockets of processes that are gone (`<pid>-<hash>.sock`).
fn sweep(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !sbx_agent::process_alive(pid) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
