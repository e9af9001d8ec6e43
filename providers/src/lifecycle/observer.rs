//! Progress of a lifecycle operation as events: the CLI draws them (a bar on a TTY, plain lines off
//! it, JSON lines under `--json`); tests and libraries use [`Silent`] or collect them.

use serde::Serialize;

use super::phases::{Outcome, Phase};

/// Something that happened while a sandbox was being made ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase started.
    PhaseStarted {
        /// Which.
        phase: Phase,
    },
    /// A phase ended.
    #[serde(rename_all = "camelCase")]
    PhaseFinished {
        /// Which.
        phase: Phase,
        /// How long it took.
        duration_ms: u64,
        /// How it ended.
        outcome: Outcome,
        /// Why it failed, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Bytes moved in a phase (the runtime upload).
    Progress {
        /// Which phase.
        phase: Phase,
        /// Bytes so far.
        done: u64,
        /// Bytes in all, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// A note for the user.
    Message {
        /// The text.
        text: String,
    },
}

/// Receives [`Event`]s. Called from async code: must not block.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event);
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: &Event) {}
}

/// Keeps every event (for tests).
#[derive(Debug, Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

impl Observer for Collect {
    fn event(&self, event: &Event) {
        self.0.lock().expect("events").push(event.clone());
    }
}
