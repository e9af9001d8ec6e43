//! Codex's notifications of one turn, translated into the session's events: messages and reasoning
//! with deltas, tool calls with their results (command output as deltas), usage, errors, the end.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{status_item, str_at};
use crate::api::session::{ContentPart, EventSource, ItemKind, ItemStatus, Role, Usage};
use crate::server::sessions::driver::{TurnCtx, TurnEnd};

/// An item of Codex being shown as events.
pub(super) struct Open {
    pub(super) item_id: String,
    pub(super) kind: ItemKind,
    /// The tool (for tool calls) and its arguments as shown.
    pub(super) tool: String,
    pub(super) args: Value,
    pub(super) text: String,
    /// For tool calls: the result item, once output started streaming.
    pub(super) result: Option<String>,
    pub(super) output: String,
}

/// Turns Codex's notifications of one turn into events.
#[derive(Default)]
pub(super) struct Translator {
    pub(super) turn_id: Option<String>,
    /// Open items by Codex's item id.
    pub(super) items: HashMap<String, Open>,
    /// Why tools were refused, by Codex's item id (for their result).
    pub(super) denied: HashMap<String, String>,
    pub(super) usage: Option<Usage>,
    pub(super) last_text: Option<String>,
    /// The turn's error was already reported (by an `error` notification).
    pub(super) error_reported: bool,
    /// Codex reported the end of the turn.
    pub(super) settled: bool,
    /// Usage reports that came before this turn's id was known.
    pub(super) early_usage: Vec<Value>,
}

impl Translator {
    pub(super) fn set_turn(&mut self, turn: &str) {
        if self.turn_id.is_some() {
            return;
        }
        self.turn_id = Some(turn.to_owned());
        for params in std::mem::take(&mut self.early_usage) {
            if params.get("turnId").and_then(Value::as_str) == Some(turn) {
                self.add_usage(&params);
            }
        }
    }

    fn add_usage(&mut self, params: &Value) {
        let Some(last) = params.pointer("/tokenUsage/last") else { return };
        let n = |k: &str| last.get(k).and_then(Value::as_u64).unwrap_or(0);
        let u = self.usage.get_or_insert_with(Usage::default);
        // OpenAI counts cached tokens inside the input tokens; the event schema (like Anthropic)
        // keeps them apart.
        u.input_tokens += n("inputTokens").saturating_sub(n("cachedInputTokens"));
        u.cache_read_tokens += n("cachedInputTokens");
        u.cache_write_tokens += n("cacheWriteInputTokens");
        u.output_tokens += n("outputTokens");
    }

    /// Whether a notification belongs to this turn (Codex also replays the last usage of earlier
    /// turns after a resume).
    fn ours(&self, params: &Value) -> bool {
        match (params.get("turnId").and_then(Value::as_str), &self.turn_id) {
            (Some(t), Some(mine)) => t == mine,
            _ => true,
        }
    }

