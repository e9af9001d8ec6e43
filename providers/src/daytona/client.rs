//! Daytona's side of the HTTP: the bearer token on control-plane and toolbox requests, and which
//! failures may be sent again. Sending, retries and errors are the shared [`crate::http`] helper's.

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::http::{retryable_status, Http, Reply, Resend};
use crate::{Error, Result};

use super::NAME;

/// What to check when Daytona cannot be reached.
pub(super) const REACH_HINT: &str = "DAYTONA_API_URL";

/// The HTTP client for one API URL and key.
#[derive(Clone)]
pub(super) struct Api {
    pub(super) http: Http,
    pub(super) api_url: String,
    pub(super) api_key: String,
}

impl Api {
    /// A request to the control plane (`path` relative to the API URL, leading `/`).
    pub(super) fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.url(method, &format!("{}{path}", self.api_url.trim_end_matches('/')))
    }

    /// A request to an absolute URL (the toolbox proxy) with the same token.
    pub(super) fn url(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.client.request(method, url).bearer_auth(&self.api_key)
    }

    /// Sends `make()` until it succeeds, retrying 429, 5xx and connection failures per the policy; a
    /// request that timed out is never sent again (it may have been carried out). Only for idempotent
    /// requests. A failed answer is its typed error (about sandbox `sandbox` when not empty).
    pub(super) async fn send(&self, op: &str, sandbox: &str, make: impl Fn() -> RequestBuilder) -> Result<Reply> {
        let reply = self.http.send(op, make, |r| retryable_status(r.status), Resend::UnlessTimedOut).await?;
        self.http.ok(reply, op, Some(sandbox).filter(|s| !s.is_empty()))
    }

    /// [`Self::send`] and parse the JSON body.
    pub(super) async fn json(&self, op: &str, sandbox: &str, make: impl Fn() -> RequestBuilder) -> Result<Value> {
        let reply = self.send(op, sandbox, make).await?;
        json_of(&reply, op)
    }
}

/// The JSON body of a success (an error if it is not JSON: the API always answers JSON).
pub(super) fn json_of(reply: &Reply, op: &str) -> Result<Value> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| Error::Provider { provider: NAME, message: format!("{op}: the answer is not JSON: {e}") })
}

/// Whether the toolbox's answer to `execute` says the command did not run, so it may be sent again:
/// throttled, or the proxy could not reach the sandbox (502/503 while it changes state).
pub(super) fn execute_not_run(r: &Reply) -> bool {
    matches!(r.status.as_u16(), 429 | 502 | 503)
}
