//! Agent and session wire types (`/v1/agents/*`, `/v1/sessions/*`), and the one event schema every
//! agent's stream is translated into.
//!
//! An [`Event`] is an envelope (session id, a per-session `sequence` that starts at 1 and has no gaps,
//! time, [`EventSource`]) around typed [`EventData`], plus the agent's native payload in `raw`. The
//! runtime writes each event to the session's journal on disk before anyone can read it, so a
//! client that resumes from the last sequence it saw gets every later event exactly once, even across
//! a runtime restart.
//!
//! A turn looks like: `turn.started` → `item.started` (the user's message) → `item.completed` →
//! `item.started` (assistant message) → `item.delta` × n → `item.completed` → (tool calls: `item.*` of
//! kind `tool_call` / `tool_result`, possibly with `permission.requested` → `permission.resolved`
//! between) → `turn.completed`. `error` may appear anywhere; `session.ended` is always last.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The `event:` name of every session server-sent event (its `data` is one [`Event`]).
pub const SESSION_EVENT: &str = "event";

/// Who produced an event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// Translated from the agent's own stream (`raw` holds the native payload).
    Agent,
    /// Made by the runtime to fill a gap the agent's stream leaves (turn boundaries, policy decisions,
    /// restarts, crashes).
    Runtime,
}

/// One event of a session: the envelope and its typed data.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The session.
    pub session_id: String,
    /// 1, 2, 3, … within the session, without gaps; also the SSE `id`.
    pub sequence: u64,
    /// When the runtime recorded it (RFC 3339, UTC).
    pub time: String,
    /// Agent (native) or runtime (synthetic).
    pub source: EventSource,
    /// Type and data.
    #[serde(flatten)]
    pub body: EventData,
    /// The agent's native payload this event was translated from, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
}

/// The event types and their data.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    /// The session exists and its agent is ready (first event of every session).
    #[serde(rename = "session.started")]
    SessionStarted(SessionStarted),
    /// A turn began (the runtime accepted a message).
    #[serde(rename = "turn.started")]
    TurnStarted(TurnStarted),
    /// An item (message, tool call, tool result, …) began.
    #[serde(rename = "item.started")]
    ItemStarted(Item),
    /// A piece of an item's content arrived.
    #[serde(rename = "item.delta")]
    ItemDelta(ItemDelta),
    /// An item is complete; `content` holds all of it.
    #[serde(rename = "item.completed")]
    ItemCompleted(Item),
    /// The agent asks to use a tool; answer at `/permissions/{permissionId}`.
    #[serde(rename = "permission.requested")]
    PermissionRequested(PermissionRequested),
    /// A permission request was answered (by a person or by the session's policy).
    #[serde(rename = "permission.resolved")]
    PermissionResolved(PermissionResolved),
    /// The agent asks the user a question; answer at `/questions/{questionId}`.
    #[serde(rename = "question.requested")]
    QuestionRequested(QuestionRequested),
    /// A question was answered or rejected.
    #[serde(rename = "question.resolved")]
    QuestionResolved(QuestionResolved),
    /// A turn ended (normally, with an error, or cancelled).
    #[serde(rename = "turn.completed")]
    TurnCompleted(TurnCompleted),
    /// Something went wrong; the session may continue.
    #[serde(rename = "error")]
    Error(ErrorData),
    /// The session is over; always the last event.
    #[serde(rename = "session.ended")]
    SessionEnded(SessionEnded),
}

impl EventData {
    /// The `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::SessionStarted(_) => "session.started",
            Self::TurnStarted(_) => "turn.started",
            Self::ItemStarted(_) => "item.started",
            Self::ItemDelta(_) => "item.delta",
            Self::ItemCompleted(_) => "item.completed",
            Self::PermissionRequested(_) => "permission.requested",
            Self::PermissionResolved(_) => "permission.resolved",
            Self::QuestionRequested(_) => "question.requested",
            Self::QuestionResolved(_) => "question.resolved",
            Self::TurnCompleted(_) => "turn.completed",
            Self::Error(_) => "error",
            Self::SessionEnded(_) => "session.ended",
        }
    }
}

