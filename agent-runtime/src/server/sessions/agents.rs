//! The agents this runtime can drive: where their binaries are, their versions, installing them, and
//! starting a driver for a session.
//!
//! A binary is looked for in the runtime's own agent directory first (`<state>/agents/bin/<id>`,
//! where installs put it), then on `PATH`. Installing takes, in order: what is already there (unless
//! reinstalling), a binary already in the sandbox (`fromPath`, e.g. uploaded from the host), a mirror
//! given by a URL template (with a SHA-256 check).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::driver::{AgentDriver, AgentGone, SessionSettings};
use crate::api::session::{AgentCapabilities, AgentInfo, AgentMode, InstallAgentRequest, InstallAgentResponse};
use crate::server::ApiError;

/// Env var holding the default mirror URL template for installs.
pub(crate) const MIRROR_ENV: &str = "SBX_AGENT_MIRROR";

/// A known agent.
#[derive(Debug)]
pub(crate) struct AgentSpec {
    pub(crate) id: &'static str,
    name: &'static str,
    /// Binary names to look for on PATH.
    binaries: &'static [&'static str],
    models: &'static [&'static str],
    modes: &'static [(&'static str, &'static str)],
    capabilities: fn() -> AgentCapabilities,
}

fn full_caps() -> AgentCapabilities {
    AgentCapabilities { text_deltas: true, tool_calls: true, permissions: true, questions: true, cancel: true, usage: true, mcp: true, resume: true }
}

fn codex_caps() -> AgentCapabilities {
    AgentCapabilities { questions: false, ..full_caps() }
}

fn mock_caps() -> AgentCapabilities {
    AgentCapabilities { mcp: false, ..full_caps() }
}

const SPECS: &[AgentSpec] = &[
    AgentSpec {
        id: "claude",
        name: "Claude Code",
        binaries: &["claude"],
        models: &["sonnet", "opus", "haiku"],
        modes: &[
            ("default", "Ask before edits and commands (answered through permission events)"),
            ("acceptEdits", "Edit files without asking; still ask for commands"),
            ("plan", "Plan only: read and propose, change nothing"),
        ],
        capabilities: full_caps,
    },
    AgentSpec {
        id: "codex",
        name: "Codex",
        binaries: &["codex"],
        models: &["gpt-5.5", "gpt-5.1-codex", "gpt-5-codex"],
        modes: &[
            ("danger-full-access", "Run commands without Codex's inner sandbox (the sbx sandbox is the boundary; default)"),
            ("workspace-write", "Codex's own sandbox: write only inside the working directory"),
            ("read-only", "Codex's own sandbox: read only"),
        ],
        capabilities: codex_caps,
    },
    AgentSpec {
        id: "mock",
        name: "Mock agent (built in, no LLM)",
        binaries: &[],
        models: &["mock"],
        modes: &[("default", "Follow the message as a script (see the docs)")],
        capabilities: mock_caps,
    },
];

/// Every agent id, for error messages.
pub(crate) fn agent_ids() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.id).collect()
}

/// Where agents are and what versions they have.
pub(crate) struct AgentRegistry {
    dir: PathBuf,
    versions: Mutex<HashMap<PathBuf, (SystemTime, String)>>,
}

