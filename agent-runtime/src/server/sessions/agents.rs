//! The agents this runtime can drive: where their binaries are, their versions, installing them, and
//! starting a driver for a session.
//!
//! A binary is looked for in the runtime's own agent directory first (`<state>/agents/bin/<id>`,
//! where installs put it), then on `PATH`. Installing is in `install/`.
//!
//! Besides the native adapters (`claude`, `codex`, `mock`) every agent that speaks ACP is driven by
//! the generic ACP adapter: the presets of `acp/config.rs` and the entries of `<state>/agents/acp.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::acp::config::{self as acp_config, AcpLaunch};
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
    /// For agents driven over ACP: how to start them.
    pub(crate) acp: Option<AcpLaunch>,
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

fn acp_caps() -> AgentCapabilities {
    // Questions need ACP elicitation, which the adapter does not answer yet; resuming needs the
    // agent's `loadSession`.
    AgentCapabilities { questions: false, ..full_caps() }
}

/// Leaks a string for an agent spec (specs live as long as the runtime; see `AcpSpecs`).
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The spec of an ACP agent (its command is its one binary name).
fn acp_spec(id: &str, name: &str, command: &str, modes: Vec<(String, String)>, launch: AcpLaunch) -> &'static AgentSpec {
    let binaries: &'static [&'static str] = Box::leak(vec![leak(command)].into_boxed_slice());
    let modes: Vec<(&'static str, &'static str)> = modes.iter().map(|(m, d)| (leak(m), leak(d))).collect();
    Box::leak(Box::new(AgentSpec {
        id: leak(id),
        name: leak(name),
        binaries,
        models: &[],
        modes: Box::leak(modes.into_boxed_slice()),
        capabilities: acp_caps,
        acp: Some(launch),
    }))
}

/// The ACP agents: presets, then `acp.json`'s entries, reread when the file changes. Specs are leaked
/// (they are `&'static` like the native ones): once per runtime for the presets, once per change of
/// the file for its entries.
struct AcpSpecs {
    presets: Vec<&'static AgentSpec>,
    custom: Mutex<(Option<SystemTime>, Vec<&'static AgentSpec>)>,
    /// Every entry made into a spec so far, by its JSON.
    made: Mutex<HashMap<String, &'static AgentSpec>>,
}

impl AcpSpecs {
    fn new() -> Self {
        let presets = acp_config::PRESETS
            .iter()
            .map(|p| {
                let modes = p.modes.iter().map(|(m, d)| ((*m).to_owned(), (*d).to_owned())).collect();
                acp_spec(p.id, p.name, p.command, modes, p.launch())
            })
            .collect();
        Self { presets, custom: Mutex::new((None, Vec::new())), made: Mutex::default() }
    }

    /// `acp.json`'s agents, reread when its modification time changed; a bad file is logged and
    /// counts as empty.
    fn custom(&self, dir: &Path) -> Vec<&'static AgentSpec> {
        let path = dir.join(acp_config::CONFIG_FILE);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut cur = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        if cur.0 != mtime {
            let agents = match acp_config::load(dir, &self.builtin()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "ACP agent config ignored");
                    Vec::new()
                }
            };
            let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
            let specs = agents
                .iter()
                .map(|a| {
                    // An entry seen before keeps its spec: only new or changed entries are leaked.
                    let key = serde_json::to_string(a).unwrap_or_default();
                    *made.entry(key).or_insert_with(|| {
                        let modes = a.modes.iter().map(|m| (m.id.clone(), m.description.clone())).collect();
                        acp_spec(&a.id, a.name.as_deref().unwrap_or(&a.id), &a.command, modes, a.launch())
                    })
                })
                .collect();
            *cur = (mtime, specs);
        }
        cur.1.clone()
    }

    /// The ids custom agents may not take.
    fn builtin(&self) -> Vec<&'static str> {
        SPECS.iter().map(|s| s.id).chain(self.presets.iter().map(|s| s.id)).collect()
    }

    /// Forgets what was read, so the next look rereads the file (a write within the same
    /// modification-time tick would otherwise go unseen).
    fn invalidate(&self) {
        self.custom.lock().unwrap_or_else(|e| e.into_inner()).0 = None;
    }

    fn all(&self, dir: &Path) -> Vec<&'static AgentSpec> {
        let mut v = self.presets.clone();
        v.extend(self.custom(dir));
        v
    }
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
        acp: None,
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
        acp: None,
    },
    AgentSpec {
        id: "mock",
        name: "Mock agent (built in, no LLM)",
        binaries: &[],
        models: &["mock"],
        modes: &[("default", "Follow the message as a script (see the docs)")],
        capabilities: mock_caps,
        acp: None,
    },
];