/// Data of `session.started`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionStarted {
    /// The agent (`claude`, `codex`, `mock`).
    pub agent: String,
    /// The agent's own session or thread id, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_session_id: Option<String>,
    /// The model, when chosen or reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Working directory of the agent.
    pub cwd: String,
}

/// Data of `turn.started`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnStarted {
    /// `turn_1`, `turn_2`, … within the session.
    pub turn_id: String,
}

/// What an item is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A message from the user or the assistant.
    Message,
    /// The agent calls a tool.
    ToolCall,
    /// What a tool returned.
    ToolResult,
    /// The model's reasoning.
    Reasoning,
    /// A system notice (init, status).
    System,
}

/// Who an item is from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person (or program) driving the session.
    User,
    /// The agent.
    Assistant,
    /// The agent's system.
    System,
    /// A tool.
    Tool,
}

/// Where an item is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Still arriving.
    InProgress,
    /// Done.
    Completed,
    /// Done, unsuccessfully (a tool that failed or was denied).
    Failed,
}

/// A message, tool call, tool result or other unit of a turn.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The runtime's id (`item_1`, …, unique within the session).
    pub item_id: String,
    /// The agent's own id for it, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_item_id: Option<String>,
    /// The item this one belongs to (a tool result's call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// What it is.
    pub kind: ItemKind,
    /// Who it is from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// In progress, completed or failed.
    pub status: ItemStatus,
    /// The content so far (`item.started`) or all of it (`item.completed`).
    #[serde(default)]
    pub content: Vec<ContentPart>,
}

/// One typed piece of an item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// Structured data.
    Json {
        /// The value.
        json: serde_json::Value,
    },
    /// A tool invocation.
    ToolCall {
        /// The tool's name as the agent calls it (`Bash`, `exec_command`, `write`, …).
        name: String,
        /// The call's id, which its result refers to.
        call_id: String,
        /// The arguments.
        arguments: serde_json::Value,
    },
    /// What a tool returned.
    ToolResult {
        /// The call this answers.
        call_id: String,
        /// The output (text).
        output: String,
        /// Whether the tool failed or was refused.
        #[serde(default)]
        is_error: bool,
    },
    /// A file the agent read, wrote or changed.
    FileRef {
        /// The path.
        path: String,
        /// `read`, `write`, `patch`, `delete`.
        action: String,
        /// A unified diff, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    /// Reasoning text.
    Reasoning {
        /// The text.
        text: String,
    },
    /// A status line.
    Status {
        /// Short label.
        label: String,
        /// More detail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// Data of `item.delta`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ItemDelta {
    /// The item it belongs to.
    pub item_id: String,
    /// The new text (message text, reasoning, or a piece of a tool call's JSON arguments).
    pub delta: String,
}

/// What kind of thing a permission request is for (the `reads` approval policy allows only `read`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PermissionKind {
    /// Reading files or searching.
    Read,
    /// Writing or editing files.
    Edit,
    /// Running a command.
    Execute,
    /// Anything else (network, MCP tools…).
    Other,
}

/// Data of `permission.requested`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRequested {
    /// Answer with `POST /v1/sessions/{id}/permissions/{permissionId}`.
    pub permission_id: String,
    /// The tool the agent wants to use.
    pub tool_name: String,
    /// What for.
    pub kind: PermissionKind,
    /// One line for a person ("run `ls -la`", "write src/main.rs").
    pub title: String,
    /// The tool's input as the agent gave it.
    #[serde(default)]
    pub input: serde_json::Value,
    /// The tool-call item this is about, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
}

/// A decision on a permission request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PermissionDecision {
    /// Let this one call run.
    Allow,
    /// Let this and every later call of the same tool run (for the rest of the session).
    AllowAlways,
    /// Refuse; the agent is told.
    Deny,
}

impl PermissionDecision {
    /// Whether the tool may run.
    pub fn allows(self) -> bool {
        !matches!(self, Self::Deny)
    }
}

