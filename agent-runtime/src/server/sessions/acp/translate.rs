//! `session/update` notifications of one turn, translated into the session's events (the ACP
//! notification is each event's `raw`):
//!
//! | ACP `sessionUpdate` | events |
//! |---|---|
//! | `agent_message_chunk` | an assistant `message` item, one `item.delta` per text chunk (other content as `json` parts) |
//! | `agent_thought_chunk` | a `reasoning` item with deltas |
//! | `tool_call` | a `tool_call` item (name from `_meta.tool_name`, else the title; arguments `rawInput`) |
//! | `tool_call_update` | once `completed`/`failed`: the call item completes and a `tool_result` item holds its text output and file diffs; text before that streams as deltas of the result |
//! | `plan`, `current_mode_update`, `available_commands_update`, `session_info_update`, `config_option_update`, others | a `system` item with a `status` part (and the update as a `json` part) |
//! | `usage_update` | its cost goes into `turn.completed` (`costUsd`, when in USD) |
//! | `user_message_chunk` | nothing: the session already shows the user's message |
//!
//! A message or reasoning item stays open while chunks of its kind follow each other, and completes
//! when anything else arrives or the turn ends.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::api::session::{ContentPart, ItemKind, ItemStatus, PermissionKind, Role};
use crate::server::sessions::driver::TurnCtx;

/// A tool call of the agent as known so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Tool {
    pub(super) item_id: String,
    pub(super) name: String,
    pub(super) title: String,
    pub(super) kind: String,
    pub(super) input: Value,
    /// The result item, once output started.
    result: Option<String>,
    output: String,
    files: Vec<ContentPart>,
    done: bool,
}

impl Tool {
    /// The permission kind of an ACP tool kind.
    pub(super) fn permission_kind(kind: &str) -> PermissionKind {
        match kind {
            "read" | "search" | "fetch" => PermissionKind::Read,
            "edit" | "delete" | "move" => PermissionKind::Edit,
            "execute" => PermissionKind::Execute,
            _ => PermissionKind::Other,
        }
    }
}

/// The message or reasoning item being streamed.
struct OpenText {
    item_id: String,
    kind: ItemKind,
    text: String,
    extra: Vec<ContentPart>,
}

