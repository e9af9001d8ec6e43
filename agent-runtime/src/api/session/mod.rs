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

mod agents;
mod events;
mod requests;

pub use agents::*;
pub use events::*;
pub use requests::*;
