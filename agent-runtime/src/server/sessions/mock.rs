//! The built-in `mock` agent: no LLM, a tiny script language, every event type. For tests, demos and
//! benchmarks of everything around an agent.
//!
//! Each line of a message is one step (anything not a step is echoed back):
//!
//! | line | what the mock does |
//! |---|---|
//! | `echo TEXT` | answers TEXT |
//! | `write PATH TEXT` | asks permission (edit), writes TEXT to PATH (relative to the session cwd) |
//! | `read PATH` | asks permission (read), answers the file's content |
//! | `run COMMAND` | asks permission (execute), runs `sh -c COMMAND`, answers its output |
//! | `ask QUESTION` | asks the user, with options `yes`/`no`, and answers what they said |
//! | `stream N` | answers with N text deltas |
//! | `sleep MS` | waits (a cancel ends the wait) |
//! | `fail MESSAGE` | the turn fails with MESSAGE |
//! | `crash` | the agent dies: the session ends with reason `error` |

use std::path::Path;
use std::time::Duration;

use super::driver::{AgentDriver, AgentGone, SessionSettings, TurnCtx, TurnEnd};
use crate::api::session::{ContentPart, EventSource, ItemKind, ItemStatus, PermissionKind, Role, Usage};

/// The mock agent of one session.
pub(crate) struct MockDriver {
    cwd: std::path::PathBuf,
    /// The session's environment: what a real agent's tools would run with.
    env: std::collections::BTreeMap<String, String>,
    turns: u64,
}

impl MockDriver {
    pub(crate) fn new(settings: &SessionSettings) -> Self {
        Self { cwd: settings.cwd.clone(), env: settings.request.env.clone(), turns: 0 }
    }
}

#[async_trait::async_trait]
impl AgentDriver for MockDriver {
    async fn turn(&mut self, text: &str, ctx: &TurnCtx) -> Result<TurnEnd, AgentGone> {
        self.turns += 1;
        let mut answer = String::new();
        let mut end = TurnEnd::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if ctx.cancel.is_cancelled() {
                end.cancelled = true;
                break;
            }
            let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            let said = match verb {
                "echo" => rest.to_owned(),
                "write" => {
                    let (path, content) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    let input = serde_json::json!({ "path": path, "content": content });
                    match tool(ctx, "write", PermissionKind::Edit, format!("write {path}"), input).await {
                        Some(call) => {
                            let target = self.cwd.join(path);
                            let result = write_file(&target, content).await;
                            let file = ContentPart::FileRef { path: path.to_owned(), action: "write".into(), diff: None };
                            call.finish(ctx, result.clone(), Some(file));
                            match result {
                                Ok(_) => format!("wrote {path}"),
                                Err(e) => format!("could not write {path}: {e}"),
                            }
                        }
                        None => format!("not allowed to write {path}"),
                    }
                }
                "read" => {
                    let input = serde_json::json!({ "path": rest });
                    match tool(ctx, "read", PermissionKind::Read, format!("read {rest}"), input).await {
                        Some(call) => {
                            let result = tokio::fs::read_to_string(self.cwd.join(rest)).await.map_err(|e| e.to_string());
                            call.finish(ctx, result.clone(), None);
                            result.unwrap_or_else(|e| format!("could not read {rest}: {e}"))
                        }
                        None => format!("not allowed to read {rest}"),
                    }
                }
                "run" => {
                    let input = serde_json::json!({ "command": rest });
                    match tool(ctx, "run", PermissionKind::Execute, format!("run `{rest}`"), input).await {
                        Some(call) => {
                            let result = run(&self.cwd, &self.env, rest).await;
                            call.finish(ctx, result.clone(), None);
                            result.unwrap_or_else(|e| e)
                        }
                        None => format!("not allowed to run `{rest}`"),
                    }
                }
                "ask" => {
                    let options = vec!["yes".to_owned(), "no".to_owned()];
                    match ctx.ask_question(rest.to_owned(), options, None).await {
                        Some(a) => format!("you answered: {a}"),
                        None => "you did not answer".to_owned(),
                    }
                }
                "stream" => {
                    let n: u64 = rest.parse().unwrap_or(10);
                    let item = ctx.start_item(ItemKind::Message, Some(Role::Assistant), None, None, Vec::new(), None);
                    let mut all = String::new();
                    for i in 0..n {
                        let piece = format!("{i} ");
                        all.push_str(&piece);
                        ctx.delta(&item, piece, None);
                        if i % 1024 == 1023 {
                            // Let the journal writer and the readers run between big bursts.
                            tokio::task::yield_now().await;
                        }
                    }
                    let content = vec![ContentPart::Text { text: all.clone() }];
                    ctx.complete_item(&item, ItemKind::Message, Some(Role::Assistant), None, None, ItemStatus::Completed, content, None);
                    answer.push_str(&all);
                    continue;
                }
                "sleep" => {
                    let ms: u64 = rest.parse().unwrap_or(1000);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                        _ = ctx.cancel.cancelled() => { end.cancelled = true; break; }
                    }
                    continue;
                }
                "fail" => {
                    let msg = if rest.is_empty() { "the mock agent was told to fail".to_owned() } else { rest.to_owned() };
                    ctx.error(EventSource::Agent, "agent_error", msg.clone(), None, None);
                    end.failed = Some(msg);
                    break;
                }
                "crash" => return Err(AgentGone("the mock agent crashed (as told)".into())),
                _ => line.to_owned(),
            };
            say(ctx, &said);
            if !answer.is_empty() {
                answer.push('\n');
            }
            answer.push_str(&said);
        }
        end.stop_reason = Some(if end.cancelled { "cancelled" } else { "end_turn" }.into());
        end.usage = Some(Usage { input_tokens: text.len() as u64, output_tokens: answer.len() as u64, ..Usage::default() });
        end.text = Some(answer);
        Ok(end)
    }

    async fn shutdown(&mut self) {}

    /// The mock has one mode; switching to it is accepted (which is what clients test against).
    async fn set_mode(&mut self, mode: &str) -> Result<(), String> {
        if mode == "default" {
            Ok(())
        } else {
            Err(format!("the mock agent has no mode `{mode}`; its modes: default"))
        }
    }
}