/// Turns one turn's `session/update`s into events.
#[derive(Default)]
pub(super) struct Translator {
    open: Option<OpenText>,
    /// Tool calls by the agent's `toolCallId`.
    pub(super) tools: HashMap<String, Tool>,
    /// The text of the last assistant message.
    pub(super) last_text: Option<String>,
    /// The session's cumulative cost in USD, as last reported, and at the turn's start.
    pub(super) cost_usd: Option<f64>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Translator {
    /// Handles one `session/update` notification (`msg` is the whole JSON-RPC message).
    pub(super) fn update(&mut self, msg: &Value, ctx: &TurnCtx) {
        let update = msg.pointer("/params/update").cloned().unwrap_or(Value::Null);
        let kind = str_of(&update, "sessionUpdate").unwrap_or_default().to_owned();
        let raw = Some(msg.clone());
        match kind.as_str() {
            "user_message_chunk" => {}
            "agent_message_chunk" => self.chunk(ItemKind::Message, &update, ctx, raw),
            "agent_thought_chunk" => self.chunk(ItemKind::Reasoning, &update, ctx, raw),
            "tool_call" => {
                self.close_text(ctx);
                self.tool_call(&update, ctx, raw);
            }
            "tool_call_update" => {
                self.close_text(ctx);
                self.tool_update(&update, ctx, raw);
            }
            "usage_update" => {
                if let Some(cost) = update.get("cost").filter(|c| str_of(c, "currency") == Some("USD")) {
                    self.cost_usd = cost.get("amount").and_then(Value::as_f64).or(self.cost_usd);
                }
            }
            _ => {
                self.close_text(ctx);
                let (label, detail) = status_of(&kind, &update);
                status_item(ctx, &label, detail, Some(update), raw);
            }
        }
    }

    fn chunk(&mut self, kind: ItemKind, update: &Value, ctx: &TurnCtx, raw: Option<Value>) {
        if self.open.as_ref().is_some_and(|o| o.kind != kind) {
            self.close_text(ctx);
        }
        let content = update.get("content").cloned().unwrap_or(Value::Null);
        let open = self.open.get_or_insert_with(|| {
            let item_id = ctx.start_item(kind, Some(Role::Assistant), None, None, Vec::new(), None);
            OpenText { item_id, kind, text: String::new(), extra: Vec::new() }
        });
        match (str_of(&content, "type"), str_of(&content, "text")) {
            (Some("text"), Some(text)) => {
                open.text.push_str(text);
                ctx.delta(&open.item_id, text.to_owned(), raw);
            }
            // Images, audio and resources: kept whole in the item (and `raw` of its completion).
            _ => open.extra.push(ContentPart::Json { json: content }),
        }
    }

    /// Completes the open message or reasoning item.
    pub(super) fn close_text(&mut self, ctx: &TurnCtx) {
        let Some(open) = self.open.take() else { return };
        let mut content = match open.kind {
            ItemKind::Reasoning => vec![ContentPart::Reasoning { text: open.text.clone() }],
            _ => vec![ContentPart::Text { text: open.text.clone() }],
        };
        content.extend(open.extra);
        if open.kind == ItemKind::Message {
            self.last_text = Some(open.text);
        }
        ctx.complete_item(&open.item_id, open.kind, Some(Role::Assistant), None, None, ItemStatus::Completed, content, None);
    }

    fn tool_call(&mut self, update: &Value, ctx: &TurnCtx, raw: Option<Value>) {
        let Some(id) = str_of(update, "toolCallId").map(str::to_owned) else { return };
        let mut tool = Tool::default();
        merge(&mut tool, update);
        let part = ContentPart::ToolCall { name: tool.name.clone(), call_id: id.clone(), arguments: tool.input.clone() };
        tool.item_id = ctx.start_item(ItemKind::ToolCall, Some(Role::Assistant), Some(id.clone()), None, vec![part], raw);
        self.tools.insert(id.clone(), tool);
        self.progress(&id, update, ctx, None);
    }

    fn tool_update(&mut self, update: &Value, ctx: &TurnCtx, raw: Option<Value>) {
        let Some(id) = str_of(update, "toolCallId").map(str::to_owned) else { return };
        if !self.tools.contains_key(&id) {
            // An update of a call never announced: show it as one.
            self.tool_call(update, ctx, raw);
            return;
        }
        if let Some(tool) = self.tools.get_mut(&id) {
            merge(tool, update);
        }
        self.progress(&id, update, ctx, raw);
    }

    /// Output and status of an update: text streams into the result item; `completed`/`failed` ends both.
    fn progress(&mut self, id: &str, update: &Value, ctx: &TurnCtx, raw: Option<Value>) {
        let Some(tool) = self.tools.get_mut(id) else { return };
        if tool.done {
            return;
        }
        let (text, files) = tool_content(update.get("content"));
        for f in files {
            if let ContentPart::FileRef { path, .. } = &f {
                tool.files.retain(|x| !matches!(x, ContentPart::FileRef { path: p, .. } if p == path));
            }
            tool.files.push(f);
        }
        let status = str_of(update, "status");
        let mut raw = raw;
        if !text.is_empty() {
            let result = tool.result.get_or_insert_with(|| {
                ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), Some(id.to_owned()), Some(tool.item_id.clone()), Vec::new(), None)
            });
            tool.output.push_str(&text);
            ctx.delta(result, text, raw.take());
        }
        if let Some(s @ ("completed" | "failed")) = status {
            let failed = s == "failed";
            if tool.output.is_empty() {
                if let Some(out) = update.get("rawOutput").filter(|o| !o.is_null()) {
                    tool.output = match out {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                }
            }
            finish(tool, id, failed, ctx, raw);
        }
    }

