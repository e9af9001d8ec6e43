//! The OpenAI Chat Completions API (`POST /v1/chat/completions`), streamed or not, with tool calls:
//! what Mistral's `vibe-acp` (and most OpenAI-compatible agents) speak.
//!
//! Streaming is `data: <chunk JSON>` lines (no `event:` names) ending with `data: [DONE]`: a first
//! chunk with the assistant role, text as `delta.content` pieces or a tool call as
//! `delta.tool_calls[0]` (id, name, then `function.arguments` pieces), a last chunk with
//! `finish_reason` (`stop` / `tool_calls`), and with `stream_options.include_usage` a usage chunk
//! whose `choices` is empty.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::recorded::{tools_of, Recorded, ToolResult};
use super::script::Reply;
use super::server::Shared;
use super::wire::{hang, json_response, now_secs, output_tokens, split_chunks};
use super::DEFAULT_TEXT;

const TEXT_CHUNKS: usize = 3;

impl Recorded {
    /// The function names a Chat Completions request offers (`tools[].function.name`).
    pub fn chat_tool_names(&self) -> Vec<String> {
        tools_of(&self.body).iter().filter_map(|t| t.pointer("/function/name").and_then(Value::as_str)).map(str::to_string).collect()
    }

    /// The `function` object (`name`, `parameters`, …) of the tool `name` a Chat Completions request offers.
    pub fn chat_tool(&self, name: &str) -> Option<&Value> {
        tools_of(&self.body).iter().filter_map(|t| t.get("function")).find(|f| f.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The last `role: "tool"` message of a Chat Completions request.
    pub fn chat_tool_result(&self) -> Option<ToolResult> {
        let messages = self.body.get("messages")?.as_array()?;
        messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("tool")).map(|m| {
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
                _ => String::new(),
            };
            ToolResult { id: m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default().to_string(), content, is_error: false }
        })
    }
}

pub(super) async fn reply(shared: &Shared, req: &Recorded, reply: Reply, input_tokens: u64) -> Response {
    let model = req.model().unwrap_or("gpt-test").to_string();
    let id = format!("chatcmpl-fake{:016}", shared.next_id());
    let created = now_secs();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    // (chunks after the role chunk, full message, finish reason, output tokens, delay per piece)
    let (pieces, message, finish, out, delay) = match reply {
        Reply::Error { status, retry_after } => return super::openai::error(status, retry_after, &id),
        Reply::Hang => return hang(shared).await,
        Reply::Stall => {
            let first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
            return sse(shared, vec![(first.to_string(), Duration::ZERO)], true);
        }
        Reply::ToolUse { name, input } => {
            let args = match &input {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let call_id = format!("call_fake{:016}", shared.next_id());
            let mut pieces = vec![chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            )];
            for p in split_chunks(&args, 3) {
                pieces.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}), Value::Null));
            }
            let message = json!({"role": "assistant", "content": null,
                                 "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]});
            (pieces, message, "tool_calls", output_tokens(&args) + 10, Duration::ZERO)
        }
        Reply::Text(t) | Reply::Held { text: t, .. } => text_reply(&chunk, t, TEXT_CHUNKS, Duration::ZERO),
        Reply::SlowText { text, chunks, delay_ms } => text_reply(&chunk, text, chunks, Duration::from_millis(delay_ms)),
        Reply::With(_) => text_reply(&chunk, DEFAULT_TEXT.to_string(), TEXT_CHUNKS, Duration::ZERO),
    };
    let usage = json!({"prompt_tokens": input_tokens, "completion_tokens": out, "total_tokens": input_tokens + out});
    if !req.stream {
        let body = json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                          "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                          "usage": usage});
        return json_response(StatusCode::OK, &body, None);
    }
    let mut events = vec![(chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string(), Duration::ZERO)];
    events.extend(pieces.into_iter().map(|p| (p.to_string(), delay)));
    events.push((chunk(json!({}), json!(finish)).to_string(), Duration::ZERO));
    if req.body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true) {
        let u = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage});
        events.push((u.to_string(), Duration::ZERO));
    }
    events.push(("[DONE]".to_string(), Duration::ZERO));
    sse(shared, events, false)
}

#[allow(clippy::type_complexity)]
fn text_reply(chunk: &dyn Fn(Value, Value) -> Value, text: String, n: usize, delay: Duration) -> (Vec<Value>, Value, &'static str, u64, Duration) {
    let pieces = split_chunks(&text, n).into_iter().map(|p| chunk(json!({"content": p}), Value::Null)).collect();
    let out = output_tokens(&text);
    (pieces, json!({"role": "assistant", "content": text}), "stop", out, delay)
}

/// Streams `data: …` lines (each after its delay); with `hold` the stream then stays open, silent,
/// until the server stops.
fn sse(shared: &Shared, events: Vec<(String, Duration)>, hold: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let cancel = shared.cancel.clone();
    tokio::spawn(async move {
        for (data, delay) in events {
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            if tx.send(Ok(Bytes::from(format!("data: {data}\n\n")))).await.is_err() {
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
    resp
}
