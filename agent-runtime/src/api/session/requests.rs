//! `/v1/sessions/*`: creating a session, messages, events pages and streams, replies, ending it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::events::{EndReason, Event, PermissionDecision, SessionEnded, TurnCompleted};

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

/// `POST /v1/sessions/{id}/mode`: switch the agent's mode between turns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetModeRequest {
    /// One of the agent's modes (`GET /v1/agents/{id}`).
    pub mode: String,
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
    /// Why the client ends it, recorded in `session.ended`: `completed` (the default), `cancelled` or
    /// `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
}

/// Answer of `POST /v1/sessions/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CancelResponse {
    /// `true` when a running turn was told to stop (its `turn.completed` says `cancelled`).
    pub cancelled: bool,
}
