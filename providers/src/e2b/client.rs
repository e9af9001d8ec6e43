//! E2B's side of the control-plane HTTP: the API key header, which answers are worth another try
//! (E2B's `Should-Retry` header), and metadata query encoding. Sending, retries and errors are the
//! shared [`crate::http`] helper's.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::http::{retryable_status, Http, Reply, Resend};

/// Per-request limit on the control plane (the SDK's default too).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Connection set-up limit.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to check when E2B cannot be reached.
pub(super) const REACH_HINT: &str = "E2B_API_URL / E2B_DOMAIN if you set them";

/// E2B's answer to "try again?": its `Should-Retry` header when present, else 429 and 5xx.
fn should_retry(r: &Reply) -> bool {
    match r.headers.get("should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => true,
        Some("false") => false,
        _ => retryable_status(r.status),
    }
}

/// The HTTP client for one API base URL and key.
#[derive(Clone)]
pub(super) struct Api {
    pub(super) http: Http,
    pub(super) base: String,
    pub(super) key: String,
}

impl Api {
    /// Sends `method path` with `body` (JSON) and `extra` headers, retrying per the policy (E2B's
    /// control plane is safe to repeat: creates carry an `Idempotency-Key`). Returns the last answer
    /// whatever its status; only a failure without an answer is an `Err`.
    pub(super) async fn call(
        &self,
        op: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> crate::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let make = || {
            let mut req = self.http.client.request(method.clone(), &url).header("X-API-KEY", &self.key);
            if !query.is_empty() {
                req = req.query(query);
            }
            for (k, v) in extra {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            req
        };
        self.http.send(op, make, should_retry, Resend::Always).await
    }

    /// [`Self::call`], then the typed error unless the answer is a success.
    pub(super) async fn call_ok(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        sandbox: Option<&str>,
    ) -> crate::Result<Reply> {
        let reply = self.call(op, method, path, &[], body, &[]).await?;
        self.http.ok(reply, op, sandbox)
    }
}

/// Whether the answer is a success or one of `also` (statuses the caller treats as done).
pub(super) fn is_done(r: &Reply, also: StatusCode) -> bool {
    r.status.is_success() || r.status == also
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
    use reqwest::header::HeaderMap;

    fn reply(status: u16, should_retry: Option<&str>) -> Reply {
        let mut headers = HeaderMap::new();
        if let Some(v) = should_retry {
            headers.insert("should-retry", v.parse().unwrap());
        }
        Reply { status: StatusCode::from_u16(status).unwrap(), headers, body: Default::default() }
    }

    #[test]
    fn should_retry_follows_the_header_then_the_status() {
        assert!(should_retry(&reply(429, None)));
        assert!(should_retry(&reply(502, None)));
        assert!(!should_retry(&reply(404, None)));
        assert!(!should_retry(&reply(503, Some("false"))));
        assert!(should_retry(&reply(409, Some("true"))));
    }

    #[test]
    fn metadata_queries_are_encoded_twice_like_the_sdk() {
        assert_eq!(percent_encode("a b=c&d"), "a%20b%3Dc%26d");
        assert_eq!(percent_encode("dev.sbx.managed"), "dev.sbx.managed");
    }
}