/// Every native agent id (those with an adapter of their own).
pub(crate) fn agent_ids() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.id).collect()
}

/// Where agents are and what versions they have.
pub(crate) struct AgentRegistry {
    dir: PathBuf,
    versions: Mutex<HashMap<PathBuf, (SystemTime, String)>>,
    acp: AcpSpecs,
}

impl AgentRegistry {
    /// The agent directory (`<state>/agents`).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, versions: Mutex::new(HashMap::new()), acp: AcpSpecs::new() }
    }

    /// Where installs put binaries (`<state>/agents/bin`).
    pub(super) fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// Every agent: native, then ACP presets, then configured ACP agents.
    fn specs(&self) -> Vec<&'static AgentSpec> {
        let mut v: Vec<&'static AgentSpec> = SPECS.iter().collect();
        v.extend(self.acp.all(&self.dir));
        v
    }

    /// The spec of `id`, or a 404 listing the known ones.
    /// Adds or replaces a configured ACP agent (`PUT /v1/agents/{id}`).
    pub(crate) fn put_acp(&self, agent: acp_config::CustomAgent) -> Result<&'static AgentSpec, ApiError> {
        let id = agent.id.clone();
        let written = acp_config::put(&self.dir, agent, &self.acp.builtin());
        self.acp.invalidate();
        match written {
            Ok(()) => self.spec(&id),
            Err(e @ acp_config::ConfigError::Invalid { .. }) => Err(ApiError::bad_request(e.to_string())),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// Removes a configured ACP agent (`DELETE /v1/agents/{id}`).
    pub(crate) fn remove_acp(&self, id: &str) -> Result<(), ApiError> {
        if self.acp.builtin().contains(&id) {
            return Err(ApiError::bad_request(format!("`{id}` is a built-in agent; only configured ACP agents can be removed")));
        }
        let removed = acp_config::remove(&self.dir, id, &self.acp.builtin());
        self.acp.invalidate();
        match removed {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::not_found(format!("no configured ACP agent `{id}`"))),
            Err(e @ acp_config::ConfigError::Invalid { .. }) => Err(ApiError::conflict(e.to_string())),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    pub(crate) fn spec(&self, id: &str) -> Result<&'static AgentSpec, ApiError> {
        let specs = self.specs();
        specs.iter().find(|s| s.id == id).copied().ok_or_else(|| {
            let ids: Vec<&str> = specs.iter().map(|s| s.id).collect();
            ApiError::not_found(format!(
                "unknown agent `{id}`; known agents: {} (other ACP agents are configured in {})",
                ids.join(", "),
                self.dir.join(acp_config::CONFIG_FILE).display()
            ))
        })
    }

    /// The agent's binary, if present.
    pub(crate) fn find(&self, spec: &AgentSpec) -> Option<PathBuf> {
        let own = self.bin_dir().join(spec.id);
        if is_executable(&own) {
            return Some(own);
        }
        // A configured command with a path is that file.
        if let Some(cmd) = spec.binaries.iter().find(|b| b.contains('/')) {
            let p = PathBuf::from(cmd);
            return is_executable(&p).then_some(p);
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
            if let Some(acp) = &spec.acp {
                return ApiError::new(
                    ProblemKind::AgentNotInstalled,
                    format!(
                        "the {} agent (`{}`) is not installed in this sandbox: {}",
                        spec.name,
                        spec.binaries.join(" "),
                        acp.install_hint
                    ),
                );
            }
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
            // ACP agents are often interpreters' scripts (or an interpreter running one): their
            // `--version` may say nothing useful, or start the agent.
            Some(_) if spec.acp.is_some() => None,
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
            install_hint: (!installed).then(|| match &spec.acp {
                Some(acp) => acp.install_hint.clone(),
                None => format!("sbx agent install <sandbox> {} --from-host", spec.id),
            }),
        }
    }

    /// Every agent.
    pub(crate) async fn list(&self) -> Vec<AgentInfo> {
        let mut out = Vec::new();
        for spec in self.specs() {
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
    if let Some(launch) = &spec.acp {
        return Ok(Box::new(super::acp::AcpDriver::start(spec.id, launch.clone(), settings).await?));
    }
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
