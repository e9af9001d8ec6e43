//! Which ACP agents the runtime knows: built-in presets (`vibe`, `gemini`, `opencode`, `openhands`)
//! and entries of the runtime's `<state>/agents/acp.json`, so any other ACP agent is configuration,
//! not code:
//!
//! ```json
//! {"agents": [{"id": "my-agent", "name": "My agent", "command": "my-agent", "args": ["acp"],
//!              "env": {"MY_AGENT_LOG": "warn"}, "credentials": ["MY_AGENT_API_KEY"],
//!              "installHint": "pip install my-agent", "modes": [{"id": "ask", "description": "…"}]}]}
//! ```
//!
//! `env` holds plain settings only: credentials are named in `credentials` and their values come
//! from the session's environment (never from a file in the sandbox).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How to start an ACP agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AcpLaunch {
    /// Arguments after the command (`gemini --acp`, `opencode acp`).
    pub(crate) args: Vec<String>,
    /// Plain settings for its environment (under the session's own).
    pub(crate) env: BTreeMap<String, String>,
    /// The environment variables its credentials are read from (names only).
    pub(crate) credentials: Vec<String>,
    /// How to install it when it is missing.
    pub(crate) install_hint: String,
    /// The mode a session gets when it asks for none (`session/set_mode`).
    pub(crate) default_mode: Option<String>,
}

/// A built-in ACP agent.
pub(crate) struct Preset {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) command: &'static str,
    pub(crate) args: &'static [&'static str],
    pub(crate) credentials: &'static [&'static str],
    pub(crate) install_hint: &'static str,
    pub(crate) modes: &'static [(&'static str, &'static str)],
    pub(crate) default_mode: Option<&'static str>,
}

impl Preset {
    pub(crate) fn launch(&self) -> AcpLaunch {
        AcpLaunch {
            args: self.args.iter().map(|a| (*a).to_owned()).collect(),
            env: BTreeMap::new(),
            credentials: self.credentials.iter().map(|c| (*c).to_owned()).collect(),
            install_hint: self.install_hint.to_owned(),
            default_mode: self.default_mode.map(str::to_owned),
        }
    }
}

/// The ACP agents sbx knows without configuration.
pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        id: "vibe",
        name: "Mistral Vibe (ACP)",
        command: "vibe-acp",
        args: &[],
        credentials: &["MISTRAL_API_KEY"],
        install_hint: "needs Python >= 3.12: `python3 -m venv /opt/vibe && /opt/vibe/bin/pip install mistral-vibe`, then put \
                       /opt/vibe/bin/vibe-acp on PATH (or in the runtime's agents/bin/vibe)",
        modes: &[
            ("ask", "Ask before edits and commands (answered through permission events; default)"),
            ("accept-edits", "Edit files without asking; still ask for commands"),
            ("auto-approve", "Run every tool without asking"),
        ],
        default_mode: Some("ask"),
    },
    Preset {
        id: "gemini",
        name: "Gemini CLI (ACP)",
        command: "gemini",
        args: &["--acp"],
        credentials: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        install_hint: "npm-only (`npm install -g @google/gemini-cli`): install it on the host or from a mirror, then `sbx agent \
                       install <sandbox> gemini --from-host`",
        modes: &[],
        default_mode: None,
    },
    Preset {
        id: "opencode",
        name: "OpenCode (ACP)",
        command: "opencode",
        args: &["acp"],
        credentials: &["ANTHROPIC_API_KEY", "OPENAI_API_KEY"],
        install_hint: "npm-only (`npm install -g opencode-ai`) or its release binary: install it on the host, then `sbx agent \
                       install <sandbox> opencode --from-host`",
        modes: &[],
        default_mode: None,
    },
    Preset {
        id: "openhands",
        name: "OpenHands (ACP)",
        command: "openhands",
        args: &["acp"],
        credentials: &["LLM_API_KEY"],
        install_hint: "`pip install openhands` (Python >= 3.12) and put `openhands` on PATH",
        modes: &[],
        default_mode: None,
    },
];

/// At most this many configured agents (each version of an entry stays in memory for the runtime's life).
const MAX_AGENTS: usize = 64;

/// The file custom ACP agents are read from, under the agent directory.
pub(crate) const CONFIG_FILE: &str = "acp.json";

/// One entry of `acp.json` (the API's type: `PUT /v1/agents/{id}` writes entries).
pub(crate) use crate::api::session::AcpAgentConfig as CustomAgent;

