//! `/v1/processes/*`: run-to-completion and managed processes.

use utoipa_axum::router::OpenApiRouter;

use super::fs::FsRoot;
use super::AppState;
use crate::api::process::ProcessLimits;

/// The table of managed processes and the current limits.
pub struct ProcessManager {
    #[allow(dead_code)]
    limits: std::sync::Mutex<ProcessLimits>,
    #[allow(dead_code)]
    fs: FsRoot,
}

impl ProcessManager {
    /// An empty table.
    pub fn new(limits: ProcessLimits, fs: FsRoot) -> Self {
        Self { limits: std::sync::Mutex::new(limits), fs }
    }
    /// Kills every managed process (server shutdown).
    pub async fn kill_all(&self) {}
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