/// An assistant message with its text as one delta.
fn say(ctx: &TurnCtx, text: &str) {
    let item = ctx.start_item(ItemKind::Message, Some(Role::Assistant), None, None, Vec::new(), None);
    ctx.delta(&item, text.to_owned(), None);
    let content = vec![ContentPart::Text { text: text.to_owned() }];
    ctx.complete_item(&item, ItemKind::Message, Some(Role::Assistant), None, None, ItemStatus::Completed, content, None);
}

/// A tool call that was allowed to run.
struct Call {
    item: String,
    call_id: String,
    name: &'static str,
    input: serde_json::Value,
}

impl Call {
    fn finish(self, ctx: &TurnCtx, result: Result<String, String>, file: Option<ContentPart>) {
        let failed = result.is_err();
        let call = ContentPart::ToolCall { name: self.name.into(), call_id: self.call_id.clone(), arguments: self.input };
        let status = if failed { ItemStatus::Failed } else { ItemStatus::Completed };
        ctx.complete_item(&self.item, ItemKind::ToolCall, Some(Role::Assistant), None, None, status, vec![call], None);
        let (output, is_error) = match result {
            Ok(o) => (o, false),
            Err(e) => (e, true),
        };
        let mut content = vec![ContentPart::ToolResult { call_id: self.call_id, output, is_error }];
        content.extend(file);
        let res = ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), None, Some(self.item.clone()), Vec::new(), None);
        ctx.complete_item(&res, ItemKind::ToolResult, Some(Role::Tool), None, Some(self.item), status, content, None);
    }
}

/// Starts a tool call and asks permission; `None` (after a failed tool-call item) when refused.
async fn tool(ctx: &TurnCtx, name: &'static str, kind: PermissionKind, title: String, input: serde_json::Value) -> Option<Call> {
    let call_id = format!("call_{}", ctx.new_item_id());
    let part = ContentPart::ToolCall { name: name.into(), call_id: call_id.clone(), arguments: input.clone() };
    let item = ctx.start_item(ItemKind::ToolCall, Some(Role::Assistant), None, None, vec![part.clone()], None);
    let (decision, message) = ctx.ask_permission(name, kind, title, input.clone(), Some(item.clone()), None).await;
    if decision.allows() {
        return Some(Call { item, call_id, name, input });
    }
    ctx.complete_item(&item, ItemKind::ToolCall, Some(Role::Assistant), None, None, ItemStatus::Failed, vec![part], None);
    let output = message.unwrap_or_else(|| "permission denied".into());
    let res = ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), None, Some(item.clone()), Vec::new(), None);
    let content = vec![ContentPart::ToolResult { call_id, output, is_error: true }];
    ctx.complete_item(&res, ItemKind::ToolResult, Some(Role::Tool), None, Some(item), ItemStatus::Failed, content, None);
    None
}

async fn write_file(path: &Path, content: &str) -> Result<String, String> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| e.to_string())?;
    }
    tokio::fs::write(path, content).await.map_err(|e| e.to_string())?;
    Ok(format!("{} bytes", content.len()))
}

async fn run(cwd: &Path, env: &std::collections::BTreeMap<String, String>, command: &str) -> Result<String, String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env_remove(crate::server_env::TOKEN)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}(exit {})", out.status.code().unwrap_or(-1)))
    }
}
