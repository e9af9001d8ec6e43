//! HTTP plumbing shared by the remote providers (E2B, Daytona, and the ones to come): one send loop
//! with a limit on every request, retries with jittered exponential backoff that honour `Retry-After`,
//! and one mapping of a refused request to a typed [`Error`] ([`Error::Api`] carries the provider's
//! request id, so a user can quote it to the provider's support).
//!
//! Each provider keeps its own `client.rs` for what is its own (auth headers, URLs, which answers mean
//! "try again"); nothing here knows a provider by name.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::{Error, Result};

/// How often and how patiently a remote provider retries a request.
///
/// The wait before retry `n` (0-based) is `base_delay · 2ⁿ`, capped at `max_delay`, times a random
/// 50–100 % (so many clients throttled together do not come back together). When the answer carries
/// `Retry-After`, that wait is used instead; one longer than `max_retry_after` is not waited for at all:
/// the request fails with [`Error::RateLimited`] saying how long the platform asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retries).
    pub attempts: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Backoff cap (not applied to `Retry-After`).
    pub max_delay: Duration,
    /// The longest `Retry-After` worth waiting for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The jittered backoff before retry `attempt` (0-based): 50–100 % of the capped exponential step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let step = self.base_delay.saturating_mul(1 << attempt.min(16)).min(self.max_delay);
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).expect("OS random source");
        step.mul_f64(0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0)
    }

    /// The wait before retry `attempt`, given the server's `Retry-After`; `None` when the server asks
    /// for longer than [`Self::max_retry_after`] (give up rather than hold the caller that long).
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(d) if d > self.max_retry_after => None,
            Some(d) => Some(d),
            None => Some(self.backoff(attempt)),
        }
    }
}

/// Which transport failures (no HTTP answer) a request may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Any, timeouts included: the server makes the request idempotent (E2B's control plane).
    Always,
    /// Connection failures only: a request that timed out may have been carried out, so it is not
    /// repeated.
    UnlessTimedOut,
    /// None: the request is not idempotent (running a command).
    Never,
}

impl Resend {
    fn allows(self, e: &Error) -> bool {
        match self {
            Self::Always => matches!(e, Error::Timeout { .. } | Error::Unavailable { .. }),
            Self::UnlessTimedOut => matches!(e, Error::Unavailable { .. }),
            Self::Never => false,
        }
    }
}

/// Response headers that carry the provider's id of a request, in the order they are looked for.
const REQUEST_ID_HEADERS: [&str; 3] = ["x-request-id", "request-id", "x-amzn-requestid"];

/// One HTTP answer, read whole (control-plane answers are small).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON, `Null` when it is not JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `message` of a JSON error body (a string, NestJS's list of strings, or Vercel's
    /// `{"error": {"code", "message"}}`), else the body itself, shortened.
    pub(crate) fn message(&self) -> String {
        let json = self.json();
        match json.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "),
            _ => match (json.pointer("/error/message").and_then(Value::as_str), json.pointer("/error/code").and_then(Value::as_str)) {
                (Some(m), Some(c)) => format!("{m} ({c})"),
                (Some(m), None) => m.to_owned(),
                _ => String::from_utf8_lossy(&self.body).trim().chars().take(300).collect(),
            },
        }
    }

    /// The provider's id of this request, when it sent one.
    pub(crate) fn request_id(&self) -> Option<String> {
        REQUEST_ID_HEADERS.iter().find_map(|name| {
            let v = self.headers.get(*name)?.to_str().ok()?.trim();
            (!v.is_empty()).then(|| v.to_owned())
        })
    }

    /// `Retry-After` in seconds (the HTTP-date form is not used by these APIs).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let v = self.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
        v.trim().parse::<u64>().ok().map(Duration::from_secs)
    }
}

