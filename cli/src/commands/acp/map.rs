//! sbx's session events, mapped back to ACP `session/update`s for the editor:
//!
//! | event | ACP update |
//! |---|---|
//! | `item.delta` of an assistant message / reasoning | `agent_message_chunk` / `agent_thought_chunk` |
//! | `item.completed` of a message or reasoning that had no deltas | one chunk with all of it |
//! | `item.started` of a tool call | `tool_call` (status `pending`, `rawInput`: the arguments) |
//! | `item.delta` of a tool result | `tool_call_update` (`in_progress`, the output so far) |
//! | `item.completed` of a tool result | `tool_call_update` (`completed` / `failed`, output, file locations) |
//! | `item.completed` of a tool call that failed without a result | `tool_call_update` (`failed`) |
//! | `error` | `agent_thought_chunk` naming the error (the turn's answer says when it failed) |
//!
//! The user's own message, system items and permission events are not updates (permissions become
//! `session/request_permission`, see `mod.rs`).

use std::collections::HashMap;

use sbx_agent::api::session::{ContentPart, Event, EventData, Item, ItemKind, ItemStatus, Role, TurnCompleted, TurnOutcome};
use serde_json::{json, Value};

#[derive(Debug, Default)]
struct Seen {
    kind: Option<ItemKind>,
    role: Option<Role>,
    parent: Option<String>,
    deltas: bool,
    output: String,
}

/// Maps one session's events to ACP updates.
#[derive(Debug, Default)]
pub(crate) struct Mapper {
    items: HashMap<String, Seen>,
}

/// The ACP tool kind for a tool name (a guess from the name; ACP's kinds only steer icons).
pub(crate) fn tool_kind(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["write", "edit", "patch", "replace"]) {
        "edit"
    } else if has(&["read", "view", "cat"]) {
        "read"
    } else if has(&["grep", "glob", "search", "find", "ls"]) {
        "search"
    } else if has(&["bash", "exec", "run", "shell", "command"]) {
        "execute"
    } else if has(&["fetch", "web"]) {
        "fetch"
    } else {
        "other"
    }
}

