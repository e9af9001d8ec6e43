//! Process API wire types (`/v1/processes/*`, `/v1/pty`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Runtime limits on processes; readable and settable at `/v1/processes/config`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessLimits {
    /// How many managed processes and PTYs may run at once.
    pub max_concurrent_processes: u32,
    /// Timeout for `POST /v1/processes/run` when the request gives none.
    pub default_run_timeout_ms: u64,
    /// The largest timeout a run request may ask for.
    pub max_run_timeout_ms: u64,
    /// Bytes of stdout (and, separately, stderr) a run keeps; the rest is dropped and flagged truncated.
    pub max_output_bytes: u64,
    /// Bytes of log each managed process keeps (oldest dropped first).
    pub max_log_bytes_per_process: u64,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            max_concurrent_processes: 64,
            default_run_timeout_ms: 60_000,
            max_run_timeout_ms: 3_600_000,
            max_output_bytes: 16 * 1024 * 1024,
            max_log_bytes_per_process: 8 * 1024 * 1024,
        }
    }
}
