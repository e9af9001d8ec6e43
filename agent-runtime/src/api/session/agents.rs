//! `/v1/agents/*`: what agents the runtime knows and how it installs them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One agent the runtime knows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// `claude`, `codex` or `mock`.
    pub id: String,
    /// A person's name for it.
    pub name: String,
    /// Whether its binary is present (the mock agent always is).
    pub installed: bool,
    /// Its version (`--version`), when installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its binary, when installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What the adapter supports.
    pub capabilities: AgentCapabilities,
    /// Models it can be asked for (may be incomplete: agents accept others).
    #[serde(default)]
    pub models: Vec<String>,
    /// Its modes (e.g. permission modes).
    #[serde(default)]
    pub modes: Vec<AgentMode>,
    /// How to install it when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_hint: Option<String>,
}

/// What an agent's adapter can do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    /// Streams text as it is generated.
    pub text_deltas: bool,
    /// Reports tool calls and results.
    pub tool_calls: bool,
    /// Asks before using tools (`permission.requested`).
    pub permissions: bool,
    /// Asks the user questions (`question.requested`).
    pub questions: bool,
    /// A turn can be cancelled.
    pub cancel: bool,
    /// Reports token usage.
    pub usage: bool,
    /// Takes MCP servers.
    pub mcp: bool,
    /// Continues after a runtime restart.
    pub resume: bool,
}

/// One mode of an agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentMode {
    /// The id to pass as `mode`.
    pub id: String,
    /// What it does.
    pub description: String,
}

/// `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AgentList {
    /// Every agent.
    pub agents: Vec<AgentInfo>,
}

/// `POST /v1/agents/{id}/install`. `source` picks where from; without one, `fromPath` means `path`,
/// `mirrorUrl` means `mirror`, and otherwise it is `auto`: already installed (unless `reinstall`),
/// then the mirror when one is configured, the vendor's release channel, the agent's PyPI wheel; the
/// first that works wins, and an error lists what was tried.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallAgentRequest {
    /// Install even when a binary is already present.
    #[serde(default)]
    pub reinstall: bool,
    /// The version to fetch from a mirror (default `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A binary already in the sandbox (e.g. uploaded from the host) to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    /// URL template of a mirror: `{agent}`, `{version}`, `{os}` and `{arch}` are filled in. The
    /// expected SHA-256 is read from the same URL plus `.sha256` unless `sha256` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
    /// Expected SHA-256 (hex) of the binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `auto`, `image` (only what is already there), `path`, `mirror`, `vendor` or `pip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Base URL of the vendor's release channel, laid out as the vendor publishes it (default: the
    /// runtime's `SBX_CLAUDE_RELEASES_URL` / `SBX_CODEX_RELEASES_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_url: Option<String>,
    /// A Python package index for `pip` (default: pip's own configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pip_index_url: Option<String>,
}

/// One install source that was tried and did not work.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstallAttempt {
    /// The source.
    pub source: String,
    /// Why it did not work.
    pub error: String,
}

/// Result of an install.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstallAgentResponse {
    /// The agent as it is now.
    pub agent: AgentInfo,
    /// Where it came from: `present`, `path`, `mirror`, `vendor` or `pip`.
    pub source: String,
    /// Whether anything changed.
    pub changed: bool,
    /// The version installed from a channel (as the channel names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_version: Option<String>,
    /// Sources tried before the one that worked (`auto`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<InstallAttempt>,
    /// How long the install took.
    #[serde(default)]
    pub duration_ms: u64,
}

/// An ACP agent as configuration, no code (`PUT /v1/agents/{id}`, or an entry of the runtime's
/// `<state>/agents/acp.json`): how to start it and what it needs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcpAgentConfig {
    /// Its id (1-64 letters, digits, `-`, `_`; not a built-in agent's).
    pub id: String,
    /// Its display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The command that speaks ACP on its stdio, looked up on `PATH` (or a path).
    pub command: String,
    /// Its arguments (`["acp"]`, `["--acp"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Plain settings for its environment. Credentials do not go here: name them in `credentials`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// The environment variables its credentials are read from (names only; the values come from
    /// the session's environment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// How to install it when it is missing (shown by `sbx agent ls` and in the error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_hint: Option<String>,
    /// Its modes (for `sbx agent ls`; the agent's own list is what counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<AcpModeConfig>,
    /// The mode a session gets when it asks for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<String>,
}

/// A mode of a configured ACP agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AcpModeConfig {
    /// The mode's id, as the agent names it.
    pub id: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
}