/// Data of `permission.resolved`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionResolved {
    /// The request.
    pub permission_id: String,
    /// The decision.
    pub decision: PermissionDecision,
    /// `user` (a reply), `policy` (the session's permission policy), or `runtime` (cancelled, ended).
    pub by: String,
    /// The message passed to the agent with a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Data of `question.requested`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuestionRequested {
    /// Answer with `POST /v1/sessions/{id}/questions/{questionId}`.
    pub question_id: String,
    /// The question.
    pub question: String,
    /// Suggested answers (may be empty: free text).
    #[serde(default)]
    pub options: Vec<String>,
}

/// Data of `question.resolved`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuestionResolved {
    /// The question.
    pub question_id: String,
    /// The answer; `None` when the question was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// Token counts of a turn.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The agent finished its answer.
    Completed,
    /// The agent (or the model behind it) failed; see the `error` event before this one.
    Failed,
    /// Cancelled by the user, or cut off by a runtime restart.
    Cancelled,
}

/// Data of `turn.completed`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnCompleted {
    /// The turn.
    pub turn_id: String,
    /// Completed, failed or cancelled.
    pub outcome: TurnOutcome,
    /// The model's stop reason when it gave one (`end_turn`, `max_tokens`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The assistant's final text of the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Token usage, when the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Cost in US dollars, when the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Wall time of the turn.
    pub duration_ms: u64,
}

/// Data of `error`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// What went wrong, for a person.
    pub message: String,
    /// A stable code: `model_auth`, `model_rate_limited`, `model_error`, `agent_crashed`,
    /// `agent_error`, `runtime_restarted`, `bad_input`.
    pub code: String,
    /// The HTTP status the model API answered, when that is what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Ended normally (by request, or the agent finished for good).
    Completed,
    /// The agent failed or crashed.
    Error,
    /// Stopped from outside (runtime shutdown or restart).
    Terminated,
}

/// Data of `session.ended`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionEnded {
    /// Why.
    pub reason: EndReason,
    /// `user`, `agent` or `runtime`.
    pub terminated_by: String,
    /// More detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Agents

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

// ---------------------------------------------------------------------------------------------
// Sessions

/// When a session may use tools without asking a person.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicy {
    /// Every request waits for a reply (`permission.requested`).
    #[default]
    Ask,
    /// Allow everything (the sandbox is the boundary).
    AllowAll,
    /// Allow reads, ask for the rest.
    AllowReads,
    /// Deny everything that needs permission.
    DenyAll,
}

/// An MCP server the agent should have.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServer {
    /// The name the agent knows it by.
    pub name: String,
    /// A local command (stdio transport)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// …its arguments…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// …and its environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Or a remote server (HTTP transport)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// …with these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// `claude`, `codex` or `mock`.
    pub agent: String,
    /// Your id for the session (letters, digits, `-`, `_`; at most 64); the runtime picks one if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Working directory (default: the runtime's root, or its cwd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Model to ask the agent for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Agent mode (see the agent's `modes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Which tool uses need a person's answer.
    #[serde(default)]
    pub permission_policy: PermissionPolicy,
    /// Extra environment for the agent process (e.g. the credentials the user chose to pass).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// MCP servers to give the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServer>,
    /// Directories of skills to give the agent (each holds a `SKILL.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// Where the agent's model API is: the runtime writes the agent's own configuration for it
    /// (Claude Code's `ANTHROPIC_BASE_URL`, a Codex model provider in a session `CODEX_HOME`).
    /// Default: the runtime's `SBX_LLM_BASE_URL_<AGENT>` or `SBX_LLM_BASE_URL` (what `sbx up
    /// --llm-base-url` sets), unless the session's `env` configures the agent itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmEndpoint>,
}

/// An LLM endpoint for an agent session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmEndpoint {
    /// The root URL of the model API (a gateway or proxy), with or without a trailing `/v1`:
    /// Claude Code calls `<root>/v1/messages`, Codex `<root>/v1/responses`.
    pub base_url: String,
}

