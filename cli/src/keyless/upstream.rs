//! One relayed request to the model API: the real key put in, the body streamed up as the agent sends
//! it, the answer streamed back piece by piece, and the usage (tokens, model) read from the answer as it
//! passes, without holding it.

use serde_json::Value;

/// Token counts and the model, read from an answer's SSE events or JSON body as it passes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UsageScanner {
    line: Vec<u8>,
    /// A JSON body (not SSE) is kept (up to [`MAX_JSON`]) and read at the end.
    json: Option<Vec<u8>>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub model: Option<String>,
}

/// A non-streamed answer larger than this is passed on without its usage being read.
const MAX_JSON: usize = 8 << 20;
/// An SSE line longer than this is not read for usage (it is passed on all the same).
const MAX_LINE: usize = 4 << 20;

impl UsageScanner {
    /// A scanner for an answer whose `content-type` is `content_type`.
    pub fn new(content_type: &str) -> Self {
        let sse = content_type.to_ascii_lowercase().contains("text/event-stream");
        Self { json: (!sse).then(Vec::new), ..Self::default() }
    }

    /// Reads one piece of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        if let Some(buf) = &mut self.json {
            if buf.len() + chunk.len() <= MAX_JSON {
                buf.extend_from_slice(chunk);
            } else {
                self.json = None;
            }
            return;
        }
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.sse_line(&line);
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
    }

    /// The answer ended.
    pub fn finish(&mut self) {
        if let Some(buf) = self.json.take() {
            if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                self.read(&v);
            }
        }
        let line = std::mem::take(&mut self.line);
        self.sse_line(&line);
    }

    fn sse_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else { return };
        if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii_start()) {
            self.read(&v);
        }
    }

    /// Takes what an event (or a whole answer) says: Anthropic's `message_start` (`message.usage`,
    /// `message.model`) and `message_delta` (`usage`, cumulative), OpenAI Responses' `response.completed`
    /// (`response.usage`), Chat Completions' `usage` (`prompt_tokens`, `completion_tokens`).
    fn read(&mut self, v: &Value) {
        for holder in [Some(v), v.get("message"), v.get("response")].into_iter().flatten() {
            if let Some(m) = holder.get("model").and_then(Value::as_str) {
                self.model.get_or_insert_with(|| m.to_owned());
            }
            let Some(u) = holder.get("usage").filter(|u| u.is_object()) else { continue };
            let num = |k: &str| u.get(k).and_then(Value::as_u64);
            // Anthropic counts cached input apart from `input_tokens`.
            let cached = num("cache_creation_input_tokens").unwrap_or(0) + num("cache_read_input_tokens").unwrap_or(0);
            if let Some(i) = num("input_tokens").or_else(|| num("prompt_tokens")) {
                self.input_tokens = Some(self.input_tokens.unwrap_or(0).max(i + cached));
            }
            if let Some(o) = num("output_tokens").or_else(|| num("completion_tokens")) {
                self.output_tokens = Some(self.output_tokens.unwrap_or(0).max(o));
            }
        }
    }
}

/// The `model` of a request body (JSON), when it says one.
pub fn request_model(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return v.get("model").and_then(Value::as_str).map(str::to_owned);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_stream_usage_across_chunk_edges() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\r\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\r\n\r\n",
        );
        let mut s = UsageScanner::new("text/event-stream; charset=utf-8");
        for piece in stream.as_bytes().chunks(5) {
            s.feed(piece);
        }
        s.finish();
        assert_eq!((s.input_tokens, s.output_tokens, s.model.as_deref()), (Some(15), Some(7), Some("claude-x")));
    }

    #[test]
    fn openai_responses_and_json_bodies() {
        let mut s = UsageScanner::new("text/event-stream");
        s.feed(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-t\",\"usage\":{\"input_tokens\":30,\"output_tokens\":4}}}");
        s.finish();
        assert_eq!((s.input_tokens, s.output_tokens, s.model.as_deref()), (Some(30), Some(4), Some("gpt-t")));
        let mut j = UsageScanner::new("application/json");
        j.feed(br#"{"model":"m","usage":{"prompt_tokens":2,"#);
        j.feed(br#""completion_tokens":3}}"#);
        j.finish();
        assert_eq!((j.input_tokens, j.output_tokens), (Some(2), Some(3)));
        assert_eq!(request_model(br#"{"model":"claude-y","stream":true}"#).as_deref(), Some("claude-y"));
    }
}
