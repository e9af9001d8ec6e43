//! The OpenAI Responses API (`POST /v1/responses`).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::recorded::Recorded;
use super::script::Reply;
use super::server::Shared;
use super::wire::{
    ev, hang, json_response, now_secs, output_tokens, split_chunks, sse_response, sse_response_then, status_of, Event,
};
use super::DEFAULT_TEXT;

const TEXT_CHUNKS: usize = 3;

/// Numbers events (`sequence_number`) as the real API does.
struct Seq(u64);

impl Seq {
    fn ev(&mut self, name: &str, mut data: Value) -> Event {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), json!(name));
            o.insert("sequence_number".into(), json!(self.0));
        }
        self.0 += 1;
        ev(name, data)
    }
}

pub(super) async fn reply(shared: &Shared, req: &Recorded, reply: Reply, input_tokens: u64) -> Response {
    let model = req.model().unwrap_or("gpt-test").to_string();
    let resp_id = format!("resp_fake{:020}", shared.next_id());
    let request_id = format!("req_fake{:020}", shared.next_id());
    let (item, events_mid, out, delay) = match reply {
        Reply::Error { status, retry_after } => return error(status, retry_after, &request_id),
        Reply::Hang => return hang(shared).await,
        Reply::Stall => {
            let created = json!({"id": resp_id, "object": "response", "created_at": now_secs(),
                                 "status": "in_progress", "model": model, "output": []});
            let mut seq = Seq(0);
            let events = vec![
                seq.ev("response.created", json!({"response": created.clone()})),
                seq.ev("response.in_progress", json!({"response": created})),
            ];
            let events = if req.stream { events } else { Vec::new() };
            return sse_response_then(shared, events, &[("x-request-id", request_id)], true);
        }
        Reply::ToolUse { name, input } => {
            let custom = req.tool(&name).and_then(|t| t.get("type")).and_then(Value::as_str) == Some("custom");
            let call_id = format!("call_fake{:016}", shared.next_id());
            if custom {
                let text = match &input {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let item_id = format!("ctc_fake{:016}", shared.next_id());
                let item = json!({"id": item_id, "type": "custom_tool_call", "status": "completed",
                                  "call_id": call_id, "name": name, "input": text});
                let mut mid = vec![(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": {"id": item_id, "type": "custom_tool_call",
                           "status": "in_progress", "call_id": call_id, "name": name, "input": ""}}),
                )];
                for piece in split_chunks(&text, 3) {
                    mid.push((
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                    ));
                }
                mid.push((
                    "response.custom_tool_call_input.done",
                    json!({"item_id": item_id, "output_index": 0, "input": text}),
                ));
                (item, mid, output_tokens(&text) + 10, Duration::ZERO)
            } else {
                let args = match &input {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let item_id = format!("fc_fake{:016}", shared.next_id());
                let item = json!({"id": item_id, "type": "function_call", "status": "completed",
                                  "arguments": args, "call_id": call_id, "name": name});
                let mut mid = vec![(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": {"id": item_id, "type": "function_call",
                           "status": "in_progress", "arguments": "", "call_id": call_id, "name": name}}),
                )];
                for piece in split_chunks(&args, 3) {
                    mid.push((
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                    ));
                }
                mid.push((
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": 0, "arguments": args}),
                ));
                (item, mid, output_tokens(&args) + 10, Duration::ZERO)
            }
        }
        Reply::Text(t) | Reply::Held { text: t, .. } => text_item(shared, t, TEXT_CHUNKS, Duration::ZERO),
        Reply::SlowText { text, chunks, delay_ms } => text_item(shared, text, chunks, Duration::from_millis(delay_ms)),
        Reply::With(_) => text_item(shared, DEFAULT_TEXT.to_string(), TEXT_CHUNKS, Duration::ZERO),
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + out,
    });
    let created_at = now_secs();
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": resp_id, "object": "response", "created_at": created_at, "status": status,
            "error": null, "incomplete_details": null, "model": model, "output": output,
            "parallel_tool_calls": true, "tool_choice": "auto", "usage": usage,
        })
    };
    let extra = [("x-request-id", request_id.clone())];
    if !req.stream {
        if !delay.is_zero() {
            let deltas = events_mid.iter().filter(|(n, _)| n.ends_with(".delta")).count() as u32;
            tokio::select! {
                _ = tokio::time::sleep(delay * deltas) => {}
                _ = shared.cancel.cancelled() => {}
            }
        }
        let mut resp = json_response(StatusCode::OK, &response("completed", json!([item]), usage), None);
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        return resp;
    }
    let mut seq = Seq(0);
    let mut events = vec![
        seq.ev("response.created", json!({"response": response("in_progress", json!([]), Value::Null)})),
        seq.ev("response.in_progress", json!({"response": response("in_progress", json!([]), Value::Null)})),
    ];
    for (name, data) in events_mid {
        let mut e = seq.ev(name, data);
        if name.ends_with(".delta") {
            e.delay = delay;
        }
        events.push(e);
    }
    events.push(seq.ev("response.output_item.done", json!({"output_index": 0, "item": item.clone()})));
    events.push(seq.ev("response.completed", json!({"response": response("completed", json!([item]), usage)})));
    sse_response(shared, events, &extra)
}

/// A `message` output item with its events between `output_item.added` and `output_item.done`.
#[allow(clippy::type_complexity)]
fn text_item(
    shared: &Shared,
    text: String,
    chunks: usize,
    delay: Duration,
) -> (Value, Vec<(&'static str, Value)>, u64, Duration) {
    let item_id = format!("msg_fake{:020}", shared.next_id());
    let part = |t: &str| json!({"type": "output_text", "annotations": [], "logprobs": [], "text": t});
    let item = json!({"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                      "content": [part(&text)]});
    let mut mid = vec![
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": item_id, "type": "message", "status": "in_progress",
                   "role": "assistant", "content": []}}),
        ),
        (
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part("")}),
        ),
    ];
    for piece in split_chunks(&text, chunks) {
        mid.push((
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        ));
    }
    mid.push((
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
    ));
    mid.push((
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part(&text)}),
    ));
    let out = output_tokens(&text);
    (item, mid, out, delay)
}

/// The real API's error bodies (`{"error": {message, type, param, code}}`).
pub(super) fn error(status: u16, retry_after: Option<u32>, request_id: &str) -> Response {
    let (kind, code, message) = match status {
        400 => ("invalid_request_error", Value::Null, "Invalid request."),
        401 => (
            "invalid_request_error",
            json!("invalid_api_key"),
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ),
        403 => ("invalid_request_error", json!("unsupported_country_region_territory"), "Forbidden."),
        404 => (
            "invalid_request_error",
            json!("model_not_found"),
            "The model does not exist or you do not have access to it.",
        ),
        429 => ("requests", json!("rate_limit_exceeded"), "Rate limit reached for requests. Please try again in 1s."),
        503 => ("server_error", Value::Null, "The engine is currently overloaded, please try again later."),
        _ => ("server_error", Value::Null, "The server had an error while processing your request. Sorry about that!"),
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut resp = json_response(status_of(status), &body, retry_after);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