impl CustomAgent {
    pub(crate) fn launch(&self) -> AcpLaunch {
        AcpLaunch {
            args: self.args.clone(),
            env: self.env.clone(),
            credentials: self.credentials.clone(),
            install_hint: self
                .install_hint
                .clone()
                .unwrap_or_else(|| format!("install `{}` in the sandbox (see the agent's own documentation)", self.command)),
            default_mode: self.default_mode.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    agents: Vec<CustomAgent>,
}

/// A bad `acp.json`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConfigError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// It could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// It is not what it should be.
    #[error("{path} is not a valid ACP agent list: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads `dir/acp.json` (no file: no custom agents). Ids must be unique, must not shadow a built-in
/// agent, and follow the session-id alphabet.
pub(crate) fn load(dir: &Path, builtin: &[&str]) -> Result<Vec<CustomAgent>, ConfigError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let invalid = |message: String| ConfigError::Invalid { path: path.clone(), message };
    let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    check(&file.agents, builtin).map_err(invalid)?;
    Ok(file.agents)
}

/// What makes a list of custom agents valid: ids unique, in the session-id alphabet, not a built-in
/// agent's; a command; no credential among the plain settings.
fn check(agents: &[CustomAgent], builtin: &[&str]) -> Result<(), String> {
    if agents.len() > MAX_AGENTS {
        return Err(format!("{} agents: at most {MAX_AGENTS} can be configured; remove some first", agents.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in agents {
        let ok = !a.id.is_empty() && a.id.len() <= 64 && a.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!("agent id `{}` must be 1-64 letters, digits, `-` or `_`", a.id));
        }
        if builtin.contains(&a.id.as_str()) {
            return Err(format!("agent id `{}` is a built-in agent; pick another id", a.id));
        }
        if !seen.insert(a.id.clone()) {
            return Err(format!("agent id `{}` appears twice", a.id));
        }
        if a.command.trim().is_empty() {
            return Err(format!("agent `{}` has an empty `command`", a.id));
        }
        if let Some(k) = a.credentials.iter().find(|k| a.env.contains_key(*k)) {
            return Err(format!(
                "agent `{}` has its credential {k} in `env`, which is written to a file in the sandbox: leave it out; it comes from the session's environment",
                a.id
            ));
        }
    }
    Ok(())
}

/// Adds `agent` to `dir/acp.json`, or replaces the entry with its id (`PUT /v1/agents/{id}`).
/// The file is written whole (0600) and renamed into place, so a reader never sees half of it.
pub(crate) fn put(dir: &Path, agent: CustomAgent, builtin: &[&str]) -> Result<(), ConfigError> {
    let path = dir.join(CONFIG_FILE);
    let mut agents = load(dir, builtin)?;
    match agents.iter_mut().find(|a| a.id == agent.id) {
        Some(old) => *old = agent,
        None => agents.push(agent),
    }
    check(&agents, builtin).map_err(|message| ConfigError::Invalid { path: path.clone(), message })?;
    save(dir, agents)
}

/// Removes agent `id` from `dir/acp.json`; `false` when it was not there.
pub(crate) fn remove(dir: &Path, id: &str, builtin: &[&str]) -> Result<bool, ConfigError> {
    let mut agents = load(dir, builtin)?;
    let before = agents.len();
    agents.retain(|a| a.id != id);
    if agents.len() == before {
        return Ok(false);
    }
    save(dir, agents)?;
    Ok(true)
}

fn save(dir: &Path, agents: Vec<CustomAgent>) -> Result<(), ConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(CONFIG_FILE);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&ConfigFile { agents }).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| ConfigError::Write { path: path.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_agents_load_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), &["vibe"]).unwrap().is_empty());
        let write = |s: &str| std::fs::write(dir.path().join(CONFIG_FILE), s).unwrap();
        write(r#"{"agents": [{"id": "x", "command": "x-acp", "args": ["--stdio"], "credentials": ["X_KEY"]}]}"#);
        let agents = load(dir.path(), &["vibe"]).unwrap();
        assert_eq!(agents[0].launch().args, vec!["--stdio"]);
        assert!(agents[0].launch().install_hint.contains("x-acp"));
        write(r#"{"agents": [{"id": "vibe", "command": "v"}]}"#);
        assert!(load(dir.path(), &["vibe"]).unwrap_err().to_string().contains("built-in"));
        write(r#"{"agents": [{"id": "a b", "command": "v"}]}"#);
        assert!(load(dir.path(), &[]).unwrap_err().to_string().contains("letters"));
        write(r#"{"agents": [{"id": "a", "command": "v", "secret": "x"}]}"#);
        assert!(load(dir.path(), &[]).unwrap_err().to_string().contains("unknown field"));
        write(r#"{"agents": [{"id": "a", "command": "v", "credentials": ["A_KEY"], "env": {"A_KEY": "sk-1"}}]}"#);
        assert!(load(dir.path(), &[]).unwrap_err().to_string().contains("credential A_KEY in `env`"));
    }

    #[test]
    fn put_adds_replaces_and_remove_removes_entries() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let agent = |id: &str, cmd: &str| CustomAgent { id: id.into(), command: cmd.into(), ..Default::default() };
        put(dir.path(), agent("a", "a-acp"), &["vibe"]).unwrap();
        put(dir.path(), agent("b", "b-acp"), &["vibe"]).unwrap();
        put(dir.path(), agent("a", "a2-acp"), &["vibe"]).unwrap();
        let got: Vec<(String, String)> = load(dir.path(), &["vibe"]).unwrap().into_iter().map(|a| (a.id, a.command)).collect();
        assert_eq!(got, vec![("a".into(), "a2-acp".into()), ("b".into(), "b-acp".into())]);
        let mode = std::fs::metadata(dir.path().join(CONFIG_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(put(dir.path(), agent("vibe", "x"), &["vibe"]).unwrap_err().to_string().contains("built-in"));
        assert!(remove(dir.path(), "a", &["vibe"]).unwrap());
        assert!(!remove(dir.path(), "a", &["vibe"]).unwrap());
        assert_eq!(load(dir.path(), &["vibe"]).unwrap().len(), 1);
    }
}
