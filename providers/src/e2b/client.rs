//! Raw HTTP to the E2B control plane: the API key header, request timeouts, retries with jittered
//! backoff on 429/5xx (honouring `Retry-After` and `Should-Retry`), and errors that say what to do.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{ENV_API_KEY, NAME};
use crate::Error;

/// Per-request limit on the control plane (the SDK's default too).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Connection set-up limit.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` we honour before giving up on waiting.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retries).
    pub attempts: u32,
    /// First backoff; doubled per attempt, capped at `max_delay`, with jitter (50–100 %).
    pub base_delay: Duration,
    /// Backoff cap (not applied to `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1 << attempt.min(16)).min(self.max_delay);
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).expect("OS random source");
        let frac = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
        exp.mul_f64(frac)
    }
}

/// A control-plane answer.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The message of E2B's error body `{"code": N, "message": "..."}`, else the raw text.
    pub(super) fn message(&self) -> String {
        match self.json().get("message").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None => String::from_utf8_lossy(&self.body).trim().chars().take(300).collect(),
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers.get("should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => true,
        Some("false") => false,
        _ => status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
    }
}

/// The HTTP client for one API base URL and key.
#[derive(Clone)]
pub(super) struct Api {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) key: String,
    pub(super) retry: RetryPolicy,
}

impl Api {
    /// Sends `method path` with `body` (JSON), retrying on 429/5xx and transport errors. Returns the
    /// last answer whatever its status; only a transport failure after every try is an `Err`.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> crate::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url).timeout(REQUEST_TIMEOUT).header("X-API-KEY", &self.key);
            if !query.is_empty() {
                req = req.query(query);
            }
            for (k, v) in extra {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let last = attempt + 1 >= self.retry.attempts;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) if !last => {
                            tracing::debug!(%url, error = %e, "e2b: reading the answer failed; retrying");
                            tokio::time::sleep(self.retry.backoff(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                        Err(e) => return Err(transport_error(&url, e)),
                    };
                    if !last && should_retry(status, &headers) {
                        let wait = match retry_after(&headers) {
                            Some(d) if d <= MAX_RETRY_AFTER => d,
                            Some(_) => return Ok(Answer { status, headers, body }),
                            None => self.retry.backoff(attempt),
                        };
                        tracing::debug!(%url, %status, ?wait, "e2b: retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Ok(Answer { status, headers, body });
                }
                Err(e) if !last => {
                    tracing::debug!(%url, error = %e, "e2b: request failed; retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(transport_error(&url, e)),
            }
        }
    }
}

pub(super) fn transport_error(url: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::Timeout { op: format!("E2B request to {url}"), after: REQUEST_TIMEOUT };
    }
    Error::Unavailable {
        provider: NAME,
        message: format!("cannot reach {url} ({e}); check your network, or E2B_API_URL / E2B_DOMAIN if you set them"),
    }
}

/// The typed error for a non-2xx answer about `what` (sandbox `id` when there is one).
pub(super) fn api_error(a: &Answer, what: &str, id: Option<&str>) -> Error {
    let message = a.message();
    match a.status.as_u16() {
        401 | 403 => Error::Auth {
            provider: NAME,
            message: format!(
                "E2B refused the API key (HTTP {}: {message}); set {ENV_API_KEY} or run `sbx auth login e2b`",
                a.status.as_u16()
            ),
        },
        404 if id.is_some() => Error::NotFound { sandbox: id.unwrap_or_default().to_owned() },
        429 => Error::RateLimited { provider: NAME, retry_after: retry_after(&a.headers) },
        s => Error::Provider { provider: NAME, message: format!("{what} failed (HTTP {s}): {message}") },
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let p = RetryPolicy::default();
        for attempt in 0..10 {
            let d = p.backoff(attempt);
            let full = p.base_delay.saturating_mul(1 << attempt).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} vs {full:?}");
        }
    }

    #[test]
    fn should_retry_follows_the_header_then_the_status() {
        let mut h = HeaderMap::new();
        assert!(should_retry(StatusCode::TOO_MANY_REQUESTS, &h));
        assert!(should_retry(StatusCode::BAD_GATEWAY, &h));
        assert!(!should_retry(StatusCode::NOT_FOUND, &h));
        h.insert("should-retry", "false".parse().unwrap());
        assert!(!should_retry(StatusCode::SERVICE_UNAVAILABLE, &h));
        h.insert("should-retry", "true".parse().unwrap());
        assert!(should_retry(StatusCode::CONFLICT, &h));
    }

    #[test]
    fn metadata_queries_are_encoded_twice_like_the_sdk() {
        assert_eq!(percent_encode("a b=c&d"), "a%20b%3Dc%26d");
        assert_eq!(percent_encode("dev.sbx.managed"), "dev.sbx.managed");
    }
}
