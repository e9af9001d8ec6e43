//! Vercel's side of the HTTP: the bearer token and `teamId` on every request, which answers are worth
//! another try, lifecycle errors (`410`, `sandbox_stopped`), and reading NDJSON command logs. Sending,
//! retries and the typed errors are the shared [`crate::http`] helper's.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::http::{retryable_status, Http, Reply, Resend};
use crate::{Error, Result};

use super::credentials::{Credentials, ENV_PROJECT_ID, ENV_TEAM_ID};
use super::NAME;

/// What to check when the API cannot be reached.
pub(super) const REACH_HINT: &str = "SBX_VERCEL_API_URL if you set it";

/// The HTTP client for one API base URL and set of credentials.
#[derive(Clone)]
pub(super) struct Api {
    pub(super) http: Http,
    /// Base URL without a trailing `/` (e.g. `https://vercel.com/api`).
    pub(super) base: String,
    pub(super) creds: Credentials,
}

impl Api {
    /// A request to `path` (relative to the base, no leading `/`) with the token and `teamId`.
    pub(super) fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .client
            .request(method, format!("{}/{path}", self.base))
            .bearer_auth(&self.creds.token)
            .query(&[("teamId", self.creds.team_id.as_str())])
    }

    /// Sends an idempotent request until it succeeds, retrying 429, 5xx and connection failures per the
    /// policy (a request that timed out is not repeated). A refused request is its typed error (about
    /// sandbox `sandbox` when given).
    pub(super) async fn send(&self, op: &str, sandbox: Option<&str>, make: impl Fn() -> RequestBuilder) -> Result<Reply> {
        let reply = self.http.send(op, make, |r| retryable_status(r.status), Resend::UnlessTimedOut).await?;
        self.ok(reply, op, sandbox)
    }

    /// [`Self::send`] and the JSON body.
    pub(super) async fn json(&self, op: &str, sandbox: Option<&str>, make: impl Fn() -> RequestBuilder) -> Result<Value> {
        let reply = self.send(op, sandbox, make).await?;
        json_of(&reply, op)
    }

    /// A request that must not run twice (starting a command): only a 429 (nothing was done) is sent
    /// again.
    pub(super) async fn json_once(&self, op: &str, sandbox: Option<&str>, make: impl Fn() -> RequestBuilder) -> Result<Value> {
        let reply = self.http.send(op, make, |r| r.status == StatusCode::TOO_MANY_REQUESTS, Resend::Never).await?;
        let reply = self.ok(reply, op, sandbox)?;
        json_of(&reply, op)
    }

    /// `reply` when it is a success, else its typed error. A stopped session (410, or the error codes
    /// `sandbox_stopped` / `sandbox_stopping`) says so and what to do; a 403 also names the team and
    /// project variables (a token of another team is refused the same way as a bad one).
    pub(super) fn ok(&self, reply: Reply, op: &str, sandbox: Option<&str>) -> Result<Reply> {
        if reply.status.is_success() {
            return Ok(reply);
        }
        let code = reply.json().pointer("/error/code").and_then(Value::as_str).map(str::to_owned);
        let stopped = reply.status == StatusCode::GONE || matches!(code.as_deref(), Some("sandbox_stopped" | "sandbox_stopping"));
        if stopped && code.as_deref() != Some("sandbox_stream_closed") {
            if let Some(id) = sandbox {
                return Err(Error::Provider {
                    provider: NAME,
                    message: format!(
                        "{op}: sandbox `{id}` is stopped (its timeout ran out, or it was stopped); Vercel keeps \
                         nothing running in it: destroy it (`sbx down`) and make a new one"
                    ),
                });
            }
        }
        Err(match self.http.error(&reply, op, sandbox) {
            Error::Auth { provider, message } if reply.status == StatusCode::FORBIDDEN => Error::Auth {
                provider,
                message: format!("{message} (and that {ENV_TEAM_ID} and {ENV_PROJECT_ID} name a team and project it may use)"),
            },
            e => e,
        })
    }
}