    pub(super) fn notification(&mut self, method: &str, msg: &Value, ctx: &TurnCtx, cancelled: bool) -> Option<TurnEnd> {
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        match method {
            "turn/started" => {
                if let Some(turn) = str_at(&params, "/turn/id") {
                    self.set_turn(turn);
                }
            }
            "item/started" if self.ours(&params) => self.item_started(&params, ctx, msg),
            "item/completed" if self.ours(&params) => self.item_completed(&params, ctx, msg),
            "item/agentMessage/delta" | "item/reasoning/textDelta" | "item/reasoning/summaryTextDelta" | "item/plan/delta"
                if self.ours(&params) =>
            {
                let (Some(native), Some(delta)) = (str_at(&params, "/itemId"), str_at(&params, "/delta")) else { return None };
                if let Some(open) = self.items.get_mut(native) {
                    open.text.push_str(delta);
                    ctx.delta(&open.item_id, delta.to_owned(), Some(msg.clone()));
                }
            }
            "item/commandExecution/outputDelta" | "item/fileChange/outputDelta" if self.ours(&params) => {
                let (Some(native), Some(delta)) = (str_at(&params, "/itemId"), str_at(&params, "/delta")) else { return None };
                if let Some(open) = self.items.get_mut(native) {
                    let result = open.result.get_or_insert_with(|| {
                        ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), Some(native.to_owned()), Some(open.item_id.clone()), Vec::new(), None)
                    });
                    open.output.push_str(delta);
                    ctx.delta(result, delta.to_owned(), Some(msg.clone()));
                }
            }
            // A resumed thread repeats its last turn's usage before Codex has even answered
            // `turn/start`: usage only counts once this turn's id is known.
            "thread/tokenUsage/updated" if self.turn_id.is_none() => self.early_usage.push(params),
            "thread/tokenUsage/updated" if self.ours(&params) => self.add_usage(&params),
            "error" if self.ours(&params) => {
                let message = str_at(&params, "/error/message").unwrap_or("codex reported an error").to_owned();
                if params.get("willRetry").and_then(Value::as_bool).unwrap_or(false) {
                    status_item(ctx, "retrying", Some(message), Some(msg.clone()));
                } else if !cancelled {
                    let (code, status) = classify_error(params.get("error").unwrap_or(&Value::Null));
                    ctx.error(EventSource::Agent, code, message, status, Some(msg.clone()));
                    self.error_reported = true;
                }
            }
            "mcpServer/startupStatus/updated" if str_at(&params, "/status") == Some("failed") => {
                let name = str_at(&params, "/name").unwrap_or("?");
                let why = str_at(&params, "/error").or_else(|| str_at(&params, "/failureReason")).unwrap_or("no reason given");
                ctx.error(EventSource::Agent, "agent_error", format!("MCP server `{name}` did not start: {why}"), None, Some(msg.clone()));
            }
            "turn/completed" if self.turn_id.is_none() || str_at(&params, "/turn/id") == self.turn_id.as_deref() => {
                return Some(self.turn_completed(&params, ctx, msg, cancelled));
            }
            _ => {}
        }
        None
    }

    fn item_started(&mut self, params: &Value, ctx: &TurnCtx, msg: &Value) {
        let Some(item) = params.get("item") else { return };
        let Some(native) = item.get("id").and_then(Value::as_str) else { return };
        let ty = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let (kind, role, tool, args) = match ty {
            // The session already shows the user's message.
            "userMessage" => return,
            "agentMessage" | "plan" => (ItemKind::Message, Role::Assistant, String::new(), Value::Null),
            "reasoning" => (ItemKind::Reasoning, Role::Assistant, String::new(), Value::Null),
            _ => match tool_call(item) {
                Some((tool, args)) => (ItemKind::ToolCall, Role::Assistant, tool, args),
                None => return,
            },
        };
        let content = if kind == ItemKind::ToolCall {
            vec![ContentPart::ToolCall { name: tool.clone(), call_id: native.to_owned(), arguments: args.clone() }]
        } else {
            Vec::new()
        };
        let item_id = ctx.start_item(kind, Some(role), Some(native.to_owned()), None, content, Some(msg.clone()));
        let open = Open { item_id, kind, tool, args, text: String::new(), result: None, output: String::new() };
        self.items.insert(native.to_owned(), open);
    }

    fn item_completed(&mut self, params: &Value, ctx: &TurnCtx, msg: &Value) {
        let Some(item) = params.get("item") else { return };
        let Some(native) = item.get("id").and_then(Value::as_str).map(str::to_owned) else { return };
        let ty = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if ty == "userMessage" {
            return;
        }
        let open = match self.items.remove(&native) {
            Some(o) => o,
            None => {
                // Completed without having started (or of a type only worth showing once done).
                self.item_started(params, ctx, msg);
                match self.items.remove(&native) {
                    Some(o) => o,
                    None => {
                        let label = format!("codex {ty}");
                        status_item(ctx, &label, None, Some(msg.clone()));
                        return;
                    }
                }
            }
        };
        let raw = Some(msg.clone());
        match open.kind {
            ItemKind::Message => {
                let text = item.get("text").and_then(Value::as_str).map(str::to_owned).unwrap_or(open.text);
                if ty == "agentMessage" {
                    self.last_text = Some(text.clone());
                }
                let content = vec![ContentPart::Text { text }];
                ctx.complete_item(&open.item_id, ItemKind::Message, Some(Role::Assistant), Some(native), None, ItemStatus::Completed, content, raw);
            }
            ItemKind::Reasoning => {
                let text = if open.text.is_empty() { reasoning_text(item) } else { open.text };
                let content = vec![ContentPart::Reasoning { text }];
                ctx.complete_item(&open.item_id, ItemKind::Reasoning, Some(Role::Assistant), Some(native), None, ItemStatus::Completed, content, raw);
            }
            _ => self.tool_completed(open, native, item, ctx, raw),
        }
    }

    /// A tool-call item and its result, from Codex's completed item.
    fn tool_completed(&mut self, open: Open, native: String, item: &Value, ctx: &TurnCtx, raw: Option<Value>) {
        let ty = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let status = item.get("status").and_then(Value::as_str).unwrap_or("completed");
        let exit = item.get("exitCode").and_then(Value::as_i64);
        let declined = status == "declined";
        let failed = declined
            || status == "failed"
            || exit.is_some_and(|c| c != 0)
            || item.get("success").and_then(Value::as_bool) == Some(false)
            || item.get("error").is_some_and(|e| !e.is_null());
        let args = tool_call(item).map(|(_, a)| a).unwrap_or(open.args);
        let mut call = vec![ContentPart::ToolCall { name: open.tool.clone(), call_id: native.clone(), arguments: args }];
        let mut files = Vec::new();
        if ty == "fileChange" {
            for c in item.get("changes").and_then(Value::as_array).cloned().unwrap_or_default() {
                let action = match str_at(&c, "/kind/type") {
                    Some("add") => "write",
                    Some("delete") => "delete",
                    _ => "patch",
                };
                let path = c.get("path").and_then(Value::as_str).unwrap_or_default().to_owned();
                let diff = c.get("diff").and_then(Value::as_str).filter(|d| !d.is_empty()).map(|d| unified_diff(action, &path, d));
                files.push(ContentPart::FileRef { path, action: action.into(), diff });
            }
            call.extend(files.iter().cloned());
        }
        let call_status = if failed { ItemStatus::Failed } else { ItemStatus::Completed };
        ctx.complete_item(&open.item_id, ItemKind::ToolCall, Some(Role::Assistant), Some(native.clone()), None, call_status, call, raw);

        let output = if declined {
            let why = self.denied.remove(&native).unwrap_or_else(|| "declined".into());
            format!("not run: {why}")
        } else {
            let mut out = tool_output(item).unwrap_or(open.output);
            if out.is_empty() && ty == "fileChange" && !failed {
                out = "applied".into();
            }
            if let Some(code) = exit.filter(|c| *c != 0) {
                out.push_str(&format!("\n(exit {code})"));
            }
            out
        };
        let result_id = open.result.unwrap_or_else(|| {
            ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), Some(native.clone()), Some(open.item_id.clone()), Vec::new(), None)
        });
        let mut content = vec![ContentPart::ToolResult { call_id: native.clone(), output, is_error: failed }];
        content.extend(files);
        ctx.complete_item(&result_id, ItemKind::ToolResult, Some(Role::Tool), Some(native), Some(open.item_id), call_status, content, None);
    }

    fn turn_completed(&mut self, params: &Value, ctx: &TurnCtx, msg: &Value, cancelled: bool) -> TurnEnd {
        self.settled = true;
        let status = str_at(params, "/turn/status").unwrap_or("completed");
        let mut end = TurnEnd::default();
        match status {
            "interrupted" => {
                end.cancelled = true;
                end.stop_reason = Some("cancelled".into());
            }
            // An interrupted request can surface as a failure; the user asked for the stop.
            "failed" if cancelled => {
                end.cancelled = true;
                end.stop_reason = Some("cancelled".into());
            }
            "failed" => {
                let err = params.pointer("/turn/error").cloned().unwrap_or(Value::Null);
                let message = err.get("message").and_then(Value::as_str).unwrap_or("codex reported the turn as failed").to_owned();
                if !self.error_reported {
                    let (code, status) = classify_error(&err);
                    ctx.error(EventSource::Agent, code, message.clone(), status, Some(msg.clone()));
                }
                end.failed = Some(message);
            }
            _ => {}
        }
        end
    }

    /// Closes items a cancel, crash or early end left open.
    pub(super) fn close_open(&mut self, ctx: &TurnCtx) {
        for (native, open) in self.items.drain() {
            let content = match open.kind {
                ItemKind::Message => vec![ContentPart::Text { text: open.text }],
                ItemKind::Reasoning => vec![ContentPart::Reasoning { text: open.text }],
                _ => vec![ContentPart::ToolCall { name: open.tool, call_id: native.clone(), arguments: open.args }],
            };
            ctx.complete_item(&open.item_id, open.kind, Some(Role::Assistant), Some(native.clone()), None, ItemStatus::Failed, content, None);
            if let Some(result) = open.result {
                let content = vec![ContentPart::ToolResult { call_id: native.clone(), output: open.output, is_error: true }];
                ctx.complete_item(&result, ItemKind::ToolResult, Some(Role::Tool), Some(native), Some(open.item_id), ItemStatus::Failed, content, None);
            }
        }
    }
}

