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

use serde::Deserialize;

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

/// The file custom ACP agents are read from, under the agent directory.
pub(crate) const CONFIG_FILE: &str = "acp.json";

/// One entry of `acp.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CustomAgent {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) command: String,
    #[serde(default)]
    pub(crate) args: Vec<String>,
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) credentials: Vec<String>,
    #[serde(default)]
    pub(crate) install_hint: Option<String>,
    #[serde(default)]
    pub(crate) modes: Vec<CustomMode>,
    #[serde(default)]
    pub(crate) default_mode: Option<String>,
}

/// A mode of a custom agent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomMode {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) description: String,
}

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

#[derive(Debug, Deserialize)]
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
    let mut seen = std::collections::BTreeSet::new();
    for a in &file.agents {
        let ok = !a.id.is_empty() && a.id.len() <= 64 && a.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(invalid(format!("agent id `{}` must be 1-64 letters, digits, `-` or `_`", a.id)));
        }
        if builtin.contains(&a.id.as_str()) {
            return Err(invalid(format!("agent id `{}` is a built-in agent; pick another id", a.id)));
        }
        if !seen.insert(a.id.clone()) {
            return Err(invalid(format!("agent id `{}` appears twice", a.id)));
        }
        if a.command.trim().is_empty() {
            return Err(invalid(format!("agent `{}` has an empty `command`", a.id)));
        }
    }
    Ok(file.agents)
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
    }
}
