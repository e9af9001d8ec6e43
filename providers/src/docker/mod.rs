//! `docker`: a sandbox is a container of the local (or `DOCKER_HOST`) Docker engine, driven through
//! bollard.
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use sbx_providers::{Provider, SandboxSpec, docker::DockerProvider};
//! let docker = DockerProvider::connect().await?;        // Error::Unavailable if the engine is down
//! let sandbox = docker.create(&SandboxSpec::named("demo")).await?;
//! docker.destroy(&sandbox.id).await?;
//! # Ok(()) }
//! ```
//!
//! # What a sandbox is
//!
//! - Container name (and sandbox id) `sbx-<name>-<4 random hex>`, image `sbx-base:latest` unless the
//!   spec, [`DockerProvider::with_image`] or `SBX_DOCKER_IMAGE` says otherwise. Every container carries
//!   the spec's labels plus [`labels::MANAGED`] (and `NAME`, and `EXPIRES_AT`
//!   when the spec has a ttl); containers without `MANAGED` are invisible to this provider: `get` says
//!   `None`, the other operations say `NotFound`, `destroy` never touches them.
//! - `init: true`: Docker's tini is PID 1 and reaps the runtime that `sbx-agent daemon start`
//!   daemonizes out of an exec session.
//! - CPU (`NanoCpus`) and memory limits and env from the spec. The runtime port 2468 and every port in
//!   `spec.ports` are published on `127.0.0.1` only, each on a random host port; [`Provider::endpoint`]
//!   reads the mapping back from the container.
//!
//! # Keep-alive: `sleep infinity`, or the runtime's `idle` for images without `sleep`
//!
//! The container must stay up before anything is uploaded, and the runtime itself is started later by
//! the generic bootstrap (`sbx-agent daemon start` through `exec`), the same as on every provider. So
//! PID 1's child (the entrypoint, overriding whatever the image declares) is a do-nothing process:
//! - `sleep infinity` when the image has `/bin/sleep` or `/usr/bin/sleep` (sbx-base, Debian, Alpine…);
//! - otherwise (scratch, distroless) `/usr/local/bin/sbx-agent idle`, a hidden subcommand of the
//!   runtime that sleeps forever. Before such a container is started, the runtime binary is put into it
//!   through the archive API (which works on created, not yet started, containers) unless the image
//!   already has it; the binary comes from [`DockerProvider::with_runtime`] or
//!   [`locate_runtime`](crate::bootstrap::locate_runtime). The later bootstrap finds that version
//!   installed and skips its own upload.
//!
//! The check is made on the created container (a `GET /archive` probe of `/bin/sleep`), and its answer
//! is remembered per image reference, so a shell-less image costs one extra create/remove only once
//! per provider instance.
//!
//! # `Network::None`
//!
//! `NetworkMode: none`, nothing published. The runtime then listens (as well as on the container's
//! own loopback, which the daemon's start-up health check uses) on the Unix socket
//! `/run/sbx/agent.sock`, where `/run/sbx` is a bind mount of the host directory
//! `<state dir>/docker-sockets/<container>/` (state dir: [`DockerProvider::with_state_dir`], default
//! `$XDG_STATE_HOME/sbx`). [`Provider::runtime_layout`] says so, and [`Provider::endpoint`] of the
//! runtime port returns [`Transport::Unix`] with the host path (found from the container's mounts).
//! The runtime runs as root in the container, so its socket is root's: the host user must be root or
//! use rootless Docker (where container root is the host user). Docker Desktop cannot share Unix
//! sockets through bind mounts.
//!
//! # Bootstrap channel and lifecycle
//!
//! - `exec`: an attached exec (env and cwd from the spec); the exit code comes from inspecting the
//!   exec. On a timeout it returns [`Error::Timeout`], but the command goes on running: the engine has
//!   no call to stop an exec.
//! - `upload`: the tar stream goes straight into `PUT /archive`, never held whole in memory. Missing
//!   parent directories of `dest` are made first with a small tar of directory entries, so no shell
//!   is needed in the image.
//! - `pause`/`resume` freeze and thaw the container's cgroup; `resume` also starts a container that was
//!   stopped behind sbx's back (then `lifecycle::Lifecycle::reconnect` starts the runtime again). `destroy`
//!   force-removes the container with its anonymous volumes and its socket directory.
//!
//! # Images
//!
//! When `create` finds the image missing it pulls it, reporting progress per layer to the callback set
//! with [`DockerProvider::with_pull_progress`]; a failed pull is [`Error::ImageNotFound`]. `sbx-base`
//! is never pulled (it is built locally by `templates/docker/build.sh`, and the name on Docker Hub is
//! not ours).