/// The tool name and arguments shown for a Codex item that runs something; `None` for items that
/// do not.
fn tool_call(item: &Value) -> Option<(String, Value)> {
    let s = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
    let ty = item.get("type").and_then(Value::as_str)?;
    Some(match ty {
        "commandExecution" => ("exec_command".into(), json!({"command": s("command"), "cwd": s("cwd")})),
        "fileChange" => {
            let changes: Vec<Value> = item
                .get("changes")
                .and_then(Value::as_array)
                .map(|c| c.iter().map(|x| json!({"path": x.get("path"), "kind": x.pointer("/kind/type")})).collect())
                .unwrap_or_default();
            ("apply_patch".into(), json!({ "changes": changes }))
        }
        "mcpToolCall" => {
            let name = format!("mcp__{}__{}", item.get("server").and_then(Value::as_str).unwrap_or("?"), item.get("tool").and_then(Value::as_str).unwrap_or("?"));
            (name, s("arguments"))
        }
        "dynamicToolCall" => (item.get("tool").and_then(Value::as_str).unwrap_or("tool").to_owned(), s("arguments")),
        "webSearch" => ("web_search".into(), json!({"query": s("query")})),
        "imageView" => ("view_image".into(), json!({"path": s("path")})),
        "collabAgentToolCall" => (format!("agent_{}", item.get("tool").and_then(Value::as_str).unwrap_or("call")), json!({"prompt": s("prompt")})),
        _ => return None,
    })
}

