//! The Anthropic Messages API (`POST /v1/messages`).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::recorded::Recorded;
use super::script::Reply;
use super::server::Shared;
use super::wire::{
    ev, hang, json_response, output_tokens, split_chunks, sse_response, sse_response_then, status_of, Event,
};
use super::DEFAULT_TEXT;

const TEXT_CHUNKS: usize = 3;

pub(super) async fn reply(shared: &Shared, req: &Recorded, reply: Reply, input_tokens: u64) -> Response {
    let model = req.model().unwrap_or("claude-sonnet-4-5").to_string();
    let id = format!("msg_fake{:020}", shared.next_id());
    let request_id = format!("req_fake{:020}", shared.next_id());
    let mut gate = None;
    let (text, chunks, delay) = match reply {
        Reply::Error { status, retry_after } => return error(status, retry_after, &request_id),
        Reply::Hang => return hang(shared).await,
        Reply::Stall => {
            let events = vec![message_start(&id, &model, input_tokens), ev("ping", json!({"type": "ping"}))];
            let events = if req.stream { events } else { Vec::new() };
            return sse_response_then(shared, events, &[("request-id", request_id)], true);
        }
        Reply::ToolUse { name, input } => {
            let tool_id = format!("toolu_fake{:016}", shared.next_id());
            return tool_use(shared, req.stream, &id, &request_id, &model, input_tokens, &tool_id, &name, &input);
        }
        Reply::Text(t) => (t, TEXT_CHUNKS, Duration::ZERO),
        Reply::SlowText { text, chunks, delay_ms } => (text, chunks, Duration::from_millis(delay_ms)),
        Reply::With(_) => (DEFAULT_TEXT.to_string(), TEXT_CHUNKS, Duration::ZERO),
        Reply::Held { text, release } => {
            gate = Some(release);
            (text, TEXT_CHUNKS, Duration::ZERO)
        }
    };
    let out = output_tokens(&text);
    if !req.stream {
        let pieces = split_chunks(&text, chunks).len() as u32;
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay * pieces) => {}
                _ = shared.cancel.cancelled() => {}
            }
        }
        let content = json!([{"type": "text", "text": text}]);
        return message_json(&id, &request_id, &model, content, "end_turn", input_tokens, out);
    }
    let mut events = vec![message_start(&id, &model, input_tokens), ev("ping", json!({"type": "ping"}))];
    events.push(ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for (i, piece) in split_chunks(&text, chunks).into_iter().enumerate() {
        let mut e = ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        );
        e.delay = delay;
        if i == 1 {
            e.gate = gate.take();
        }
        events.push(e);
    }
    // A text of one piece: hold before the block ends.
    let mut stop = ev("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    stop.gate = gate.take();
    events.push(stop);
    events.extend(message_end("end_turn", out));
    sse_response(shared, events, &[("request-id", request_id)])
}

#[allow(clippy::too_many_arguments)]
fn tool_use(
    shared: &Shared,
    stream: bool,
    id: &str,
    request_id: &str,
    model: &str,
    input_tokens: u64,
    tool_id: &str,
    name: &str,
    input: &Value,
) -> Response {
    let json_text = input.to_string();
    let out = output_tokens(&json_text) + 10;
    if !stream {
        let content = json!([{"type": "tool_use", "id": tool_id, "name": name, "input": input}]);
        return message_json(id, request_id, model, content, "tool_use", input_tokens, out);
    }
    let mut events = vec![message_start(id, model, input_tokens), ev("ping", json!({"type": "ping"}))];
    events.push(ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
    ));
    // The real API opens with an empty partial_json, then the JSON text in pieces.
    let pieces = std::iter::once(String::new()).chain(split_chunks(&json_text, 3));
    for piece in pieces {
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": piece}}),
        ));
    }
    events.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    events.extend(message_end("tool_use", out));
    sse_response(shared, events, &[("request-id", request_id.to_string())])
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

fn message_start(id: &str, model: &str, input_tokens: u64) -> Event {
    ev(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage(input_tokens, 1),
        }}),
    )
}

fn message_end(stop_reason: &str, output_tokens: u64) -> Vec<Event> {
    vec![
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                   "usage": {"output_tokens": output_tokens}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

#[allow(clippy::too_many_arguments)]
fn message_json(
    id: &str,
    request_id: &str,
    model: &str,
    content: Value,
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Response {
    let body = json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": null, "usage": usage(input_tokens, output_tokens),
    });
    let mut resp = json_response(StatusCode::OK, &body, None);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// The real API's error bodies (docs.anthropic.com "Errors").
pub(super) fn error(status: u16, retry_after: Option<u32>, request_id: &str) -> Response {
    let (kind, message) = match status {
        400 => ("invalid_request_error", "There was an issue with the format or content of your request."),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
        404 => ("not_found_error", "The requested resource could not be found."),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429 => ("rate_limit_error", "This request would exceed the rate limit for your organization."),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id});
    let mut resp = json_response(status_of(status), &body, retry_after);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}
