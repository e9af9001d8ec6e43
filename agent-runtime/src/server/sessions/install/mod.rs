//! Installing agents (`POST /v1/agents/{id}/install`, `sbx-agent install-agent`) from one of these
//! sources, each ending in `<state>/agents/bin/<id>` after a SHA-256 check and a `--version` run:
//!
//! - `image`: only what is already there (the image, or an earlier install).
//! - `path`: a binary already in the sandbox (uploaded from the host by `sbx`).
//! - `mirror`: a URL template (`{agent}`, `{version}`, `{os}`, `{arch}`) with a `.sha256` beside it.
//! - `vendor`: the vendor's own release channel, read the way the vendor lays it out (`vendor.rs`).
//! - `pip`: the agent's PyPI wheel, through the sandbox's own Python (`pip.rs`).
//! - `auto`: what is there, else mirror (when one is configured), vendor, pip; the first that works.
//!   The host's own binary sits between "there" and "vendor" in `sbx`'s order, since only the host
//!   can upload it.

mod fetch;
mod pip;
mod vendor;

use std::path::PathBuf;
use std::time::Instant;

use super::agents::{AgentRegistry, AgentSpec};
use crate::api::session::{InstallAgentRequest, InstallAgentResponse, InstallAttempt};
use crate::server::ApiError;

pub(crate) use fetch::MIRROR_ENV;

/// Where an installed binary came from, and the channel's name for its version.
struct Installed {
    source: &'static str,
    channel_version: Option<String>,
}

impl AgentRegistry {
    /// Installs an agent (see the module docs for the sources).
    pub(crate) async fn install(&self, spec: &'static AgentSpec, req: InstallAgentRequest) -> Result<InstallAgentResponse, ApiError> {
        let started = Instant::now();
        let present = |agent| InstallAgentResponse {
            agent,
            source: "present".into(),
            changed: false,
            channel_version: None,
            tried: Vec::new(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        if spec.binaries.is_empty() {
            return Ok(present(self.info(spec).await));
        }
        let default = if req.from_path.is_some() {
            "path"
        } else if req.mirror_url.is_some() {
            "mirror"
        } else {
            "auto"
        };
        let source = req.source.clone().unwrap_or_else(|| default.to_owned());
        let keep = !req.reinstall && req.from_path.is_none();
        if keep || source == "image" {
            if self.find(spec).is_some() {
                return Ok(present(self.info(spec).await));
            }
            if source == "image" {
                return Err(ApiError::bad_request(format!(
                    "the {} agent is not in this sandbox's image; pick another source (auto, from-host, vendor, mirror, pip) \
                     or an image that has it (templates/docker/build.sh --with-agents)",
                    spec.name
                )));
            }
        }
        tokio::fs::create_dir_all(self.bin_dir()).await.map_err(|e| ApiError::io(&self.bin_dir().to_string_lossy(), e))?;
        let mut tried = Vec::new();
        let done = match source.as_str() {
            "path" => self.install_from_path(spec, &req).await?,
            "mirror" => self.install_from_mirror(spec, &req).await?,
            "vendor" => vendor::install(self, spec, &req).await?,
            "pip" => pip::install(self, spec, &req).await?,
            "auto" => {
                let mirror = req.mirror_url.is_some() || std::env::var(MIRROR_ENV).is_ok_and(|m| !m.is_empty());
                let mut got = None;
                for s in ["mirror", "vendor", "pip"] {
                    let r = match s {
                        "mirror" if !mirror => continue,
                        "mirror" => self.install_from_mirror(spec, &req).await,
                        "vendor" => vendor::install(self, spec, &req).await,
                        _ => pip::install(self, spec, &req).await,
                    };
                    match r {
                        Ok(i) => {
                            got = Some(i);
                            break;
                        }
                        Err(e) => tried.push(InstallAttempt { source: s.into(), error: e.detail().to_owned() }),
                    }
                }
                match got {
                    Some(i) => i,
                    None => {
                        let list: Vec<String> = tried.iter().map(|t| format!("{}: {}", t.source, t.error)).collect();
                        return Err(ApiError::bad_request(format!(
                            "could not install the {} agent; tried {}",
                            spec.name,
                            list.join("; ")
                        )));
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown install source `{other}`; use auto, image, path, mirror, vendor or pip"
                )))
            }
        };
        let agent = self.info(spec).await;
        if agent.version.is_none() {
            let target = self.bin_dir().join(spec.id);
            return Err(ApiError::bad_request(format!(
                "installed {} at {} from {}, but `{} --version` does not run; is it a binary for {}-{} (and its C library)?",
                spec.name,
                target.display(),
                done.source,
                target.display(),
                std::env::consts::OS,
                std::env::consts::ARCH
            )));
        }
        Ok(InstallAgentResponse {
            agent,
            source: done.source.into(),
            changed: true,
            channel_version: done.channel_version,
            tried,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn install_from_path(&self, spec: &AgentSpec, req: &InstallAgentRequest) -> Result<Installed, ApiError> {
        let Some(from) = &req.from_path else {
            return Err(ApiError::bad_request("source `path` needs `fromPath`"));
        };
        let from = PathBuf::from(from);
        if !from.is_file() {
            return Err(ApiError::bad_request(format!("fromPath `{}` is not a file in the sandbox", from.display())));
        }
        let target = self.bin_dir().join(spec.id);
        let staged = target.with_extension("partial");
        fetch::copy_checked(&from, &staged, req.sha256.as_deref()).await?;
        fetch::finish_install(&staged, &target).await?;
        Ok(Installed { source: "path", channel_version: None })
    }

    async fn install_from_mirror(&self, spec: &AgentSpec, req: &InstallAgentRequest) -> Result<Installed, ApiError> {
        let template = req.mirror_url.clone().or_else(|| std::env::var(MIRROR_ENV).ok().filter(|s| !s.is_empty()));
        let Some(template) = template else {
            return Err(ApiError::bad_request(format!(
                "no mirror given: set `mirrorUrl` or {MIRROR_ENV} (e.g. http://mirror/{{agent}}/{{version}}/{{os}}-{{arch}}/{{agent}})"
            )));
        };
        let version = req.version.clone().unwrap_or_else(|| "latest".into());
        let url = template
            .replace("{agent}", spec.id)
            .replace("{version}", &version)
            .replace("{os}", std::env::consts::OS)
            .replace("{arch}", std::env::consts::ARCH);
        let target = self.bin_dir().join(spec.id);
        let staged = target.with_extension("partial");
        let expected = match req.sha256.clone() {
            Some(s) => s,
            None => fetch::mirror_checksum(&url).await?,
        };
        fetch::download_checked(&url, &staged, &expected).await?;
        fetch::finish_install(&staged, &target).await?;
        Ok(Installed { source: "mirror", channel_version: Some(version) })
    }
}
