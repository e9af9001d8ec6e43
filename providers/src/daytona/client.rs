//! Raw HTTP to Daytona's control plane and toolbox API: auth header, request timeouts, retries with
//! jittered backoff on 429/5xx (honouring `Retry-After`), and status → [`Error`] mapping.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::{Error, Result};

use super::{ENV_API_KEY, NAME};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubles per attempt, with jitter (50–100 % of the step).
    pub base: Duration,
    /// Cap of one wait (a longer `Retry-After` is cut to this).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 5, base: Duration::from_millis(250), max: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (0-based), given the server's `Retry-After`.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max);
        }
        let step = self.base.saturating_mul(1 << attempt.min(16)).min(self.max);
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).expect("OS random source");
        step.mul_f64(0.5 + f64::from(b[0]) / 510.0)
    }
}

/// What a non-2xx answer said.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

/// The outcome of one request that reached the server.
pub(crate) enum Answer {
    Ok(reqwest::Response),
    Failed(ApiError),
}

#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) api_url: String,
    pub(crate) api_key: String,
    pub(crate) retry: RetryPolicy,
}

/// Whether a failed answer is worth another try.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn parse_retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `message` of a NestJS error body (or the body itself, shortened).
fn message_of(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| match v.get("message") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")),
        _ => None,
    });
    from_json.unwrap_or_else(|| body.chars().take(300).collect::<String>().trim().to_owned())
}

impl Http {
    /// A request to the control plane (`path` relative to the API URL, leading `/`).
    pub(crate) fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.api_url.trim_end_matches('/'))).bearer_auth(&self.api_key)
    }

    /// A request to an absolute URL (the toolbox proxy) with the same token.
    pub(crate) fn url(&self, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url).bearer_auth(&self.api_key)
    }

    /// Sends once; transport failures are errors, HTTP failures are [`Answer::Failed`].
    pub(crate) async fn once(&self, req: RequestBuilder, op: &str) -> Result<Answer> {
        let after = req
            .try_clone()
            .and_then(|r| r.build().ok())
            .and_then(|r| r.timeout().copied())
            .unwrap_or(super::REQUEST_TIMEOUT);
        let resp = req.send().await.map_err(|e| transport(e, op, &self.api_url, after))?;
        if resp.status().is_success() {
            return Ok(Answer::Ok(resp));
        }
        let status = resp.status();
        let retry_after = parse_retry_after(&resp);
        let body = resp.text().await.unwrap_or_default();
        Ok(Answer::Failed(ApiError { status, message: message_of(&body), retry_after }))
    }

    /// Sends `make()` until it succeeds, retrying 429, 5xx and transport errors per the policy. Only
    /// for idempotent requests (and for creates, whose caller checks for an orphan before retrying).
    pub(crate) async fn send(
        &self,
        op: &str,
        sandbox: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0;
        loop {
            let last = attempt + 1 >= self.retry.attempts;
            match self.once(make(), op).await {
                Ok(Answer::Ok(resp)) => return Ok(resp),
                Ok(Answer::Failed(e)) if retryable(e.status) && !last => {
                    let wait = self.retry.delay(attempt, e.retry_after);
                    tracing::debug!(op, status = %e.status, ?wait, "daytona: retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(Answer::Failed(e)) => return Err(to_error(e, op, sandbox)),
                Err(e @ Error::Unavailable { .. }) if !last => {
                    let wait = self.retry.delay(attempt, None);
                    tracing::debug!(op, error = %e, ?wait, "daytona: retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
            attempt += 1;
        }
    }

    /// [`Self::send`] and parse the JSON body.
    pub(crate) async fn json(&self, op: &str, sandbox: &str, make: impl Fn() -> RequestBuilder) -> Result<Value> {
        let resp = self.send(op, sandbox, make).await?;
        resp.json::<Value>().await.map_err(|e| Error::Provider { provider: NAME, message: format!("{op}: bad JSON: {e}") })
    }
}

/// A reqwest failure that never got an HTTP answer.
pub(crate) fn transport(e: reqwest::Error, op: &str, api_url: &str, after: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout { op: format!("daytona {op}"), after };
    }
    Error::Unavailable {
        provider: NAME,
        message: format!("{op}: cannot reach {api_url}: {e} (check DAYTONA_API_URL and your network)"),
    }
}

/// The [`Error`] for a failed answer that won't be retried.
pub(crate) fn to_error(e: ApiError, op: &str, sandbox: &str) -> Error {
    match e.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Auth {
            provider: NAME,
            message: format!(
                "{op}: HTTP {} ({}). Set {ENV_API_KEY} to a valid API key or run `sbx auth login daytona`",
                e.status.as_u16(),
                e.message
            ),
        },
        StatusCode::NOT_FOUND if !sandbox.is_empty() => Error::NotFound { sandbox: sandbox.to_owned() },
        StatusCode::TOO_MANY_REQUESTS => Error::RateLimited { provider: NAME, retry_after: e.retry_after },
        s => Error::Provider { provider: NAME, message: format!("{op}: HTTP {}: {}", s.as_u16(), e.message) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_is_capped() {
        let p = RetryPolicy { attempts: 3, base: Duration::from_millis(100), max: Duration::from_secs(5) };
        assert_eq!(p.delay(0, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(p.delay(0, Some(Duration::from_secs(50))), Duration::from_secs(5));
        let d = p.delay(2, None);
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400), "{d:?}");
    }

    #[test]
    fn nest_messages() {
        assert_eq!(message_of(r#"{"statusCode":404,"message":"nope","error":"Not Found"}"#), "nope");
        assert_eq!(message_of(r#"{"message":["a","b"]}"#), "a; b");
        assert_eq!(message_of("plain"), "plain");
    }

    #[test]
    fn a_401_says_what_to_do() {
        let e = ApiError { status: StatusCode::UNAUTHORIZED, message: "Invalid credentials".into(), retry_after: None };
        let msg = to_error(e, "create", "").to_string();
        assert!(msg.contains("DAYTONA_API_KEY") && msg.contains("sbx auth login daytona"), "{msg}");
    }
}
