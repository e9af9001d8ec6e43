//! The host end of the runtime's HTTP: a Unix socket in a private directory on this machine, each
//! connection to it carried over the one SSH connection as a `direct-tcpip` channel to the runtime on
//! the host's loopback. It lives as long as this process (the runtime client outlives the provider);
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

/// Starts a forwarder for sandbox `id` whose runtime listens on `port` (`binary` is the runtime on the
/// host, for the exec-channel fallback, and `sandbox_dir` the sandbox's directory there), returning its
/// socket path.
pub fn start(conn: Arc<Conn>, id: &str, port: u16, binary: String, sandbox_dir: String) -> Result<PathBuf> {
    let dir = socket_dir();
    private_dir(&dir).map_err(|e| Error::io("the directory for SSH forwarding sockets", e))?;
    sweep(&dir);
    let path = dir.join(format!("{}-{}.sock", std::process::id(), short_hash(id)));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| Error::io(format!("listen on {}", path.display()), e))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut local, _)) = listener.accept().await else { break };
            let conn = conn.clone();
            // Run inside the sandbox's directory: `sbx down` ends every process working there, so a
            // relay an idle pooled connection still holds open does not outlive the sandbox.
            let relay = format!("cd {} && exec {} connect --port {port}", super::q(&sandbox_dir), super::q(&binary));
            tokio::spawn(async move {
                let piped = match conn.direct_tcpip(port).await {
                    Ok(Some(ch)) => {
                        let mut remote = ch.into_stream();
                        let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                        Ok(())
                    }
                    Ok(None) => conn.pipe(&relay, local).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = piped {
                    tracing::warn!(error = %e, "ssh: cannot reach the runtime");
                }
            });
        }
    });
    Ok(path)
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