mod create;
mod io;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::{InspectContainerOptions, ListContainersOptions, RemoveContainerOptions};
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary};
use bollard::Docker;

pub use create::{PullProgress, PullProgressFn};

use crate::bootstrap::RuntimeLayout;
use crate::{
    labels, ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox,
    SandboxSpec, SandboxState, Transport,
};

const NAME: &str = "docker";

/// The image used when neither the spec nor the provider names one.
pub const DEFAULT_IMAGE: &str = "sbx-base:latest";
/// Env var overriding [`DEFAULT_IMAGE`].
pub const ENV_IMAGE: &str = "SBX_DOCKER_IMAGE";
/// Where the runtime binary goes inside containers.
pub const RUNTIME_PATH: &str = "/usr/local/bin/sbx-agent";
/// The container directory the host socket directory is mounted at (`Network::None`).
pub const SOCKET_DIR: &str = "/run/sbx";
/// File name of the runtime's Unix socket in [`SOCKET_DIR`] and in the host directory.
pub const SOCKET_NAME: &str = "agent.sock";
/// Host directory (under the state dir) holding one socket directory per network-less container.
pub const SOCKETS_SUBDIR: &str = "docker-sockets";

/// What an unreachable engine error tells the user to do.
pub(crate) const START_DOCKER_HINT: &str =
    "is Docker running? start it with `sudo systemctl start docker` (or Docker Desktop)";

/// How long to wait for the engine's first answer in [`DockerProvider::connect`].
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-request limit of the Docker client (uploads and pulls can be long).
const REQUEST_TIMEOUT_SECS: u64 = 600;

/// The Docker provider. Cheap to clone (the engine connection and caches are shared).
#[derive(Clone)]
pub struct DockerProvider {
    docker: Docker,
    image: String,
    state_dir: PathBuf,
    runtime: Option<PathBuf>,
    progress: Option<PullProgressFn>,
    /// The engine runs on this machine (a `unix://` socket), so host paths can be bind-mounted.
    local_engine: bool,
    /// Per image reference: its keep-alive (see the module docs).
    keep_alive: Arc<Mutex<HashMap<String, create::KeepAlive>>>,
}

