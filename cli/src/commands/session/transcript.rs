//! Events as text: one-line summaries and the Markdown transcript.

use sbx_agent::api::session::{ContentPart, Event, EventData, Role};

use super::view::one_line;

/// A short description of an event for the human `events` listing.
pub(super) fn summary(ev: &Event) -> String {
    match &ev.body {
        EventData::SessionStarted(s) => format!("{} in {}", s.agent, s.cwd),
        EventData::TurnStarted(t) => t.turn_id.clone(),
        EventData::ItemStarted(i) | EventData::ItemCompleted(i) => {
            let kind = serde_json::to_value(i.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let text: String = i
                .content
                .iter()
                .map(|c| match c {
                    ContentPart::Text { text } => text.clone(),
                    ContentPart::ToolCall { name, .. } => name.clone(),
                    ContentPart::ToolResult { output, .. } => output.clone(),
                    ContentPart::FileRef { path, .. } => path.clone(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            one_line(&format!("{} {kind} {text}", i.item_id), 80)
        }
        EventData::ItemDelta(d) => one_line(&format!("{} {}", d.item_id, d.delta), 80),
        EventData::PermissionRequested(p) => format!("{} {}", p.permission_id, p.title),
        EventData::PermissionResolved(p) => format!("{} {:?} by {}", p.permission_id, p.decision, p.by),
        EventData::QuestionRequested(q) => format!("{} {}", q.question_id, q.question),
        EventData::QuestionResolved(q) => format!("{} {}", q.question_id, q.answer.as_deref().unwrap_or("(rejected)")),
        EventData::TurnCompleted(t) => format!("{} {:?}", t.turn_id, t.outcome),
        EventData::Error(e) => format!("{}: {}", e.code, e.message),
        EventData::SessionEnded(e) => format!("{:?} by {}", e.reason, e.terminated_by),
    }
}

/// A readable transcript: each turn's message, the agent's text, tool calls and their results.
pub fn markdown(session: &str, events: &[Event]) -> String {
    let mut md = String::new();
    let agent = events.iter().find_map(|e| match &e.body {
        EventData::SessionStarted(s) => Some(s.agent.clone()),
        _ => None,
    });
    md.push_str(&format!("# Session {session}{}\n", agent.map(|a| format!(" ({a})")).unwrap_or_default()));
    // A permission is shown under the tool call it is for. Agents ask before the call's item is
    // complete (and the call is shown when it completes), so a line written as the answer came would
    // land under whatever came before: for codex, the user's message.
    let mut item_of: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut completed: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut held: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for ev in events {
        match &ev.body {
            EventData::PermissionRequested(p) => {
                if let Some(item) = p.item_id.as_deref() {
                    item_of.insert(&p.permission_id, item);
                }
            }
            EventData::PermissionResolved(p) => {
                let line = format!("  - permission {}: {:?} (by {})\n", p.permission_id, p.decision, p.by);
                match item_of.get(p.permission_id.as_str()) {
                    Some(item) if !completed.contains(item) => held.entry(item).or_default().push_str(&line),
                    _ => md.push_str(&line),
                }
            }
            EventData::TurnStarted(t) => md.push_str(&format!("\n## {}\n", t.turn_id.replace('_', " "))),
            EventData::ItemCompleted(i) => {
                for part in &i.content {
                    match (i.role, part) {
                        (Some(Role::User), ContentPart::Text { text }) => md.push_str(&format!("\n**User:** {text}\n")),
                        (_, ContentPart::Text { text }) => md.push_str(&format!("\n{text}\n")),
                        (_, ContentPart::Reasoning { text }) => md.push_str(&format!("\n> _{}_\n", one_line(text, 400))),
                        (_, ContentPart::ToolCall { name, arguments, .. }) => {
                            md.push_str(&format!("\n- tool `{name}` `{}`\n", one_line(&arguments.to_string(), 200)))
                        }
                        (_, ContentPart::ToolResult { output, is_error, .. }) => md.push_str(&format!(
                            "  - {}: `{}`\n",
                            if *is_error { "failed" } else { "result" },
                            one_line(output, 200)
                        )),
                        (_, ContentPart::FileRef { path, action, diff }) => {
                            md.push_str(&format!("  - {action} `{path}`\n"));
                            if let Some(d) = diff {
                                md.push_str(&format!("\n```diff\n{d}\n```\n"));
                            }
                        }
                        _ => {}
                    }
                }
                completed.insert(&i.item_id);
                if let Some(lines) = held.remove(i.item_id.as_str()) {
                    md.push_str(&lines);
                }
            }
            EventData::QuestionRequested(q) => md.push_str(&format!("\n**Question:** {}\n", q.question)),
            EventData::QuestionResolved(q) => md.push_str(&format!("**Answer:** {}\n", q.answer.as_deref().unwrap_or("(none)"))),
            EventData::Error(e) => md.push_str(&format!("\n**Error** ({}): {}\n", e.code, e.message)),
            EventData::TurnCompleted(t) => {
                // Permissions of calls that never completed (a cancelled turn) are not lost.
                for (_, lines) in std::mem::take(&mut held) {
                    md.push_str(&lines);
                }
                let usage = t.usage.as_ref().map(|u| format!(", {} in / {} out tokens", u.input_tokens, u.output_tokens)).unwrap_or_default();
                md.push_str(&format!("\n_{:?} in {:.1}s{usage}_\n", t.outcome, t.duration_ms as f64 / 1000.0));
            }
            EventData::SessionEnded(e) => md.push_str(&format!("\n_Session ended: {:?}_\n", e.reason)),
            _ => {}
        }
    }
    md
}