impl AgentRegistry {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, versions: Mutex::new(HashMap::new()) }
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// The spec of `id`, or a 404 listing the known ones.
    pub(crate) fn spec(&self, id: &str) -> Result<&'static AgentSpec, ApiError> {
        SPECS.iter().find(|s| s.id == id).ok_or_else(|| {
            ApiError::not_found(format!("unknown agent `{id}`; known agents: {}", agent_ids().join(", ")))
        })
    }

    /// The agent's binary, if present.
    pub(crate) fn find(&self, spec: &AgentSpec) -> Option<PathBuf> {
        let own = self.bin_dir().join(spec.id);
        if is_executable(&own) {
            return Some(own);
        }
        let path = std::env::var_os("PATH")?;
        for dir in std::env::split_paths(&path) {
            for name in spec.binaries {
                let p = dir.join(name);
                if is_executable(&p) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// The binary, or an error saying how to install it. The mock agent needs none.
    pub(crate) async fn require_binary(&self, spec: &AgentSpec) -> Result<PathBuf, ApiError> {
        if spec.binaries.is_empty() {
            return Ok(PathBuf::new());
        }
        self.find(spec).ok_or_else(|| {
            ApiError::bad_request(format!(
                "the {} agent (`{}`) is not installed in this sandbox; install it with `sbx agent install <sandbox> {} --from-host` \
                 or POST /v1/agents/{}/install",
                spec.name, spec.id, spec.id, spec.id
            ))
        })
    }

    /// What `GET /v1/agents/{id}` shows.
    pub(crate) async fn info(&self, spec: &'static AgentSpec) -> AgentInfo {
        let path = self.find(spec);
        let version = match &path {
            Some(p) => self.version(p).await,
            None if spec.binaries.is_empty() => Some(crate::VERSION.to_owned()),
            None => None,
        };
        let installed = spec.binaries.is_empty() || path.is_some();
        AgentInfo {
            id: spec.id.into(),
            name: spec.name.into(),
            installed,
            version,
            path: path.map(|p| p.to_string_lossy().into_owned()),
            capabilities: (spec.capabilities)(),
            models: spec.models.iter().map(|m| (*m).to_owned()).collect(),
            modes: spec.modes.iter().map(|(id, d)| AgentMode { id: (*id).into(), description: (*d).into() }).collect(),
            install_hint: (!installed).then(|| format!("sbx agent install <sandbox> {} --from-host", spec.id)),
        }
    }

    /// Every agent.
    pub(crate) async fn list(&self) -> Vec<AgentInfo> {
        let mut out = Vec::new();
        for spec in SPECS {
            out.push(self.info(spec).await);
        }
        out
    }

    /// `<binary> --version`, first line, cached by path and modification time.
    async fn version(&self, path: &Path) -> Option<String> {
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
        if let Some((t, v)) = self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            if *t == mtime {
                return Some(v.clone());
            }
        }
        let mut attempt = 0;
        let out = loop {
            let run = tokio::process::Command::new(path)
                .arg("--version")
                .env_remove(crate::server_env::TOKEN)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(Duration::from_secs(20), run).await.ok()? {
                Ok(out) => break out,
                // "Text file busy": a just-written binary whose write descriptor a process forked
                // elsewhere in the runtime still holds until it execs. It goes away in moments.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => return None,
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let v = text.lines().next()?.trim().to_owned();
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), (mtime, v.clone()));
        Some(v)
    }

    /// Installs an agent (see the module docs for the order of sources).
    pub(crate) async fn install(&self, spec: &'static AgentSpec, req: InstallAgentRequest) -> Result<InstallAgentResponse, ApiError> {
        if spec.binaries.is_empty() {
            return Ok(InstallAgentResponse { agent: self.info(spec).await, source: "present".into(), changed: false });
        }
        if !req.reinstall && req.from_path.is_none() {
            if self.find(spec).is_some() {
                return Ok(InstallAgentResponse { agent: self.info(spec).await, source: "present".into(), changed: false });
            }
        }
        let target = self.bin_dir().join(spec.id);
        tokio::fs::create_dir_all(self.bin_dir()).await.map_err(|e| ApiError::io(&self.bin_dir().to_string_lossy(), e))?;
        let source = if let Some(from) = &req.from_path {
            let from = PathBuf::from(from);
            if !from.is_file() {
                return Err(ApiError::bad_request(format!("fromPath `{}` is not a file in the sandbox", from.display())));
            }
            let staged = target.with_extension("partial");
            copy_checked(&from, &staged, req.sha256.as_deref()).await?;
            finish_install(&staged, &target).await?;
            "path"
        } else {
            let template = req.mirror_url.clone().or_else(|| std::env::var(MIRROR_ENV).ok().filter(|s| !s.is_empty()));
            let Some(template) = template else {
                return Err(ApiError::bad_request(format!(
                    "the {} agent is not installed and no install source was given: upload the binary from the host \
                     (`sbx agent install <sandbox> {} --from-host`), or give a mirror URL template (`mirrorUrl` or {MIRROR_ENV}, \
                     e.g. http://mirror/{{agent}}/{{version}}/{{os}}-{{arch}}/{{agent}}). This runtime has no network path to the vendor's channel.",
                    spec.name, spec.id
                )));
            };
            let version = req.version.clone().unwrap_or_else(|| "latest".into());
            let url = template
                .replace("{agent}", spec.id)
                .replace("{version}", &version)
                .replace("{os}", std::env::consts::OS)
                .replace("{arch}", std::env::consts::ARCH);
            let staged = target.with_extension("partial");
            download_checked(&url, &staged, req.sha256.as_deref()).await?;
            finish_install(&staged, &target).await?;
            "mirror"
        };
        let agent = self.info(spec).await;
        if agent.version.is_none() {
            return Err(ApiError::bad_request(format!(
                "installed {} at {}, but `{} --version` does not run; is it a binary for {}-{}?",
                spec.name,
                target.display(),
                target.display(),
                std::env::consts::OS,
                std::env::consts::ARCH
            )));
        }
        Ok(InstallAgentResponse { agent, source: source.into(), changed: true })
    }
}

/// Starts the driver of `spec` for a session.
pub(crate) async fn start_driver(spec: &AgentSpec, settings: SessionSettings) -> Result<Box<dyn AgentDriver>, AgentGone> {
    match spec.id {
        "mock" => Ok(Box::new(super::mock::MockDriver::new(&settings))),
        "claude" => Ok(Box::new(super::claude::ClaudeDriver::new(settings).await?)),
        "codex" => Ok(Box::new(super::codex::CodexDriver::start(settings).await?)),
        other => Err(AgentGone(format!("no driver for agent `{other}`"))),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn finish_install(staged: &Path, target: &Path) -> Result<(), ApiError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(|e| ApiError::io(&staged.to_string_lossy(), e))?;
    tokio::fs::rename(staged, target).await.map_err(|e| ApiError::io(&target.to_string_lossy(), e))
}

fn check_sha(expected: Option<&str>, actual: &str, what: &str) -> Result<(), ApiError> {
    match expected {
        Some(e) if !e.trim().eq_ignore_ascii_case(actual) => Err(ApiError::bad_request(format!(
            "checksum mismatch for {what}: expected sha256 {}, got {actual}; nothing was installed",
            e.trim()
        ))),
        _ => Ok(()),
    }
}

async fn copy_checked(from: &Path, to: &Path, sha256: Option<&str>) -> Result<(), ApiError> {
    let (from, to2) = (from.to_path_buf(), to.to_path_buf());
    let digest = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut input = std::fs::File::open(&from)?;
        let mut out = std::fs::File::create(&to2)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut out, &buf[..n])?;
        }
        out.sync_all()?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    if let Err(e) = check_sha(sha256, &digest, "the uploaded binary") {
        let _ = tokio::fs::remove_file(to).await;
        return Err(e);
    }
    Ok(())
}