impl std::fmt::Debug for DockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvider")
            .field("image", &self.image)
            .field("state_dir", &self.state_dir)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl DockerProvider {
    /// Connects to `$DOCKER_HOST` (or the default socket) and checks that the engine answers.
    pub async fn connect() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        Self::connect_host(host.as_deref().unwrap_or("unix:///var/run/docker.sock")).await
    }

    /// Connects to `host` (`unix:///path`, `tcp://host:port` or `http://host:port`).
    pub async fn connect_host(host: &str) -> Result<Self> {
        let version = bollard::API_DEFAULT_VERSION;
        let docker = if host.starts_with("unix://") {
            Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, version)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version)
        } else {
            return Err(Error::Unavailable {
                provider: NAME,
                message: format!("unsupported DOCKER_HOST `{host}` (use unix://, tcp:// or http://)"),
            });
        }
        .map_err(|e| unavailable(host, e))?;
        // Talk the engine's API version when it is older than bollard's (this is also the liveness check).
        let docker = match tokio::time::timeout(PING_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(unavailable(host, e)),
            Err(_) => {
                return Err(Error::Unavailable {
                    provider: NAME,
                    message: format!(
                        "the engine at {host} did not answer within {} s; {START_DOCKER_HINT}",
                        PING_TIMEOUT.as_secs()
                    ),
                })
            }
        };
        let image = std::env::var(ENV_IMAGE).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_IMAGE.into());
        Ok(Self {
            docker,
            image,
            state_dir: default_state_dir(),
            runtime: None,
            progress: None,
            local_engine: host.starts_with("unix://"),
            keep_alive: Arc::default(),
        })
    }

    /// Treats the engine as another machine's even though its socket is local (a socket forwarded
    /// from an SSH host): nothing of this machine is bind-mounted; the runtime goes in through the
    /// archive API.
    pub fn remote_engine(mut self) -> Self {
        self.local_engine = false;
        self
    }

    /// Uses `image` when a spec names none.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// Keeps per-sandbox host files (the `Network::None` socket directories) under `dir`.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// The static runtime binary to put into images that have no `sleep` (default: `locate_runtime`).
    pub fn with_runtime(mut self, path: impl Into<PathBuf>) -> Self {
        self.runtime = Some(path.into());
        self
    }

    /// Calls `f` with every progress event of an image pull (one stream of events per layer).
    ///
    /// To get the events on a channel: `with_pull_progress(move |p| { let _ = tx.send(p.clone()); })`.
    pub fn with_pull_progress(mut self, f: impl Fn(&PullProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The image used when a spec names none.
    pub fn default_image(&self) -> &str {
        &self.image
    }

    /// The bollard client, for callers (tests, fakes) that need the raw engine.
    pub fn engine(&self) -> &Docker {
        &self.docker
    }

    /// The host directory holding the Unix socket of network-less container `name`.
    pub fn socket_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join(SOCKETS_SUBDIR).join(name)
    }

    /// Inspects a managed container; `None` when missing or not sbx's.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        if !valid_ref(id) {
            return Ok(None);
        }
        match self.docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(c) if is_managed(c.config.as_ref().and_then(|c| c.labels.as_ref())) => Ok(Some(c)),
            Ok(_) => Ok(None),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(map_err(e, id)),
        }
    }

    /// The container's state now (`None` when it is gone or cannot be inspected).
    async fn status(&self, id: &str) -> Option<ContainerStateStatusEnum> {
        self.inspect(id).await.ok().flatten()?.state?.status
    }

    /// Like [`Self::inspect`] but a missing sandbox is [`Error::NotFound`].
    async fn require(&self, id: &str) -> Result<ContainerInspectResponse> {
        self.inspect(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })
    }
}

