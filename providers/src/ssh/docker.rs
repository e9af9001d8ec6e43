//! `--isolation docker`: the sandbox is a container on the SSH host, made by the host's own Docker
//! engine. The engine's socket (`/var/run/docker.sock` there) is forwarded over the same SSH
//! connection (`direct-streamlocal`) to a private Unix socket here, and the Docker provider drives it
//! through that socket as it would a remote engine (the runtime is uploaded through the archive API,
//! nothing is bind-mounted from this machine). The runtime's port, which Docker publishes on the
//! host's loopback only, is forwarded the same way (`direct-tcpip`). Nothing is installed on the
//! host and no port is opened there.
//!
//! Such sandboxes have ids `<dest>/docker/<container>` and carry the [`VIA_LABEL`] label, so `sbx ls`
//! on the host lists them and not containers that a `--provider docker` on that host made.

use std::sync::Arc;

use super::{forward, SshProvider};
use crate::docker::DockerProvider;
use crate::{Endpoint, Error, Labels, Provider, Result, Sandbox, Transport};

const NAME: &str = "ssh";

/// The id segment between the destination and the container.
const SEGMENT: &str = "/docker/";

/// The label that marks a container made through the ssh provider.
pub const VIA_LABEL: &str = "dev.sbx.ssh-isolation";

/// Where the host's Docker engine listens.
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// Where sandboxes live on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// A directory of the SSH user's (no isolation).
    #[default]
    Directory,
    /// A container of the host's Docker engine.
    Docker,
}

impl std::str::FromStr for Isolation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "none" | "directory" | "dir" => Ok(Self::Directory),
            "docker" => Ok(Self::Docker),
            other => Err(Error::InvalidSpec(format!("unknown isolation `{other}`: use `docker` (a container on the host) or `none` (a directory)"))),
        }
    }
}

/// `<dest>/docker/<container>` → (`dest`, `container`).
pub(super) fn split(id: &str) -> Option<(&str, &str)> {
    let (dest, container) = id.split_once(SEGMENT)?;
    let ok = !dest.is_empty()
        && !dest.trim_start_matches("ssh://").contains('/')
        && !container.is_empty()
        && container.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some((dest, container))
}

/// The sandbox the host's engine returned, as this provider names it.
pub(super) fn wrap(dest: &str, mut sb: Sandbox) -> Sandbox {
    sb.id = format!("{dest}{SEGMENT}{}", sb.id);
    sb.provider = NAME.into();
    sb
}

impl SshProvider {
    /// The Docker provider for `dest`'s engine, through a forwarded socket (made once per host).
    pub(super) async fn engine(&self, dest: &str) -> Result<Arc<DockerProvider>> {
        let mut engines = self.engines.lock().await;
        if let Some(e) = engines.get(dest) {
            return Ok(e.clone());
        }
        let conn = self.conn(dest)?;
        // Say plainly what is missing rather than let the engine client fail on a closed socket.
        let probe = format!("s={}; [ -S \"$s\" ] || exit 3; [ -r \"$s\" ] && [ -w \"$s\" ] || exit 4", super::q(ENGINE_SOCKET));
        let out = conn.run(&probe, None, Some(std::time::Duration::from_secs(30))).await?;
        match out.exit_code {
            0 => {}
            3 => {
                return Err(Error::Unavailable {
                    provider: NAME,
                    message: format!("{dest} has no Docker engine at {ENGINE_SOCKET}: install Docker there, or drop --isolation docker"),
                })
            }
            4 => {
                return Err(Error::Auth {
                    provider: NAME,
                    message: format!(
                        "the SSH user on {dest} may not use {ENGINE_SOCKET}: add them to its group (e.g. `sudo usermod -aG docker USER`), then log in again"
                    ),
                })
            }
            c => return Err(super::remote_failure("checking the host's Docker engine", c, &out)),
        }
        let path = forward::start(conn, &format!("{dest}:docker"), forward::Remote::Socket(ENGINE_SOCKET.into()))?;
        let mut engine = DockerProvider::connect_host(&format!("unix://{}", path.display())).await?.remote_engine();
        if let Some(rt) = &self.runtime {
            engine = engine.with_runtime(rt.clone());
        }
        let engine = Arc::new(engine);
        engines.insert(dest.to_owned(), engine.clone());
        Ok(engine)
    }

    /// Lists the containers this provider made on `dest`'s engine.
    pub(super) async fn list_containers(&self, dest: &str, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut want = labels.clone();
        want.insert(VIA_LABEL.into(), "docker".into());
        Ok(self.engine(dest).await?.list(&want).await?.into_iter().map(|sb| wrap(dest, sb)).collect())
    }

    /// Where port `port` of container `container` on `dest` is: the port Docker published on the
    /// host's loopback, forwarded to a socket here.
    pub(super) async fn container_endpoint(&self, id: &str, dest: &str, container: &str, port: u16) -> Result<Endpoint> {
        let key = (id.to_owned(), port);
        if let Some(p) = self.forwards.lock().expect("lock").get(&key) {
            return Ok(Endpoint { transport: Transport::Unix { path: p.clone() }, headers: Vec::new() });
        }
        let inner = self.engine(dest).await?.endpoint(container, port).await?;
        let remote_port = match &inner.transport {
            Transport::Http { url } => url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse::<u16>().ok()),
            Transport::Unix { .. } => None,
        }
        .ok_or_else(|| Error::Unsupported { op: "reaching this port of a container on an SSH host", provider: NAME })?;
        let path = forward::start(self.conn(dest)?, &format!("{id}:{port}"), forward::Remote::Port(remote_port))?;
        self.forwards.lock().expect("lock").insert(key, path.clone());
        Ok(Endpoint { transport: Transport::Unix { path }, headers: inner.headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_carry_the_destination() {
        assert_eq!(split("me@box:2222/docker/dev-1a2b"), Some(("me@box:2222", "dev-1a2b")));
        assert_eq!(split("me@box/dev-1a2b"), None);
        assert_eq!(split("me@box/docker/../x"), None);
        assert_eq!(split("a/b/docker/x"), None);
        assert_eq!("docker".parse::<Isolation>().unwrap(), Isolation::Docker);
        assert!("vm".parse::<Isolation>().unwrap_err().to_string().contains("use `docker`"));
    }
}