fn text_of(item: &Item) -> String {
    item.content
        .iter()
        .filter_map(|c| match c {
            ContentPart::Text { text } | ContentPart::Reasoning { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn chunk(kind: &str, text: &str) -> Value {
    json!({"sessionUpdate": kind, "content": {"type": "text", "text": text}})
}

impl Mapper {
    /// The updates for one event (often none).
    pub(crate) fn map(&mut self, ev: &Event) -> Vec<Value> {
        match &ev.body {
            EventData::ItemStarted(item) => {
                self.items
                    .insert(item.item_id.clone(), Seen { kind: Some(item.kind), role: item.role, parent: item.parent_id.clone(), ..Seen::default() });
                if item.kind != ItemKind::ToolCall {
                    return Vec::new();
                }
                let (name, args) = item
                    .content
                    .iter()
                    .find_map(|c| if let ContentPart::ToolCall { name, arguments, .. } = c { Some((name.clone(), arguments.clone())) } else { None })
                    .unwrap_or_default();
                vec![json!({"sessionUpdate": "tool_call", "toolCallId": item.item_id, "title": name, "kind": tool_kind(&name),
                            "status": "pending", "rawInput": args})]
            }
            EventData::ItemDelta(d) => {
                let Some(seen) = self.items.get_mut(&d.item_id) else { return Vec::new() };
                seen.deltas = true;
                match (seen.kind, seen.role) {
                    (Some(ItemKind::Message), Some(Role::Assistant)) => vec![chunk("agent_message_chunk", &d.delta)],
                    (Some(ItemKind::Reasoning), _) => vec![chunk("agent_thought_chunk", &d.delta)],
                    (Some(ItemKind::ToolResult), _) => {
                        seen.output.push_str(&d.delta);
                        let Some(parent) = seen.parent.clone() else { return Vec::new() };
                        vec![json!({"sessionUpdate": "tool_call_update", "toolCallId": parent, "status": "in_progress",
                                    "content": [{"type": "content", "content": {"type": "text", "text": seen.output}}]})]
                    }
                    _ => Vec::new(),
                }
            }
            EventData::ItemCompleted(item) => self.completed(item),
            EventData::Error(e) => vec![chunk("agent_thought_chunk", &format!("error ({}): {}", e.code, e.message))],
            _ => Vec::new(),
        }
    }

    fn completed(&mut self, item: &Item) -> Vec<Value> {
        let seen = self.items.remove(&item.item_id).unwrap_or_default();
        match (item.kind, item.role) {
            (ItemKind::Message, Some(Role::Assistant)) if !seen.deltas => vec![chunk("agent_message_chunk", &text_of(item))],
            (ItemKind::Reasoning, _) if !seen.deltas => vec![chunk("agent_thought_chunk", &text_of(item))],
            (ItemKind::ToolCall, _) if item.status == ItemStatus::Failed => {
                // Refused or cut off: its result (when one follows) says more.
                vec![json!({"sessionUpdate": "tool_call_update", "toolCallId": item.item_id, "status": "failed"})]
            }
            (ItemKind::ToolResult, _) => {
                let Some(parent) = item.parent_id.clone().or(seen.parent) else { return Vec::new() };
                let mut output = String::new();
                let mut locations = Vec::new();
                for c in &item.content {
                    match c {
                        ContentPart::ToolResult { output: o, .. } => output.push_str(o),
                        ContentPart::FileRef { path, .. } => locations.push(json!({"path": path})),
                        _ => {}
                    }
                }
                let status = if item.status == ItemStatus::Failed { "failed" } else { "completed" };
                vec![json!({"sessionUpdate": "tool_call_update", "toolCallId": parent, "status": status,
                            "content": [{"type": "content", "content": {"type": "text", "text": output}}],
                            "locations": locations, "rawOutput": {"output": output}})]
            }
            _ => Vec::new(),
        }
    }
}

/// The answer to `session/prompt` for a turn's end: `Ok(result)` or `Err(message)` for a failed turn.
pub(crate) fn prompt_result(done: &TurnCompleted, last_error: Option<&str>) -> Result<Value, String> {
    let reason = match done.outcome {
        TurnOutcome::Cancelled => "cancelled",
        TurnOutcome::Failed => return Err(last_error.unwrap_or("the agent's turn failed").to_owned()),
        // ACP's other stop reasons pass through; anything else is a normal end.
        TurnOutcome::Completed => {
            done.stop_reason.as_deref().filter(|r| ["max_tokens", "max_turn_requests", "refusal"].contains(r)).unwrap_or("end_turn")
        }
    };
    let mut out = json!({ "stopReason": reason });
    if let Some(u) = &done.usage {
        let total = u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens;
        out["usage"] = json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": total,
                              "cachedReadTokens": u.cache_read_tokens, "cachedWriteTokens": u.cache_write_tokens});
    }
    Ok(out)
}

/// The text of an ACP prompt (text blocks, and embedded text resources, in order; links as their URI).
pub(crate) fn prompt_text(blocks: &[Value]) -> String {
    let mut parts = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(b.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()),
            Some("resource") => {
                let uri = b.pointer("/resource/uri").and_then(Value::as_str).unwrap_or_default();
                if let Some(t) = b.pointer("/resource/text").and_then(Value::as_str) {
                    parts.push(format!("<file uri=\"{uri}\">\n{t}\n</file>"));
                }
            }
            Some("resource_link") => parts.push(b.get("uri").and_then(Value::as_str).unwrap_or_default().to_owned()),
            _ => {}
        }
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use sbx_agent::api::session::{EventSource, ItemDelta};

    use super::*;

    fn ev(body: EventData) -> Event {
        Event { session_id: "s".into(), sequence: 1, time: String::new(), source: EventSource::Agent, body, raw: None }
    }

    fn item(id: &str, kind: ItemKind, role: Role, parent: Option<&str>, status: ItemStatus, content: Vec<ContentPart>) -> Item {
        Item { item_id: id.into(), native_item_id: None, parent_id: parent.map(str::to_owned), kind, role: Some(role), status, content }
    }

    #[test]
    fn messages_tools_and_results_become_acp_updates() {
        let mut m = Mapper::default();
        let msg = item("item_2", ItemKind::Message, Role::Assistant, None, ItemStatus::InProgress, vec![]);
        assert!(m.map(&ev(EventData::ItemStarted(msg.clone()))).is_empty());
        let d = m.map(&ev(EventData::ItemDelta(ItemDelta { item_id: "item_2".into(), delta: "hi".into() })));
        assert_eq!(d, vec![chunk("agent_message_chunk", "hi")]);
        assert!(m.map(&ev(EventData::ItemCompleted(msg))).is_empty(), "text already sent as deltas");

        let call = ContentPart::ToolCall { name: "write".into(), call_id: "c".into(), arguments: json!({"path": "a"}) };
        let u = m.map(&ev(EventData::ItemStarted(item("item_3", ItemKind::ToolCall, Role::Assistant, None, ItemStatus::InProgress, vec![call]))));
        assert_eq!(u[0]["sessionUpdate"], "tool_call");
        assert_eq!((u[0]["kind"].as_str(), u[0]["rawInput"]["path"].as_str()), (Some("edit"), Some("a")));
        let result = vec![
            ContentPart::ToolResult { call_id: "c".into(), output: "2 bytes".into(), is_error: false },
            ContentPart::FileRef { path: "a".into(), action: "write".into(), diff: None },
        ];
        let r = item("item_4", ItemKind::ToolResult, Role::Tool, Some("item_3"), ItemStatus::Completed, result);
        let u = m.map(&ev(EventData::ItemCompleted(r)));
        assert_eq!((u[0]["toolCallId"].as_str(), u[0]["status"].as_str()), (Some("item_3"), Some("completed")));
        assert_eq!(u[0]["locations"], json!([{"path": "a"}]));
        let said = item("item_5", ItemKind::Message, Role::Assistant, None, ItemStatus::Completed, vec![ContentPart::Text { text: "done".into() }]);
        assert_eq!(m.map(&ev(EventData::ItemCompleted(said))), vec![chunk("agent_message_chunk", "done")]);
        let user = item("item_1", ItemKind::Message, Role::User, None, ItemStatus::Completed, vec![ContentPart::Text { text: "x".into() }]);
        assert!(m.map(&ev(EventData::ItemCompleted(user))).is_empty(), "the editor has the user's message");
    }

    #[test]
    fn turn_ends_become_stop_reasons() {
        let mut t = TurnCompleted {
            turn_id: "t".into(),
            outcome: TurnOutcome::Completed,
            stop_reason: Some("end_turn".into()),
            text: None,
            usage: None,
            cost_usd: None,
            duration_ms: 1,
        };
        assert_eq!(prompt_result(&t, None).unwrap(), json!({"stopReason": "end_turn"}));
        t.stop_reason = Some("max_tokens".into());
        assert_eq!(prompt_result(&t, None).unwrap()["stopReason"], "max_tokens");
        t.outcome = TurnOutcome::Cancelled;
        assert_eq!(prompt_result(&t, None).unwrap()["stopReason"], "cancelled");
        t.outcome = TurnOutcome::Failed;
        assert_eq!(prompt_result(&t, Some("boom")).unwrap_err(), "boom");
    }

    #[test]
    fn prompts_keep_text_and_embedded_files() {
        let blocks =
            vec![json!({"type": "text", "text": "fix"}), json!({"type": "resource", "resource": {"uri": "file:///a.rs", "text": "fn a() {}"}})];
        assert_eq!(prompt_text(&blocks), "fix\n<file uri=\"file:///a.rs\">\nfn a() {}\n</file>");
        assert_eq!(tool_kind("Bash"), "execute");
        assert_eq!(tool_kind("apply_patch"), "edit");
    }
}