/// Whether an answer is worth another try by default: throttled, or the server failed.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// An HTTP client for one provider's API (no credentials: each provider adds its own headers).
#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// The provider's name, for errors.
    pub(crate) provider: &'static str,
    /// The env var holding its API key, named in authentication errors.
    pub(crate) key_env: &'static str,
    /// What to check when the API cannot be reached (env vars that set its URL).
    pub(crate) reach_hint: &'static str,
    /// Limit of a request that sets none itself.
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
}

impl Http {
    /// Sends `req` once and reads the answer whole, whatever its status. An `Err` is a failure without
    /// an answer: [`Error::Timeout`] when the request's limit ran out, else [`Error::Unavailable`].
    pub(crate) async fn once(&self, op: &str, req: RequestBuilder) -> Result<Reply> {
        let (client, req) = req.build_split();
        let mut req = req.map_err(|e| Error::Provider { provider: self.provider, message: format!("{op}: bad request: {e}") })?;
        let after = *req.timeout_mut().get_or_insert(self.timeout);
        let mut url = req.url().clone();
        url.set_query(None);
        let resp = client.execute(req).await.map_err(|e| self.transport(e, op, url.as_str(), after))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp.bytes().await.map_err(|e| self.transport(e, op, url.as_str(), after))?;
        Ok(Reply { status, headers, body })
    }

    /// Sends `make()` until an answer `retry` does not want retried, or the policy's attempts run out,
    /// and returns the last answer whatever its status. Transport failures are retried as `resend`
    /// allows; the last one is the `Err`.
    pub(crate) async fn send(
        &self,
        op: &str,
        make: impl Fn() -> RequestBuilder,
        retry: impl Fn(&Reply) -> bool,
        resend: Resend,
    ) -> Result<Reply> {
        let mut attempt = 0;
        loop {
            let last = attempt + 1 >= self.retry.attempts;
            let wait = match self.once(op, make()).await {
                Ok(reply) if !last && retry(&reply) => match self.retry.wait(attempt, reply.retry_after()) {
                    Some(wait) => {
                        tracing::debug!(provider = self.provider, op, status = %reply.status, ?wait, "retrying");
                        wait
                    }
                    None => return Ok(reply),
                },
                Ok(reply) => return Ok(reply),
                Err(e) if !last && resend.allows(&e) => {
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(provider = self.provider, op, error = %e, ?wait, "retrying");
                    wait
                }
                Err(e) => return Err(e),
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The typed error for a refused request `op` (about sandbox `sandbox`, when it is about one).
    pub(crate) fn error(&self, reply: &Reply, op: &str, sandbox: Option<&str>) -> Error {
        let status = reply.status.as_u16();
        match (status, sandbox) {
            (401 | 403, _) => {
                let id = reply.request_id().map(|r| format!(", request id {r}")).unwrap_or_default();
                Error::Auth {
                    provider: self.provider,
                    message: format!(
                        "{op}: the API key was refused (HTTP {status}: {}{id}); set {} to a valid key or run \
                         `sbx auth login {}`",
                        reply.message(),
                        self.key_env,
                        self.provider
                    ),
                }
            }
            (404, Some(id)) => Error::NotFound { sandbox: id.to_owned() },
            (429, _) => Error::RateLimited { provider: self.provider, retry_after: reply.retry_after() },
            _ => Error::Api {
                provider: self.provider,
                op: op.to_owned(),
                status,
                message: reply.message(),
                request_id: reply.request_id(),
            },
        }
    }

    /// `reply` when it is a success, else its typed error.
    pub(crate) fn ok(&self, reply: Reply, op: &str, sandbox: Option<&str>) -> Result<Reply> {
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(self.error(&reply, op, sandbox))
        }
    }

    /// A reqwest failure that got no HTTP answer (`after`: the request's limit).
    pub(crate) fn transport(&self, e: reqwest::Error, op: &str, url: &str, after: Duration) -> Error {
        if e.is_timeout() {
            return Error::Timeout { op: format!("{} {op}", self.provider), after };
        }
        Error::Unavailable {
            provider: self.provider,
            message: format!("{op}: cannot reach {url} ({e}); check your network, or {}", self.reach_hint),
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
