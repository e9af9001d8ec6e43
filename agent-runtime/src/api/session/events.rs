//! The event schema: the envelope and the typed data of every event type.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// Ended by a client that gave up on it (e.g. Ctrl-C), saying so with `reason=cancelled`.
    Cancelled,
    /// Ended by a client whose time limit ran out, saying so with `reason=timeout`.
    Timeout,
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
