//! Making a container: its config, the keep-alive choice (see the module docs), and image pulls.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions, StartContainerOptions};
use bollard::image::CreateImageOptions;
use bollard::models::{CreateImageInfo, HostConfig, PortBinding};
use futures::StreamExt;

use super::{is_connection_error, map_err, status_of, DockerProvider, DEFAULT_IMAGE, RUNTIME_PATH, SOCKET_DIR};
use crate::{labels, Error, Labels, Network, Result, SandboxSpec};

/// What keeps a container up until (and while) the runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAlive {
    /// `sleep infinity` from the image.
    Sleep,
    /// The runtime's hidden `idle` subcommand (images without `sleep`).
    Runtime,
}

impl KeepAlive {
    fn entrypoint(self) -> Vec<String> {
        match self {
            Self::Sleep => vec!["sleep".into(), "infinity".into()],
            Self::Runtime => vec![RUNTIME_PATH.into(), "idle".into()],
        }
    }
}

/// One progress event of an image pull, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The image being pulled.
    pub image: String,
    /// The layer this event is about (`None` for image-wide messages such as `Pulling from …`).
    pub layer: Option<String>,
    /// The engine's status text: `Pulling fs layer`, `Downloading`, `Extracting`, `Pull complete`, ….
    pub status: String,
    /// Bytes done, for `Downloading`/`Extracting`.
    pub current: Option<u64>,
    /// Bytes in all, for `Downloading`/`Extracting`.
    pub total: Option<u64>,
}

impl PullProgress {
    fn from_info(image: &str, info: CreateImageInfo) -> Self {
        let status = info.status.unwrap_or_default();
        let image_wide =
            status.starts_with("Pulling from") || status.starts_with("Digest:") || status.starts_with("Status:");
        let detail = info.progress_detail.unwrap_or_default();
        Self {
            image: image.to_owned(),
            layer: info.id.filter(|_| !image_wide),
            status,
            current: detail.current.and_then(|c| u64::try_from(c).ok()),
            total: detail.total.and_then(|t| u64::try_from(t).ok()).filter(|t| *t > 0),
        }
    }
}

/// Receives pull progress (see [`DockerProvider::with_pull_progress`]).
pub type PullProgressFn = Arc<dyn Fn(&PullProgress) + Send + Sync>;