/// What a completed tool item returned, as text.
fn tool_output(item: &Value) -> Option<String> {
    let texts = |v: &Value| -> Option<String> {
        let parts: Vec<&str> = v.as_array()?.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    };
    match item.get("type").and_then(Value::as_str)? {
        "commandExecution" => item.get("aggregatedOutput").and_then(Value::as_str).map(str::to_owned),
        "mcpToolCall" => item
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| item.pointer("/result/content").and_then(texts)),
        "dynamicToolCall" => item.get("contentItems").and_then(texts),
        "webSearch" => item.get("results").filter(|r| !r.is_null()).map(Value::to_string),
        _ => None,
    }
}

/// A file change's diff as a unified diff: Codex gives one for updates, but the whole content for
/// added and deleted files.
fn unified_diff(action: &str, path: &str, diff: &str) -> String {
    let lines: Vec<&str> = diff.lines().collect();
    let n = lines.len();
    let (sign, mut out) = match action {
        "write" => ('+', format!("--- /dev/null\n+++ {path}\n@@ -0,0 +1,{n} @@\n")),
        "delete" => ('-', format!("--- {path}\n+++ /dev/null\n@@ -1,{n} +0,0 @@\n")),
        _ => return diff.to_owned(),
    };
    for l in lines {
        out.push(sign);
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn reasoning_text(item: &Value) -> String {
    let join = |k: &str| -> Vec<String> {
        item.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
    };
    let mut parts = join("summary");
    parts.extend(join("content"));
    parts.join("\n")
}

/// The error code and HTTP status for a Codex `TurnError`: its `codexErrorInfo` when it says, else
/// what the message says ("unexpected status 401 …").
fn classify_error(err: &Value) -> (&'static str, Option<u16>) {
    let info = err.get("codexErrorInfo").unwrap_or(&Value::Null);
    let http = info
        .as_object()
        .and_then(|o| o.values().find_map(|v| v.get("httpStatusCode").and_then(Value::as_u64)))
        .and_then(|s| u16::try_from(s).ok());
    let message = err.get("message").and_then(Value::as_str).unwrap_or_default();
    let status = http.or_else(|| crate::server::sessions::claude::classify_error(message).1);
    let code = match (status, info.as_str()) {
        (Some(401) | Some(403), _) | (None, Some("unauthorized")) => "model_auth",
        (Some(429), _) | (None, Some("rateLimitExceeded" | "usageLimitExceeded")) => "model_rate_limited",
        (Some(_), _) | (None, Some("internalServerError" | "serverOverloaded" | "badRequest" | "contextWindowExceeded")) => {
            "model_error"
        }
        _ => "agent_error",
    };
    (code, status)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_codex_error_info_then_message() {
        let e = json!({"message": "unexpected status 401 Unauthorized", "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": 401}}});
        assert_eq!(classify_error(&e), ("model_auth", Some(401)));
        let e = json!({"message": "exceeded retry limit, last status: 429 Too Many Requests", "codexErrorInfo": {"responseTooManyFailedAttempts": {"httpStatusCode": 429}}});
        assert_eq!(classify_error(&e), ("model_rate_limited", Some(429)));
        let e = json!({"message": "We're currently experiencing high demand", "codexErrorInfo": "internalServerError"});
        assert_eq!(classify_error(&e), ("model_error", None));
        let e = json!({"message": "stream error: status 502", "codexErrorInfo": "other"});
        assert_eq!(classify_error(&e), ("model_error", Some(502)));
        let e = json!({"message": "sandbox denied", "codexErrorInfo": "sandboxError"});
        assert_eq!(classify_error(&e), ("agent_error", None));
    }

    #[test]
    fn added_and_deleted_files_get_unified_diffs() {
        assert_eq!(unified_diff("write", "a.txt", "x\ny\n"), "--- /dev/null\n+++ a.txt\n@@ -0,0 +1,2 @@\n+x\n+y\n");
        assert_eq!(unified_diff("delete", "a.txt", "x\n"), "--- a.txt\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-x\n");
        assert_eq!(unified_diff("patch", "a.txt", "@@ -1 +1 @@\n-x\n+y\n"), "@@ -1 +1 @@\n-x\n+y\n");
    }

    #[test]
    fn stderr_tails_lose_colour_codes() {
        assert_eq!(super::super::strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m boom"), "2026 ERROR boom");
    }

    #[test]
    fn tool_items_show_as_calls_with_their_arguments() {
        let item = json!({"type": "commandExecution", "id": "call_1", "command": "/bin/bash -lc 'ls'", "cwd": "/w"});
        assert_eq!(tool_call(&item), Some(("exec_command".into(), json!({"command": "/bin/bash -lc 'ls'", "cwd": "/w"}))));
        let item = json!({"type": "fileChange", "id": "p", "changes": [{"path": "a.txt", "kind": {"type": "add"}, "diff": "+x"}]});
        assert_eq!(tool_call(&item).unwrap().1, json!({"changes": [{"path": "a.txt", "kind": "add"}]}));
        assert_eq!(tool_call(&json!({"type": "agentMessage", "id": "m"})), None);
    }
}

