//! The script: the replies a test queues, and which requests consume them.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::recorded::{tools_of, Recorded};
use super::DEFAULT_TEXT;

/// One scripted answer to a conversation request.
#[derive(Clone)]
pub enum Reply {
    /// Text streamed as several deltas; stop reason `end_turn` (Anthropic) / status `completed` (OpenAI).
    Text(String),
    /// A tool call. Anthropic: a `tool_use` block whose input arrives as `input_json_delta` pieces,
    /// stop reason `tool_use`. OpenAI: a `function_call` output item with argument deltas (or a
    /// `custom_tool_call` when the request offers `name` as a `custom` tool; `input` is then the raw
    /// string, e.g. an apply_patch body).
    ToolUse { name: String, input: Value },
    /// The real API's error body for `status` (401, 429, 500, ...), with `Retry-After` when given.
    Error { status: u16, retry_after: Option<u32> },
    /// Accept the request and never answer, not even the status line (until the server stops).
    /// Other requests are unaffected. Claude Code gives up after `API_TIMEOUT_MS`; codex 0.163 waits
    /// forever (its `stream_idle_timeout_ms` only starts once headers arrived) — see [`Reply::Stall`].
    Hang,
    /// Answer `200` and open the stream (`message_start` / `response.created`), then go silent
    /// until the server stops: trips the clients' stream idle timeouts.
    Stall,
    /// `text` streamed as `chunks` deltas with `delay_ms` before each.
    SlowText { text: String, chunks: usize, delay_ms: u64 },
    /// Decide when the request arrives (e.g. call a tool by a name read from the request).
    With(Responder),
    /// Anthropic: `text` as three deltas, holding the stream open after the first until `release` is
    /// notified (a test checks the first delta arrived while the answer is still open). OpenAI: as
    /// [`Reply::Text`].
    Held { text: String, release: Arc<tokio::sync::Notify> },
}

/// A reply computed from the request it answers; see [`Reply::with`].
#[derive(Clone)]
pub struct Responder(Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>);

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Responder(..)")
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Reply::ToolUse { name, input } => {
                f.debug_struct("ToolUse").field("name", name).field("input", input).finish()
            }
            Reply::Error { status, retry_after } => {
                f.debug_struct("Error").field("status", status).field("retry_after", retry_after).finish()
            }
            Reply::Hang => f.write_str("Hang"),
            Reply::Stall => f.write_str("Stall"),
            Reply::SlowText { text, chunks, delay_ms } => f
                .debug_struct("SlowText")
                .field("text", text)
                .field("chunks", chunks)
                .field("delay_ms", delay_ms)
                .finish(),
            Reply::With(r) => f.debug_tuple("With").field(r).finish(),
            Reply::Held { text, .. } => f.debug_struct("Held").field("text", text).finish_non_exhaustive(),
        }
    }
}

impl Reply {
    /// [`Reply::Text`].
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// [`Reply::ToolUse`].
    pub fn tool(name: impl Into<String>, input: Value) -> Self {
        Reply::ToolUse { name: name.into(), input }
    }

    /// [`Reply::Error`] without `Retry-After`.
    pub fn error(status: u16) -> Self {
        Reply::Error { status, retry_after: None }
    }

    /// [`Reply::With`]: `f` sees the request and picks the reply.
    pub fn with(f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Reply::With(Responder(Arc::new(f)))
    }
}

/// The default rule: a `/v1/messages` or `/v1/responses` request is a conversation request when
/// its body offers at least one tool. Observed: Claude Code 2.1.330's main agent sends its 12 tools
/// (`Agent`, `Bash`, `Edit`, `Read`, `Write`, ...) on every turn; its helper queries go through the
/// same streaming pipeline but with `"tools": []` (seen: `tool_use_summary_generation` with
/// `CLAUDE_CODE_EMIT_TOOL_USE_SUMMARIES=1`, concurrent with the main turn) or without `tools` (the
/// non-streaming `max_tokens: 1` "quota" probe). Codex 0.163 sends its tools on every turn.
pub fn is_conversation(req: &Recorded) -> bool {
    !tools_of(&req.body).is_empty()
}

/// Resolves [`Reply::With`] (a responder may itself answer `With`; bounded).
pub(super) fn resolve(mut reply: Reply, req: &Recorded) -> Reply {
    for _ in 0..8 {
        match reply {
            Reply::With(Responder(f)) => reply = f(req),
            other => return other,
        }
    }
    Reply::text(DEFAULT_TEXT)
}