#[async_trait::async_trait]
impl Provider for DockerProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        crate::registry::DOCKER.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let name = self.create_container(spec).await?;
        self.get(&name).await?.ok_or_else(|| Error::Provider {
            provider: NAME,
            message: format!("container `{name}` vanished right after it was created"),
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        Ok(self.inspect(id).await?.map(from_inspect))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut filter = vec![format!("{}=true", labels::MANAGED)];
        filter.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let opts = ListContainersOptions {
            all: true,
            filters: HashMap::from([("label".to_owned(), filter)]),
            ..Default::default()
        };
        let found = self.docker.list_containers(Some(opts)).await.map_err(|e| map_err(e, ""))?;
        let mut out: Vec<Sandbox> = found.into_iter().map(from_summary).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        let c = self.require(id).await?;
        self.exec_in(&container_name(&c, id), cmd).await
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        let c = self.require(id).await?;
        self.upload_to(&container_name(&c, id), archive, dest).await
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        let c = self.require(id).await?;
        if network_none(&c) {
            if port != sbx_agent::DEFAULT_PORT {
                return Err(Error::Unsupported { op: "reaching ports of a --network none sandbox", provider: NAME });
            }
            let source = c
                .mounts
                .iter()
                .flatten()
                .find(|m| m.destination.as_deref() == Some(SOCKET_DIR))
                .and_then(|m| m.source.clone())
                .ok_or_else(|| Error::Provider {
                    provider: NAME,
                    message: format!("`{id}` has no {SOCKET_DIR} mount"),
                })?;
            let path = Path::new(&source).join(SOCKET_NAME);
            return Ok(Endpoint { transport: Transport::Unix { path }, headers: Vec::new() });
        }
        let key = format!("{port}/tcp");
        let host_port = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&key).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port.filter(|p| !p.is_empty())));
        match host_port {
            Some(p) => Ok(Endpoint::http(format!("http://127.0.0.1:{p}"))),
            None => Err(Error::InvalidSpec(format!(
                "port {port} of `{id}` is not published (is the sandbox running? extra ports must be in the spec's ports)"
            ))),
        }
    }

    async fn pause(&self, id: &str) -> Result<()> {
        let c = self.require(id).await?;
        match self.docker.pause_container(&container_name(&c, id)).await {
            // 409 also means "not running": pausing succeeded only if it is paused now.
            Err(e) if status_of(&e) == Some(409) && self.status(id).await == Some(ContainerStateStatusEnum::PAUSED) => {
                Ok(())
            }
            r => r.map_err(|e| map_err(e, id)),
        }
    }

    /// Unpauses a paused container; also starts one that was stopped behind sbx's back (`docker stop`,
    /// a host reboot), after which `lifecycle::Lifecycle::reconnect` starts the runtime again.
    async fn resume(&self, id: &str) -> Result<()> {
        let c = self.require(id).await?;
        let name = container_name(&c, id);
        let status = c.state.as_ref().and_then(|s| s.status).unwrap_or(ContainerStateStatusEnum::EMPTY);
        if matches!(status, ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::CREATED) {
            return self
                .docker
                .start_container(&name, None::<bollard::container::StartContainerOptions<String>>)
                .await
                .map_err(|e| map_err(e, id));
        }
        match self.docker.unpause_container(&name).await {
            // 409: not paused (any more), which is what was asked for when it is running.
            Err(e) if status_of(&e) == Some(409) && self.status(id).await == Some(ContainerStateStatusEnum::RUNNING) => {
                Ok(())
            }
            r => r.map_err(|e| map_err(e, id)),
        }
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        let Some(c) = self.inspect(id).await? else { return Ok(()) };
        let name = container_name(&c, id);
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(&name, Some(opts)).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            // 409 to a forced removal: another removal is under way.
            Err(e) if status_of(&e) == Some(409) => {}
            Err(e) => return Err(map_err(e, id)),
        }
        // The socket directory is ours only when it sits in a `docker-sockets` directory.
        let sock_dirs = c.mounts.iter().flatten().filter(|m| m.destination.as_deref() == Some(SOCKET_DIR));
        for dir in sock_dirs.filter_map(|m| m.source.as_deref()).map(Path::new) {
            if dir.parent().and_then(Path::file_name).is_some_and(|n| n == SOCKETS_SUBDIR) {
                match tokio::fs::remove_dir_all(dir).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not remove socket directory")
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn runtime_layout(&self, id: &str) -> Result<RuntimeLayout> {
        let c = self.require(id).await?;
        let mut layout = RuntimeLayout { binary_path: RUNTIME_PATH.into(), ..RuntimeLayout::default() };
        if network_none(&c) {
            // TCP stays on the container's own loopback (the daemon's start-up check uses it).
            layout.listen_host = "127.0.0.1".into();
            layout.unix_socket = Some(format!("{SOCKET_DIR}/{SOCKET_NAME}"));
        }
        Ok(layout)
    }
}

/// `$XDG_STATE_HOME/sbx`, else `~/.local/state/sbx`, else `<tmp>/sbx-state`.
fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sbx");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/state/sbx");
    }
    std::env::temp_dir().join("sbx-state")
}

