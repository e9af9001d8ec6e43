//! Session-environment wire types (`PUT`/`GET /v1/runtime/session-env`): how the host hands secrets
//! (the `sbx up --credentials` keys) to the runtime after it started, so they are never in a file, a
//! command line or the runtime's own environment inside the sandbox.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/runtime/session-env` body: the variables every agent session started from now on gets
/// (a session's own `env` wins). Replaces the previous set; kept only in the runtime's memory, never
/// written to disk or logged, so the host sends it again after the runtime restarts.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionEnv {
    /// Name → value.
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for SessionEnv {
    // Values are secrets: a `{:?}` (in a log line or a panic) shows the names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEnv").field("names", &self.env.keys().collect::<Vec<_>>()).finish()
    }
}

/// What the runtime holds: the names of the session variables, never their values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionEnvNames {
    /// Sorted names.
    pub names: Vec<String>,
}