    /// Closes whatever a cancel, crash or early end left open.
    pub(super) fn close_open(&mut self, ctx: &TurnCtx) {
        self.close_text(ctx);
        let mut open: Vec<(String, Tool)> = self.tools.iter().filter(|(_, t)| !t.done).map(|(k, t)| (k.clone(), t.clone())).collect();
        open.sort_by(|a, b| a.1.item_id.cmp(&b.1.item_id));
        for (id, mut tool) in open {
            finish(&mut tool, &id, true, ctx, None);
            self.tools.insert(id, tool);
        }
    }
}

/// Completes a tool call item and its result item.
fn finish(tool: &mut Tool, id: &str, failed: bool, ctx: &TurnCtx, raw: Option<Value>) {
    tool.done = true;
    let status = if failed { ItemStatus::Failed } else { ItemStatus::Completed };
    let mut call = vec![ContentPart::ToolCall { name: tool.name.clone(), call_id: id.to_owned(), arguments: tool.input.clone() }];
    call.extend(tool.files.iter().cloned());
    ctx.complete_item(&tool.item_id, ItemKind::ToolCall, Some(Role::Assistant), Some(id.to_owned()), None, status, call, raw);
    let result = tool
        .result
        .take()
        .unwrap_or_else(|| ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), Some(id.to_owned()), Some(tool.item_id.clone()), Vec::new(), None));
    let mut content = vec![ContentPart::ToolResult { call_id: id.to_owned(), output: tool.output.clone(), is_error: failed }];
    content.extend(tool.files.iter().cloned());
    ctx.complete_item(&result, ItemKind::ToolResult, Some(Role::Tool), Some(id.to_owned()), Some(tool.item_id.clone()), status, content, None);
}

/// Takes the fields an update carries into the tool.
fn merge(tool: &mut Tool, update: &Value) {
    if let Some(t) = str_of(update, "title") {
        tool.title = t.to_owned();
    }
    if let Some(k) = str_of(update, "kind") {
        tool.kind = k.to_owned();
    }
    if let Some(input) = update.get("rawInput").filter(|v| !v.is_null()) {
        tool.input = input.clone();
    }
    if let Some(name) = update.pointer("/_meta/tool_name").and_then(Value::as_str) {
        tool.name = name.to_owned();
    }
    if tool.name.is_empty() {
        tool.name = if tool.title.is_empty() { tool.kind.clone() } else { tool.title.clone() };
    }
}

/// The text and the file changes in a tool call's `content` list.
fn tool_content(content: Option<&Value>) -> (String, Vec<ContentPart>) {
    let mut text = String::new();
    let mut files = Vec::new();
    for c in content.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        match str_of(c, "type") {
            Some("content") => {
                if let Some(t) = c.pointer("/content/text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            Some("diff") => {
                let path = str_of(c, "path").unwrap_or_default().to_owned();
                let old = c.get("oldText").and_then(Value::as_str);
                let new = str_of(c, "newText").unwrap_or_default();
                let action = if old.is_none() { "write" } else { "patch" };
                files.push(ContentPart::FileRef { path: path.clone(), action: action.into(), diff: Some(whole_file_diff(&path, old, new)) });
            }
            _ => {}
        }
    }
    (text, files)
}

/// A unified diff that replaces all of `old` (absent: a new file) with `new`.
pub(super) fn whole_file_diff(path: &str, old: Option<&str>, new: &str) -> String {
    let old_lines: Vec<&str> = old.map(|o| o.lines().collect()).unwrap_or_default();
    let new_lines: Vec<&str> = new.lines().collect();
    let from = if old.is_some() { path.to_owned() } else { "/dev/null".to_owned() };
    let start = |n: usize| if n == 0 { 0 } else { 1 };
    let mut out =
        format!("--- {from}\n+++ {path}\n@@ -{},{} +{},{} @@\n", start(old_lines.len()), old_lines.len(), start(new_lines.len()), new_lines.len());
    for l in old_lines {
        out.push_str(&format!("-{l}\n"));
    }
    for l in new_lines {
        out.push_str(&format!("+{l}\n"));
    }
    out
}

