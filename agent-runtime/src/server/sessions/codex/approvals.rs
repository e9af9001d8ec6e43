//! Codex's server→client requests during a turn: approvals go through the session's permission
//! policy (or a person), user input through questions, anything else gets an error so Codex does not
//! wait.

use std::pin::Pin;

use futures::Future;
use serde_json::{json, Value};

use super::{rpc_error, rpc_result};
use crate::api::session::{PermissionDecision, PermissionKind};
use crate::server::sessions::driver::TurnCtx;

pub(super) type Answer<'a> = Pin<Box<dyn Future<Output = Answered> + Send + 'a>>;

/// The reply to one of Codex's requests, and for a refused tool what Codex's item should say.
pub(super) struct Answered {
    pub(super) reply: Value,
    pub(super) denied: Option<(String, String)>,
}

/// Answers one server→client request: approvals through the session's permission policy (or a
/// person), user input through questions, anything else with an error so Codex does not wait.
pub(super) async fn answer(method: String, req: Value, item_id: Option<String>, item_args: Option<Value>, ctx: &TurnCtx) -> Answered {
    let p = req.get("params").cloned().unwrap_or(Value::Null);
    let native = p.get("itemId").or_else(|| p.get("callId")).and_then(Value::as_str).unwrap_or_default().to_owned();
    let ask = |tool: &'static str, kind: PermissionKind, title: String, input: Value| {
        let raw = Some(req.clone());
        let item_id = item_id.clone();
        async move { ctx.ask_permission(tool, kind, title, input, item_id, raw).await }
    };
    let denied = |message: Option<String>| Some((native.clone(), message.unwrap_or_else(|| "denied".into())));
    match method.as_str() {
        "item/commandExecution/requestApproval" => {
            let command = p.get("command").and_then(Value::as_str).unwrap_or_default().to_owned();
            let input = json!({"command": command, "cwd": p.get("cwd"), "reason": p.get("reason")});
            let (decision, message) = ask("exec_command", PermissionKind::Execute, format!("run `{command}`"), input).await;
            let offered = |d: &str| p.get("availableDecisions").and_then(Value::as_array).is_none_or(|a| a.iter().any(|x| x == d));
            let reply = match decision {
                PermissionDecision::AllowAlways if offered("acceptForSession") => "acceptForSession",
                PermissionDecision::Allow | PermissionDecision::AllowAlways => "accept",
                PermissionDecision::Deny => "decline",
            };
            let denied = if decision.allows() { None } else { denied(message) };
            Answered { reply: rpc_result(&req, json!({"decision": reply})), denied }
        }
        "item/fileChange/requestApproval" => {
            let paths: Vec<String> = item_args
                .as_ref()
                .and_then(|a| a.get("changes"))
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(|x| x.get("path").and_then(Value::as_str).map(str::to_owned)).collect())
                .unwrap_or_default();
            let title = if paths.is_empty() { "edit files".to_owned() } else { format!("edit {}", paths.join(", ")) };
            let input = json!({"changes": item_args.as_ref().and_then(|a| a.get("changes")), "reason": p.get("reason"), "grantRoot": p.get("grantRoot")});
            let (decision, message) = ask("apply_patch", PermissionKind::Edit, title, input).await;
            let reply = match decision {
                PermissionDecision::Allow => "accept",
                PermissionDecision::AllowAlways => "acceptForSession",
                PermissionDecision::Deny => "decline",
            };
            let denied = if decision.allows() { None } else { denied(message) };
            Answered { reply: rpc_result(&req, json!({"decision": reply})), denied }
        }
        "item/permissions/requestApproval" => {
            let reason = p.get("reason").and_then(Value::as_str).unwrap_or("more access");
            let (decision, message) = ask("permissions", PermissionKind::Other, format!("grant extra permissions: {reason}"), p.clone()).await;
            let result = match decision {
                PermissionDecision::Allow => json!({"permissions": p.get("permissions").cloned().unwrap_or(json!({})), "scope": "turn"}),
                PermissionDecision::AllowAlways => json!({"permissions": p.get("permissions").cloned().unwrap_or(json!({})), "scope": "session"}),
                // Granting nothing is how a refusal is expressed.
                PermissionDecision::Deny => json!({"permissions": {}}),
            };
            let denied = if decision.allows() { None } else { denied(message) };
            Answered { reply: rpc_result(&req, result), denied }
        }
        // The v1 protocol's approvals, should this Codex still send them.
        "execCommandApproval" | "applyPatchApproval" => {
            let (tool, kind, title) = if method == "execCommandApproval" {
                let cmd = p.get("command").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "));
                ("exec_command", PermissionKind::Execute, format!("run `{}`", cmd.unwrap_or_default()))
            } else {
                let files = p.get("fileChanges").and_then(Value::as_object).map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "));
                ("apply_patch", PermissionKind::Edit, format!("edit {}", files.unwrap_or_default()))
            };
            let (decision, message) = ask(tool, kind, title, p.clone()).await;
            let reply = match decision {
                PermissionDecision::Allow => json!("approved"),
                PermissionDecision::AllowAlways => json!("approved_for_session"),
                PermissionDecision::Deny => json!({"denied": {"rejection": message.clone().unwrap_or_else(|| "denied".into())}}),
            };
            let denied = if decision.allows() { None } else { denied(message) };
            Answered { reply: rpc_result(&req, json!({"decision": reply})), denied }
        }
        "mcpServer/elicitation/request" => {
            let server = p.get("serverName").and_then(Value::as_str).unwrap_or("mcp").to_owned();
            let message = p.get("message").and_then(Value::as_str).unwrap_or("an MCP server asks to go on").to_owned();
            let (decision, _) = ask("mcp_elicitation", PermissionKind::Other, format!("{server}: {message}"), p.clone()).await;
            let result = if decision.allows() { json!({"action": "accept", "content": {}}) } else { json!({"action": "decline"}) };
            Answered { reply: rpc_result(&req, result), denied: None }
        }
        "item/tool/requestUserInput" => {
            let mut answers = serde_json::Map::new();
            for q in p.get("questions").and_then(Value::as_array).cloned().unwrap_or_default() {
                let id = q.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let text = q.get("question").and_then(Value::as_str).unwrap_or_default().to_owned();
                let options = crate::server::sessions::driver::question_options(&q);
                // An unanswered question is left out of the answers: Codex tells the model so.
                if let Some(a) = ctx.ask_question(text, options, Some(q.clone())).await {
                    answers.insert(id, json!({"answers": [a]}));
                }
            }
            Answered { reply: rpc_result(&req, json!({"answers": answers})), denied: None }
        }
        other => Answered { reply: rpc_error(&req, &format!("sbx-agent does not handle `{other}`")), denied: None },
    }
}

