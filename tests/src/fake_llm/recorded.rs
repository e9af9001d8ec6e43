//! What the fake saw: each request as recorded, with accessors for what tests assert on.

use serde_json::Value;

/// Which API a request spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/messages*`, or anything with an `anthropic-version` header.
    Anthropic,
    /// `/v1/responses`, `/v1/chat/completions`, and other `/v1/*` requests without `anthropic-version`.
    OpenAi,
}

/// A request the fake saw (recorded on arrival, before it is answered).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The API it spoke.
    pub api: Api,
    /// HTTP method.
    pub method: String,
    /// Path without the query, e.g. `/v1/messages`.
    pub path: String,
    /// The query string, e.g. `beta=true`.
    pub query: Option<String>,
    /// Whether a non-empty `x-api-key` or `Authorization` header was present.
    pub auth: bool,
    /// Whether the body asked for a streamed answer (`"stream": true`).
    pub stream: bool,
    /// Whether this request took a reply from the script (see the module docs).
    pub conversation: bool,
    /// The request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when empty, a JSON string holding the raw text when not JSON).
    pub body: Value,
}

/// A tool result found in a request: Anthropic `tool_result` or OpenAI `function_call_output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// `tool_use_id` (Anthropic) or `call_id` (OpenAI).
    pub id: String,
    /// The result text (text blocks joined with newlines).
    pub content: String,
    /// Anthropic `is_error`; OpenAI `success == false` when the output carries that field.
    pub is_error: bool,
}

impl Recorded {
    /// A header's value (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `model` field of the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Names of the tools offered in the request (`tools[].name`; a tool without a name, like
    /// OpenAI's `local_shell` or `web_search`, by its `type`).
    pub fn tool_names(&self) -> Vec<String> {
        tools_of(&self.body)
            .iter()
            .filter_map(|t| t.get("name").or_else(|| t.get("type")).and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    /// The tool definition named `name`, when offered.
    pub fn tool(&self, name: &str) -> Option<&Value> {
        tools_of(&self.body).iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The last `tool_result` block in an Anthropic request's messages.
    pub fn last_tool_result(&self) -> Option<ToolResult> {
        let messages = self.body.get("messages")?.as_array()?;
        messages.iter().rev().find_map(|m| {
            let blocks = m.get("content")?.as_array()?;
            blocks.iter().rev().find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")).map(|b| {
                ToolResult {
                    id: str_field(b, "tool_use_id"),
                    content: flatten_text(b.get("content").unwrap_or(&Value::Null)),
                    is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                }
            })
        })
    }

    /// The last `function_call_output` (or `custom_tool_call_output`) item in an OpenAI request's input.
    pub fn function_call_output(&self) -> Option<ToolResult> {
        let input = self.body.get("input")?.as_array()?;
        input
            .iter()
            .rev()
            .find(|i| {
                matches!(
                    i.get("type").and_then(Value::as_str),
                    Some("function_call_output" | "custom_tool_call_output")
                )
            })
            .map(|i| {
                let output = i.get("output").unwrap_or(&Value::Null);
                ToolResult {
                    id: str_field(i, "call_id"),
                    content: flatten_text(output),
                    is_error: output.get("success").and_then(Value::as_bool) == Some(false),
                }
            })
    }

    /// The text of the last user message (Anthropic `messages`, OpenAI `input`), if any.
    pub fn last_user_text(&self) -> Option<String> {
        let list = self.body.get("messages").or_else(|| self.body.get("input"))?.as_array()?;
        list.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")).map(|m| {
            match m.get("content") {
                Some(Value::Array(blocks)) => blocks
                    .iter()
                    .filter(|b| matches!(b.get("type").and_then(Value::as_str), Some("text" | "input_text")))
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some(c) => flatten_text(c),
                None => String::new(),
            }
        })
    }
}

pub(super) fn tools_of(body: &Value) -> &[Value] {
    body.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// A string as is; text blocks (`{"type":"text"|"output_text"|"input_text","text":..}`) joined by
/// newlines; an object with an `output`/`content` field by that field; anything else as JSON.
fn flatten_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i.get("text") {
                Some(Value::String(t)) => t.clone(),
                _ => flatten_text(i),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Object(o) => match o.get("output").or_else(|| o.get("content")) {
            Some(inner) => flatten_text(inner),
            None => v.to_string(),
        },
        other => other.to_string(),
    }
}