impl DockerProvider {
    /// Creates and starts the container for `spec`; returns its name (the sandbox id).
    pub(super) async fn create_container(&self, spec: &SandboxSpec) -> Result<String> {
        if let Some(c) = spec.cpus {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::InvalidSpec(format!("cpus must be a positive number, not {c}")));
            }
        }
        if spec.memory_mb.is_some_and(|m| m < 6) {
            return Err(Error::InvalidSpec("Docker needs a memory limit of at least 6 MiB".into()));
        }
        let image = spec.image.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| self.image.clone());
        let mut labels = spec.labels.clone();
        labels.insert(labels::MANAGED.into(), "true".into());
        if !spec.name.is_empty() {
            labels.entry(labels::NAME.into()).or_insert_with(|| spec.name.clone());
        }
        if let Some(ttl) = spec.ttl {
            let at = crate::util::unix_now() + ttl.as_secs();
            labels.entry(labels::EXPIRES_AT.into()).or_insert_with(|| at.to_string());
        }
        // A random suffix can collide (1 in 65536 per pair): try a fresh one.
        let mut attempt = 0;
        loop {
            let name = crate::util::fresh_name(&spec.name, NAME_MAX);
            match self.create_named(&name, &image, spec, &labels).await {
                // 409 from `docker create` (see `create_error`): the name is taken.
                Err(Error::Api { status: 409, .. }) if attempt < 3 => attempt += 1,
                r => return r.map(|()| name),
            }
        }
    }

    async fn create_named(&self, name: &str, image: &str, spec: &SandboxSpec, labels: &Labels) -> Result<()> {
        let sock_dir = match spec.network {
            Network::None => {
                let dir = self.socket_dir(name);
                // sun_path holds 108 bytes; say so now rather than when the runtime cannot bind.
                let socket = dir.join(super::SOCKET_NAME);
                if socket.as_os_str().len() > 104 {
                    return Err(Error::InvalidSpec(format!(
                        "the socket path {} is too long for a Unix socket; use a shorter state dir",
                        socket.display()
                    )));
                }
                create_private_dir(&dir).await?;
                Some(dir)
            }
            Network::Bridge => None,
        };
        let result = self.create_and_start(name, image, spec, labels, sock_dir.as_deref()).await;
        if result.is_err() {
            self.remove_quietly(name).await;
            if let Some(dir) = &sock_dir {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
        }
        result
    }

    async fn create_and_start(
        &self,
        name: &str,
        image: &str,
        spec: &SandboxSpec,
        labels: &Labels,
        sock_dir: Option<&Path>,
    ) -> Result<()> {
        let cached = self.keep_alive.lock().expect("keep-alive cache").get(image).copied();
        let mut keep = cached.unwrap_or(KeepAlive::Sleep);
        self.create_raw(name, image, spec, labels, sock_dir, keep).await?;
        if cached.is_none() {
            let has_sleep =
                self.path_exists(name, "/bin/sleep").await? || self.path_exists(name, "/usr/bin/sleep").await?;
            if !has_sleep {
                tracing::debug!(image, "image has no sleep; keeping containers up with `sbx-agent idle`");
                self.remove_quietly(name).await;
                keep = KeepAlive::Runtime;
                self.create_raw(name, image, spec, labels, sock_dir, keep).await?;
            }
            self.keep_alive.lock().expect("keep-alive cache").insert(image.to_owned(), keep);
        }
        if keep == KeepAlive::Runtime && !self.path_exists(name, RUNTIME_PATH).await? {
            let binary = match &self.runtime {
                Some(p) => p.clone(),
                None => crate::bootstrap::locate_runtime(true).map_err(|e| {
                    Error::InvalidSpec(format!(
                        "image `{image}` has no `sleep` to keep its container up, so sbx keeps it up with the \
                         runtime itself, but: {e}"
                    ))
                })?,
            };
            let (dir, file) = RUNTIME_PATH.rsplit_once('/').expect("absolute path");
            let tar = crate::bootstrap::file_tar_stream(&binary, file).await?;
            self.upload_to(name, tar, dir).await?;
        }
        self.docker.start_container(name, None::<StartContainerOptions<String>>).await.map_err(|e| map_err(e, name))
    }

    /// Host paths mounted into a new container: the socket directory (network-less containers), and on
    /// a local engine the host's static runtime, read-only at [`RUNTIME_PATH`]. The mount saves
    /// streaming the ~8 MB binary through the archive API on every create (bootstrap sees the right
    /// version already installed and skips its upload).
    fn binds(&self, sock_dir: Option<&Path>) -> Vec<String> {
        let mut binds: Vec<String> = sock_dir.map(|d| format!("{}:{SOCKET_DIR}", d.display())).into_iter().collect();
        if self.local_engine {
            let runtime = self.runtime.clone().or_else(|| crate::bootstrap::locate_runtime(true).ok());
            if let Some(rt) = runtime.filter(|p| crate::bootstrap::is_static_elf(p)) {
                binds.push(format!("{}:{RUNTIME_PATH}:ro", rt.display()));
            }
        }
        binds
    }

    /// `docker create` (pulling the image when it is missing).
    async fn create_raw(
        &self,
        name: &str,
        image: &str,
        spec: &SandboxSpec,
        labels: &Labels,
        sock_dir: Option<&Path>,
        keep: KeepAlive,
    ) -> Result<()> {
        let mut exposed = HashMap::new();
        let mut bindings = HashMap::new();
        if spec.network == Network::Bridge {
            for port in std::iter::once(sbx_agent::DEFAULT_PORT).chain(spec.ports.iter().copied()) {
                let key = format!("{port}/tcp");
                exposed.insert(key.clone(), HashMap::new());
                let loopback = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) };
                bindings.insert(key, Some(vec![loopback]));
            }
        }
        let host_config = HostConfig {
            init: Some(true),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            memory: spec.memory_mb.map(|m| (m * 1024 * 1024) as i64),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            network_mode: (spec.network == Network::None).then(|| "none".to_owned()),
            binds: Some(self.binds(sock_dir)).filter(|b| !b.is_empty()),
            ..Default::default()
        };
        let config = Config {
            image: Some(image.to_owned()),
            entrypoint: Some(keep.entrypoint()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels.clone().into_iter().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = || Some(CreateContainerOptions { name: name.to_owned(), platform: None });
        match self.docker.create_container(opts(), config.clone()).await {
            Ok(_) => return Ok(()),
            // The container does not exist yet, so a 404 can only be about the image: pull it.
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(create_error(e, image)),
        }
        self.pull_image(image).await?;
        self.docker.create_container(opts(), config).await.map(|_| ()).map_err(|e| create_error(e, image))
    }

    /// Pulls `image`, reporting progress to the callback; failures are [`Error::ImageNotFound`].
    pub async fn pull_image(&self, image: &str) -> Result<()> {
        if is_local_only(image) {
            return Err(Error::ImageNotFound {
                image: image.to_owned(),
                hint: "sbx's base image is built on this machine, never pulled: run `templates/docker/build.sh` \
                       (or install/test-deps.sh)"
                    .into(),
            });
        }
        let reference = with_default_tag(image);
        tracing::info!(image = %reference, "pulling image");
        let opts = CreateImageOptions { from_image: reference.clone(), ..Default::default() };
        let mut events = self.docker.create_image(Some(opts), None, None);
        while let Some(event) = events.next().await {
            match event {
                Ok(info) => {
                    if let Some(report) = &self.progress {
                        report(&PullProgress::from_info(image, info));
                    }
                }
                Err(e) if is_connection_error(&e) => return Err(map_err(e, "")),
                Err(e) => {
                    let said = match e {
                        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                        bollard::errors::Error::DockerStreamError { error } => error,
                        other => other.to_string(),
                    };
                    return Err(Error::ImageNotFound {
                        image: image.to_owned(),
                        hint: format!(
                            "pulling `{reference}` failed: {said}. Check the name and tag, and run `docker login` \
                             for a private registry"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Force-removes a container, ignoring errors (cleanup of a failed create).
    async fn remove_quietly(&self, name: &str) {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(e) = self.docker.remove_container(name, Some(opts)).await {
            if status_of(&e) != Some(404) {
                tracing::warn!(container = name, error = %e, "could not remove container");
            }
        }
    }
}

/// The error of a failed `docker create`: 400 is the spec's fault; 409 (the name is in use) is kept
/// as [`Error::Api`] with its status, so the caller can try another name.
fn create_error(e: bollard::errors::Error, image: &str) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 400, message } => {
            Error::InvalidSpec(format!("Docker refused the container for image `{image}`: {message}"))
        }
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message } => {
            Error::Api { provider: super::NAME, op: "create container".into(), status: 409, message, request_id: None }
        }
        e => map_err(e, ""),
    }
}

/// Longest part of the user's name in a container name (kept short for socket paths).
const NAME_MAX: usize = 24;

/// `repo` → `repo:latest`; references with a tag or digest are left alone (an untagged pull would
/// fetch every tag).
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Images that only ever exist locally (sbx's own base image).
fn is_local_only(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    let base = DEFAULT_IMAGE.split(':').next().expect("has a repo");
    repo == base
}

async fn create_private_dir(dir: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tags() {
        assert_eq!(with_default_tag("debian"), "debian:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/sbx-base"), "127.0.0.1:5000/sbx-base:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/sbx-base:test"), "127.0.0.1:5000/sbx-base:test");
        assert_eq!(with_default_tag("x@sha256:abc"), "x@sha256:abc");
    }

    #[test]
    fn the_base_image_is_never_pulled() {
        assert!(is_local_only("sbx-base:latest"));
        assert!(is_local_only("sbx-base"));
        assert!(!is_local_only("127.0.0.1:5000/sbx-base:test"));
        assert!(!is_local_only("debian:bookworm"));
    }
}
