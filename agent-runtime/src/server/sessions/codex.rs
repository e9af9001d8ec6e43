//! The `codex` adapter (being written): Codex's `app-server` JSON-RPC over stdio.

use super::driver::{AgentDriver, AgentGone, SessionSettings, TurnCtx, TurnEnd};

/// Codex behind one session.
pub(crate) struct CodexDriver;

impl CodexDriver {
    pub(crate) async fn start(_settings: SessionSettings) -> Result<Self, AgentGone> {
        Err(AgentGone("the codex adapter is not in this build yet".into()))
    }
}

#[async_trait::async_trait]
impl AgentDriver for CodexDriver {
    async fn turn(&mut self, _text: &str, _ctx: &TurnCtx) -> Result<TurnEnd, AgentGone> {
        Err(AgentGone("the codex adapter is not in this build yet".into()))
    }
    async fn shutdown(&mut self) {}
}