async fn download_checked(url: &str, to: &Path, sha256: Option<&str>) -> Result<(), ApiError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expected = match sha256 {
        Some(s) => s.to_owned(),
        None => {
            let sums_url = format!("{url}.sha256");
            let resp = client.get(&sums_url).send().await.map_err(|e| ApiError::bad_request(format!("cannot fetch {sums_url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(ApiError::bad_request(format!(
                    "the mirror has no checksum at {sums_url} ({}); give `sha256` explicitly",
                    resp.status()
                )));
            }
            let text = resp.text().await.map_err(|e| ApiError::bad_request(format!("reading {sums_url}: {e}")))?;
            text.split_whitespace().next().unwrap_or_default().to_owned()
        }
    };
    let mut resp = client.get(url).send().await.map_err(|e| ApiError::bad_request(format!("cannot fetch {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ApiError::bad_request(format!("the mirror answered {} for {url}", resp.status())));
    }
    let mut file = tokio::fs::File::create(to).await.map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ApiError::bad_request(format!("downloading {url}: {e}")))? {
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    }
    file.sync_all().await.map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    drop(file);
    let digest = hex::encode(hasher.finalize());
    if let Err(e) = check_sha(Some(&expected), &digest, url) {
        let _ = tokio::fs::remove_file(to).await;
        return Err(e);
    }
    Ok(())
}