/// The JSON body of a success (an error if it is not JSON: the API always answers JSON).
pub(super) fn json_of(reply: &Reply, op: &str) -> Result<Value> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| Error::Provider { provider: NAME, message: format!("{op}: the answer is not JSON: {e}") })
}

/// A command's output as the logs endpoint streams it.
#[derive(Debug, Default)]
pub(super) struct Logs {
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// Splits a command's NDJSON log stream into records: `{"stream": "stdout"|"stderr", "data": "<text>"}`
/// records are collected, an `{"stream": "error", "data": {"code", "message"}}` record is an error,
/// anything else is skipped (as the SDK does). Lines are split on `\n` across chunks, so a record cut
/// by the network is put back together.
#[derive(Debug, Default)]
pub(super) struct LogReader {
    logs: Logs,
    pending: Vec<u8>,
}

impl LogReader {
    /// Takes in one chunk of the body.
    pub(super) fn feed(&mut self, chunk: &[u8], op: &str) -> Result<()> {
        self.pending.extend_from_slice(chunk);
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            self.record(&line[..nl], op)?;
        }
        Ok(())
    }

    /// The end of the body: an unterminated last record counts too.
    pub(super) fn finish(mut self, op: &str) -> Result<Logs> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.iter().all(u8::is_ascii_whitespace) {
            self.record(&rest, op)?;
        }
        Ok(self.logs)
    }

    fn record(&mut self, line: &[u8], op: &str) -> Result<()> {
        let Ok(record) = serde_json::from_slice::<Value>(line) else { return Ok(()) };
        match (record.get("stream").and_then(Value::as_str), record.get("data")) {
            (Some("stdout"), Some(Value::String(s))) => self.logs.stdout.extend_from_slice(s.as_bytes()),
            (Some("stderr"), Some(Value::String(s))) => self.logs.stderr.extend_from_slice(s.as_bytes()),
            (Some("error"), Some(d)) => {
                let code = d.get("code").and_then(Value::as_str).unwrap_or("error");
                let message = d.get("message").and_then(Value::as_str).unwrap_or("the log stream failed");
                return Err(Error::Provider { provider: NAME, message: format!("{op}: {message} ({code})") });
            }
            _ => {}
        }
        Ok(())
    }
}

/// Reads a command's log stream (see [`LogReader`]) to its end.
pub(super) async fn read_logs(resp: reqwest::Response, op: &str, limit: Duration) -> Result<Logs> {
    let mut reader = LogReader::default();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout { op: format!("{NAME} {op}"), after: limit }
            } else {
                Error::Unavailable { provider: NAME, message: format!("{op}: the log stream broke: {e}") }
            }
        })?;
        reader.feed(&chunk, op)?;
    }
    reader.finish(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_records_are_read_across_chunks() {
        let body = concat!(
            r#"{"stream":"stdout","data":"hel"}"#,
            "\n",
            r#"{"stream":"stderr","data":"oops\n"}"#,
            "\n",
            r#"{"stream":"stdout","data":"lo\n"}"#,
            "\n",
            r#"{"something":"else"}"#,
            "\n",
            r#"{"stream":"stdout","data":"!"}"#,
        );
        let mut r = LogReader::default();
        // 7-byte chunks, so records span chunks.
        for c in body.as_bytes().chunks(7) {
            r.feed(c, "logs").expect("feed");
        }
        let logs = r.finish("logs").expect("logs");
        assert_eq!(logs.stdout, b"hello\n!");
        assert_eq!(logs.stderr, b"oops\n");

        let mut r = LogReader::default();
        let err = r#"{"stream":"error","data":{"code":"sandbox_stream_closed","message":"lost it"}}"#;
        let e = r.feed(format!("{err}\n").as_bytes(), "logs").expect_err("in-band error");
        assert!(e.to_string().contains("lost it (sandbox_stream_closed)"), "{e}");
    }
}