/// A container name or id we are willing to put into a URL.
fn valid_ref(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_managed(labels: Option<&HashMap<String, String>>) -> bool {
    labels.and_then(|l| l.get(labels::MANAGED)).is_some_and(|v| v == "true")
}

fn network_none(c: &ContainerInspectResponse) -> bool {
    c.host_config.as_ref().and_then(|h| h.network_mode.as_deref()) == Some("none")
}

/// The container's name (our sandbox id), falling back to what the caller used.
fn container_name(c: &ContainerInspectResponse, id: &str) -> String {
    c.name.as_deref().map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_else(|| id.to_owned())
}

fn state_of(s: &str) -> SandboxState {
    match s {
        "created" => SandboxState::Creating,
        "running" | "restarting" => SandboxState::Running,
        "paused" => SandboxState::Paused,
        "exited" | "dead" | "removing" => SandboxState::Stopped,
        _ => SandboxState::Unknown,
    }
}

fn from_inspect(c: ContainerInspectResponse) -> Sandbox {
    let id = container_name(&c, c.id.as_deref().unwrap_or_default());
    let config = c.config.unwrap_or_default();
    let state = c.state.and_then(|s| s.status).unwrap_or(ContainerStateStatusEnum::EMPTY);
    Sandbox {
        id,
        provider: NAME.into(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: state_of(state.as_ref()),
        image: config.image,
        created_at: c.created.as_deref().and_then(crate::util::parse_rfc3339),
    }
}

fn from_summary(c: ContainerSummary) -> Sandbox {
    let id = c.names.and_then(|n| n.into_iter().next()).map(|n| n.trim_start_matches('/').to_owned());
    Sandbox {
        id: id.or(c.id).unwrap_or_default(),
        provider: NAME.into(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        state: state_of(c.state.as_deref().unwrap_or_default()),
        image: c.image,
        created_at: c.created.and_then(|t| u64::try_from(t).ok()),
    }
}

/// The HTTP status of an engine error, if it is one.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// True when the engine could not be reached at all.
fn is_connection_error(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    matches!(
        e,
        B::HyperLegacyError { .. } | B::IOError { .. } | B::SocketNotFoundError(_) | B::HyperResponseError { .. }
    )
}

fn unavailable(host: &str, e: bollard::errors::Error) -> Error {
    Error::Unavailable {
        provider: NAME,
        message: format!("cannot reach the Docker engine at {host} ({e}); {START_DOCKER_HINT}"),
    }
}

/// Converts an engine error about sandbox `id` at the trait boundary. Every call that names a
/// container addresses it by name, so the engine's 404 to such a call means the container is gone
/// (a missing path in it is checked for separately, see `path_exists`); a 404 to a call that names
/// no container (`id` empty: create, list) is not about a sandbox.
pub(crate) fn map_err(e: bollard::errors::Error, id: &str) -> Error {
    if is_connection_error(&e) {
        return Error::Unavailable {
            provider: NAME,
            message: format!("lost the Docker engine ({e}); {START_DOCKER_HINT}"),
        };
    }
    match &e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } if !id.is_empty() => {
            Error::NotFound { sandbox: id.to_owned() }
        }
        bollard::errors::Error::RequestTimeoutError => {
            Error::Timeout { op: "a Docker engine request".into(), after: Duration::from_secs(REQUEST_TIMEOUT_SECS) }
        }
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            Error::Provider { provider: NAME, message: message.clone() }
        }
        _ => Error::Provider { provider: NAME, message: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_that_cannot_be_sandboxes_are_rejected() {
        assert!(valid_ref("sbx-demo-1a2b"));
        assert!(!valid_ref(""));
        assert!(!valid_ref("../containers"));
        assert!(!valid_ref("a/b"));
    }
}
