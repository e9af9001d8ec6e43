//! Typed client methods for the session environment (`/v1/runtime/session-env`).

use std::collections::BTreeMap;

use reqwest::Method;

use super::{Client, Result};
use crate::api::session_env::{SessionEnv, SessionEnvNames};

impl Client {
    /// `PUT /v1/runtime/session-env`: from now on every new agent session gets `env` (replacing what
    /// was set before). Answers the names the runtime now holds.
    pub async fn set_session_env(&self, env: BTreeMap<String, String>) -> Result<SessionEnvNames> {
        self.send_json(self.request(Method::PUT, "/v1/runtime/session-env").json(&SessionEnv { env })).await
    }

    /// `GET /v1/runtime/session-env`: the names of the session variables the runtime holds (after a
    /// restart: none until the host sends them again).
    pub async fn session_env_names(&self) -> Result<SessionEnvNames> {
        self.send_json(self.request(Method::GET, "/v1/runtime/session-env")).await
    }
}
