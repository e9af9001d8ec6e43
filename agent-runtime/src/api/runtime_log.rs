//! Runtime log wire types (`GET /v1/runtime/logs`).

use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

/// `GET /v1/runtime/logs` query.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[into_params(parameter_in = Query)]
pub struct RuntimeLogQuery {
    /// Keep the response open and send lines as they are appended (like `tail -f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
    /// Start with the last this many lines instead of the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
}
