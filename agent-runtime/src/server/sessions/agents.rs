//! The agents this runtime can drive: where their binaries are, their versions, installing them, and
//! starting a driver for a session.
//!
//! A binary is looked for in the runtime's own agent directory first (`<state>/agents/bin/<id>`,
//! where installs put it), then on `PATH`. Installing is in `install/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::driver::{AgentDriver, AgentGone, SessionSettings};
use crate::api::session::{AgentCapabilities, AgentInfo, AgentMode};
use crate::api::ProblemKind;
use crate::server::ApiError;

/// A known agent.
#[derive(Debug)]
pub(crate) struct AgentSpec {
    pub(crate) id: &'static str,
    pub(super) name: &'static str,
    /// Binary names to look for on PATH.
    pub(super) binaries: &'static [&'static str],
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
    /// The agent directory (`<state>/agents`).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, versions: Mutex::new(HashMap::new()) }
    }

    /// Where installs put binaries (`<state>/agents/bin`).
    pub(super) fn bin_dir(&self) -> PathBuf {
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
            ApiError::new(
                ProblemKind::AgentNotInstalled,
                format!(
                    "the {} agent (`{}`) is not installed in this sandbox; install it with `sbx agent install <sandbox> {} \
                     --from-host` or POST /v1/agents/{}/install",
                    spec.name, spec.id, spec.id, spec.id
                ),
            )
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
        // Keyed by the file the path resolves to: an install may point the same link at another file
        // whose modification time is the same (unpacked from an archive).
        let path = &std::fs::canonicalize(path).ok()?;
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
}

/// Starts the driver of `spec` for a session.
pub(crate) async fn start_driver(spec: &AgentSpec, mut settings: SessionSettings) -> Result<Box<dyn AgentDriver>, AgentGone> {
    super::llm::apply(spec.id, &mut settings)?;
    match spec.id {
        "mock" => Ok(Box::new(super::mock::MockDriver::new(&settings))),
        "claude" => Ok(Box::new(super::claude::ClaudeDriver::new(settings).await?)),
        "codex" => Ok(Box::new(super::codex::CodexDriver::start(settings).await?)),
        other => Err(AgentGone(format!("no driver for agent `{other}`"))),
    }
}

pub(super) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