/// A label and a line for the status item of an update that is neither text nor a tool call.
fn status_of(kind: &str, update: &Value) -> (String, Option<String>) {
    match kind {
        "plan" => {
            let entries = update.get("entries").and_then(Value::as_array).cloned().unwrap_or_default();
            let lines: Vec<String> = entries
                .iter()
                .map(|e| format!("[{}] {}", str_of(e, "status").unwrap_or("pending"), str_of(e, "content").unwrap_or_default()))
                .collect();
            ("plan".into(), Some(lines.join("\n")))
        }
        "current_mode_update" => ("mode".into(), str_of(update, "currentModeId").map(str::to_owned)),
        "available_commands_update" => {
            let names: Vec<&str> = update
                .get("availableCommands")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|c| str_of(c, "name")).collect())
                .unwrap_or_default();
            ("commands".into(), Some(names.join(", ")))
        }
        "session_info_update" => ("session info".into(), str_of(update, "title").map(str::to_owned)),
        other => (if other.is_empty() { "update".to_owned() } else { other.replace('_', " ") }, None),
    }
}

/// A completed system item with a status line (and the update as JSON).
pub(super) fn status_item(ctx: &TurnCtx, label: &str, detail: Option<String>, update: Option<Value>, raw: Option<Value>) {
    let mut content = vec![ContentPart::Status { label: label.to_owned(), detail }];
    if let Some(u) = update {
        content.push(ContentPart::Json { json: u });
    }
    let id = ctx.start_item(ItemKind::System, Some(Role::System), None, None, Vec::new(), raw);
    ctx.complete_item(&id, ItemKind::System, Some(Role::System), None, None, ItemStatus::Completed, content, None);
}

/// The text of a prompt for `session/prompt`.
pub(super) fn prompt(text: &str) -> Value {
    json!([{"type": "text", "text": text}])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_file_diffs_add_or_replace_every_line() {
        assert_eq!(whole_file_diff("a.txt", None, "x\ny\n"), "--- /dev/null\n+++ a.txt\n@@ -0,0 +1,2 @@\n+x\n+y\n");
        assert_eq!(whole_file_diff("a.txt", Some("x\n"), "y\n"), "--- a.txt\n+++ a.txt\n@@ -1,1 +1,1 @@\n-x\n+y\n");
    }

    #[test]
    fn tool_content_splits_text_from_diffs() {
        let c = json!([{"type": "content", "content": {"type": "text", "text": "ok"}},
                       {"type": "diff", "path": "/w/a", "oldText": null, "newText": "hi"},
                       {"type": "terminal", "terminalId": "t"}]);
        let (text, files) = tool_content(Some(&c));
        assert_eq!(text, "ok");
        assert!(matches!(&files[..], [ContentPart::FileRef { path, action, .. }] if path == "/w/a" && action == "write"));
    }

    #[test]
    fn tool_names_come_from_meta_then_title_then_kind() {
        let mut t = Tool::default();
        merge(&mut t, &json!({"title": "Write a.txt", "kind": "edit", "_meta": {"tool_name": "write_file"}}));
        assert_eq!(t.name, "write_file");
        let mut t = Tool::default();
        merge(&mut t, &json!({"title": "Write a.txt", "kind": "edit"}));
        assert_eq!(t.name, "Write a.txt");
        let mut t = Tool::default();
        merge(&mut t, &json!({"kind": "execute"}));
        assert_eq!((t.name.as_str(), Tool::permission_kind(&t.kind)), ("execute", PermissionKind::Execute));
    }

    #[test]
    fn status_lines_say_what_changed() {
        let plan = json!({"entries": [{"content": "read", "status": "completed", "priority": "high"}, {"content": "write"}]});
        assert_eq!(status_of("plan", &plan), ("plan".into(), Some("[completed] read\n[pending] write".into())));
        assert_eq!(status_of("current_mode_update", &json!({"currentModeId": "ask"})).1.as_deref(), Some("ask"));
        assert_eq!(status_of("config_option_update", &json!({})).0, "config option update");
    }
}
