//! Response plumbing both APIs share: JSON bodies, server-sent event streams, hanging answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::recorded::Api;
use super::server::Shared;

pub(super) fn json_response(status: StatusCode, body: &Value, retry_after: Option<u32>) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

pub(super) fn models(api: Api) -> Response {
    let body = match api {
        Api::Anthropic => json!({
            "data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                      "created_at": "2025-09-29T00:00:00Z"}],
            "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5",
        }),
        Api::OpenAi => json!({
            "object": "list",
            "data": [{"id": "gpt-test", "object": "model", "created": 1_700_000_000, "owned_by": "fake"}],
        }),
    };
    json_response(StatusCode::OK, &body, None)
}

pub(super) fn not_found(api: Api, method: &Method, path: &str) -> Response {
    let message = format!("fake LLM: no route for {method} {path}");
    let body = match api {
        Api::Anthropic => {
            json!({"type": "error", "error": {"type": "not_found_error", "message": message}})
        }
        Api::OpenAi => {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "unknown_url"}})
        }
    };
    json_response(StatusCode::NOT_FOUND, &body, None)
}

pub(super) fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// One server-sent event, sent after `delay`.
pub(super) struct Event {
    pub(super) name: String,
    pub(super) data: Value,
    pub(super) delay: Duration,
    /// Sent only once this is notified ([`super::Reply::Held`]).
    pub(super) gate: Option<std::sync::Arc<tokio::sync::Notify>>,
}

pub(super) fn ev(name: &str, data: Value) -> Event {
    Event { name: name.to_string(), data, delay: Duration::ZERO, gate: None }
}

/// Streams `events` as `event: NAME\ndata: JSON\n\n`, honouring delays; ends early when the
/// client goes away or the server stops.
pub(super) fn sse_response(shared: &Shared, events: Vec<Event>, extra: &[(&'static str, String)]) -> Response {
    sse_response_then(shared, events, extra, false)
}

/// [`sse_response`], and with `hold` the stream then stays open, silent, until the server stops.
pub(super) fn sse_response_then(
    shared: &Shared,
    events: Vec<Event>,
    extra: &[(&'static str, String)],
    hold: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let cancel = shared.cancel.clone();
    tokio::spawn(async move {
        for e in events {
            if !e.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(e.delay) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            if let Some(gate) = &e.gate {
                tokio::select! {
                    _ = gate.notified() => {}
                    _ = cancel.cancelled() => return,
                    _ = tx.closed() => return,
                }
            }
            let chunk = format!("event: {}\ndata: {}\n\n", e.name, e.data);
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
        if hold {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tx.closed() => {}
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    resp
}

/// Waits until the server stops, then answers 503 (the client normally gives up first).
pub(super) async fn hang(shared: &Shared) -> Response {
    shared.cancel.cancelled().await;
    json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": {"message": "fake LLM stopped"}}), None)
}

/// `text` in `n` pieces on char boundaries (none for an empty text).
pub(super) fn split_chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

pub(super) fn output_tokens(text: &str) -> u64 {
    (text.len() / 4).max(1) as u64
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_on_char_boundaries() {
        assert_eq!(split_chunks("héllo!", 3), vec!["hé", "ll", "o!"]);
        assert_eq!(split_chunks("ab", 5), vec!["a", "b"]);
        assert!(split_chunks("", 3).is_empty());
    }
}