/// `POST /v1/agents/{id}/check-llm`: is the agent's model API reachable from inside the sandbox?
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckLlmRequest {
    /// The endpoint to check (default: what a session of this agent would use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmEndpoint>,
    /// A session environment to resolve the endpoint from (as `CreateSessionRequest.env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The answer of `POST /v1/agents/{id}/check-llm`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckLlmResponse {
    /// The agent.
    pub agent: String,
    /// The URL checked (`None`: the agent uses its vendor's default endpoint, which is not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where the URL came from: `request`, `runtime` (SBX_LLM_BASE_URL…), `env` (the agent's own
    /// variable), or `default`.
    pub source: String,
    /// Whether an HTTP answer came back (any status: a gateway may answer 404 at its root).
    pub reachable: bool,
    /// The HTTP status that came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the check took.
    pub latency_ms: u64,
    /// What went wrong (connection refused, DNS, TLS, timeout…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a session can take messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Waiting for a message.
    Idle,
    /// A turn is running.
    Running,
    /// Over (see the `session.ended` event).
    Ended,
}

/// A session as `GET /v1/sessions/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The id.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// Idle, running or ended.
    pub state: SessionState,
    /// Working directory.
    pub cwd: String,
    /// The model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The mode asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The permission policy.
    pub permission_policy: PermissionPolicy,
    /// The agent's own session id, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_session_id: Option<String>,
    /// The sequence of the last event.
    pub last_sequence: u64,
    /// Turns started.
    pub turns: u64,
    /// Permission requests waiting for a reply.
    #[serde(default)]
    pub pending_permissions: Vec<String>,
    /// Questions waiting for an answer.
    #[serde(default)]
    pub pending_questions: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Why it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<SessionEnded>,
}

/// `GET /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SessionList {
    /// Every session this runtime has (including ended ones, from the journal).
    pub sessions: Vec<SessionInfo>,
}

/// `POST /v1/sessions/{id}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The user's message.
    pub text: String,
    /// Answer only when the turn has ended (at most `timeoutMs`), with the turn's result.
    #[serde(default)]
    pub wait: bool,
    /// With `wait`: how long to wait (default 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Answer to a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageResponse {
    /// The turn the message started.
    pub turn_id: String,
    /// The sequence of its `turn.started` event: follow the events from just before it.
    pub first_sequence: u64,
    /// With `wait`: the turn's `turn.completed` data (absent if the wait timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<TurnCompleted>,
}

/// Query of `GET /v1/sessions/{id}/events` and `/events/stream`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams, ToSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a sequence above this (the last one you have; `Last-Event-ID` wins for the stream).
    #[serde(default)]
    pub offset: Option<u64>,
    /// At most this many (paged reads only; default and maximum 1000).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `GET /v1/sessions/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// The events, in sequence order.
    pub events: Vec<Event>,
    /// Pass this as `offset` for the next page.
    pub next_offset: u64,
    /// Whether more events are already there.
    pub has_more: bool,
    /// Whether the session has ended (then no more will come).
    pub ended: bool,
}

/// One server-sent event of `/events/stream`, as it is on the wire: `event` is always `event`, `id`
/// the sequence, `data` one [`Event`] as JSON text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SessionSseEvent {
    /// Always `event`.
    pub event: String,
    /// The event's sequence; send it back as `Last-Event-ID` to resume.
    pub id: String,
    /// JSON text of an Event.
    pub data: String,
}

/// `POST /v1/sessions/{id}/permissions/{permissionId}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionReply {
    /// Allow, allow always, or deny.
    pub decision: PermissionDecision,
    /// With a denial: what to tell the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /v1/sessions/{id}/questions/{questionId}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuestionReply {
    /// The answer; leave it out to reject the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// `DELETE /v1/sessions/{id}` query.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EndSessionQuery {
    /// Also delete the journal (otherwise the ended session stays readable).
    #[serde(default)]
    pub forget: bool,
}

/// Answer of `POST /v1/sessions/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CancelResponse {
    /// `true` when a running turn was told to stop (its `turn.completed` says `cancelled`).
    pub cancelled: bool,
}
