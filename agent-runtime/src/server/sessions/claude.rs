//! The `claude` adapter: Claude Code in print mode with stream-json in and out, one process for many
//! turns.
//!
//! - Started as `claude -p --input-format stream-json --output-format stream-json --verbose
//!   --include-partial-messages`; each turn is one `user` line on stdin, and ends at the `result` line.
//! - `stream_event` lines wrap the Messages API stream: text and thinking blocks become message and
//!   reasoning items with deltas, `tool_use` blocks become tool-call items (arguments as deltas), and
//!   `tool_result` blocks in `user` lines become tool-result items.
//! - Every tool that needs permission goes through `--permission-prompt-tool mcp__sbx__approve`, an
//!   MCP server that is `sbx-agent permission-mcp` itself, relaying to this session's Unix socket; so
//!   the session's permission policy and `permission.requested` events apply to Claude like to every
//!   agent. `AskUserQuestion` arrives the same way and becomes `question.requested`.
//! - Cancel kills the process; the next turn starts it again with `--resume <session id>`, which is
//!   also how a session continues after a runtime restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use super::driver::{agent_command, collect_stderr, AgentDriver, AgentGone, SessionSettings, StderrTail, TurnCtx, TurnEnd};
use super::permission_mcp;
use crate::api::session::{ContentPart, EventSource, ItemKind, ItemStatus, PermissionKind, Role, Usage};

/// A permission request from the MCP relay, with where to send the decision.
struct Ask {
    args: Value,
    reply: oneshot::Sender<Value>,
}

struct Proc {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: StderrTail,
}

/// Claude Code behind one session.
pub(crate) struct ClaudeDriver {
    settings: SessionSettings,
    binary: PathBuf,
    proc: Option<Proc>,
    asks: mpsc::UnboundedReceiver<Ask>,
    listener: tokio::task::JoinHandle<()>,
    socket: PathBuf,
    /// Holds the socket's directory when the session's own path was too long for a socket address.
    _socket_dir: Option<tempfile::TempDir>,
}

/// A Unix socket address holds at most 107 bytes of path (`sun_path`, NUL included: 108).
const MAX_SOCKET_PATH: usize = 100;

/// Where the permission socket listens: in the session's directory, or, when that path is too long for
/// a socket address (a local sandbox under a deep state directory), in a private (0700) directory under
/// the temporary directory, removed with the driver.
fn socket_path(dir: &std::path::Path) -> Result<(PathBuf, Option<tempfile::TempDir>), AgentGone> {
    let inside = dir.join("permissions.sock");
    if inside.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok((inside, None));
    }
    let short = tempfile::Builder::new()
        .prefix("sbx-perm-")
        .tempdir()
        .map_err(|e| AgentGone(format!("cannot make a directory for the permission socket: {e}")))?;
    // Only this runtime's user may connect (the directory is empty until the socket is bound in it).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(short.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| AgentGone(format!("cannot restrict the permission socket's directory: {e}")))?;
    Ok((short.path().join("p.sock"), Some(short)))
}

impl ClaudeDriver {
    /// Prepares the session (permission socket, skills); the process starts at the first turn.
    pub(crate) async fn new(settings: SessionSettings) -> Result<Self, AgentGone> {
        let binary = settings.binary.clone().ok_or_else(|| AgentGone("no claude binary".into()))?;
        let (socket, socket_dir) = socket_path(&settings.dir)?;
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| AgentGone(format!("cannot listen on {}: {e}", socket.display())))?;
        let (tx, asks) = mpsc::unbounded_channel();
        let listener = tokio::spawn(relay(listener, tx));
        link_skills(&settings, ".claude/skills");
        Ok(Self { settings, binary, proc: None, asks, listener, socket, _socket_dir: socket_dir })
    }

    fn spawn(&mut self) -> Result<(), AgentGone> {
        let me = match &self.settings.helper_exe {
            Some(p) => p.clone(),
            None => crate::server::own_exe().map_err(|e| AgentGone(format!("cannot find sbx-agent itself: {e}")))?,
        };
        let mut servers = serde_json::Map::new();
        servers.insert(
            permission_mcp::SERVER_NAME.into(),
            json!({"command": me, "args": ["permission-mcp", "--socket", self.socket]}),
        );
        for m in &self.settings.request.mcp_servers {
            let v = match (&m.command, &m.url) {
                (Some(cmd), _) => json!({"command": cmd, "args": m.args, "env": m.env}),
                (None, Some(url)) => json!({"type": "http", "url": url, "headers": m.headers}),
                (None, None) => continue,
            };
            servers.insert(m.name.clone(), v);
        }
        let mcp = json!({ "mcpServers": servers }).to_string();
        let mut cmd = agent_command(&self.binary, &self.settings);
        cmd.args(["-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose", "--include-partial-messages"])
            .arg("--permission-prompt-tool")
            .arg(format!("mcp__{}__{}", permission_mcp::SERVER_NAME, permission_mcp::TOOL_NAME))
            .arg("--mcp-config")
            .arg(mcp);
        if let Some(model) = &self.settings.request.model {
            cmd.arg("--model").arg(model);
        }
        if let Some(mode) = &self.settings.request.mode {
            cmd.arg("--permission-mode").arg(mode);
        }
        if let Some(native) = &self.settings.native_session_id {
            cmd.arg("--resume").arg(native);
        }
        let mut child = cmd.spawn().map_err(|e| AgentGone(format!("cannot start {}: {e}", self.binary.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| AgentGone("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| AgentGone("no stdout".into()))?;
        let stderr = collect_stderr(child.stderr.take().ok_or_else(|| AgentGone("no stderr".into()))?);
        self.proc = Some(Proc { child, stdin, stdout: BufReader::new(stdout).lines(), stderr });
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
        }
    }
}

#[async_trait::async_trait]
impl AgentDriver for ClaudeDriver {
    async fn turn(&mut self, text: &str, ctx: &TurnCtx) -> Result<TurnEnd, AgentGone> {
        self.settings.native_session_id = ctx.shared.native_session_id.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(failed) = super::llm::preflight("claude", &self.settings, ctx).await {
            return Ok(failed);
        }
        if self.proc.is_none() {
            self.spawn()?;
        }
        let line = json!({"type": "user", "message": {"role": "user", "content": text}, "parent_tool_use_id": null,
                          "session_id": self.settings.native_session_id.clone().unwrap_or_else(|| "default".into())});
        {
            let p = self.proc.as_mut().ok_or_else(|| AgentGone("not started".into()))?;
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            if let Err(e) = async { p.stdin.write_all(&bytes).await?; p.stdin.flush().await }.await {
                let _ = p.child.wait().await;
                let tail = p.stderr.last_words().await;
                self.proc = None;
                return Err(AgentGone(format!("claude is not taking input ({e}); its last words: {tail}")));
            }
        }
        let mut tr = Translator::default();
        let mut permissions: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = FuturesUnordered::new();
        let proc = self.proc.as_mut().ok_or_else(|| AgentGone("not started".into()))?;
        let outcome = loop {
            tokio::select! {
                line = proc.stdout.next_line() => match line {
                    Ok(Some(line)) => {
                        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                        if let Some(end) = tr.line(v, ctx) {
                            break Ok(end);
                        }
                    }
                    _ => {
                        let status = proc.child.wait().await.ok();
                        let tail = proc.stderr.last_words().await;
                        break Err(AgentGone(format!(
                            "claude exited ({}) in the middle of a turn: {tail}",
                            status.map(|s| s.to_string()).unwrap_or_else(|| "unknown status".into()),
                        )));
                    }
                },
                Some(ask) = self.asks.recv() => {
                    let item = ask.args.get("tool_use_id").and_then(Value::as_str).and_then(|id| tr.items_by_call.get(id).cloned());
                    permissions.push(Box::pin(answer(ask, item, ctx)));
                }
                Some(()) = permissions.next(), if !permissions.is_empty() => {}
                _ = ctx.cancel.cancelled() => break Ok(TurnEnd { cancelled: true, stop_reason: Some("cancelled".into()), ..TurnEnd::default() }),
            }
        };
        drop(permissions);
        match outcome {
            Ok(end) if end.cancelled => {
                // Claude Code has no interrupt we can rely on over stream-json: stop it; the next turn
                // resumes its session.
                tr.close_open(ctx, ItemStatus::Failed);
                self.kill().await;
                Ok(end)
            }
            Ok(end) => Ok(end),
            Err(gone) => {
                tr.close_open(ctx, ItemStatus::Failed);
                self.proc = None;
                Err(gone)
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // Closing stdin asks Claude Code to finish; kill it if it lingers.
            drop(p.stdin);
            if tokio::time::timeout(std::time::Duration::from_secs(3), p.child.wait()).await.is_err() {
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
        }
        self.listener.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Accepts the MCP relay's connections and hands each request to the turn.
async fn relay(listener: UnixListener, tx: mpsc::UnboundedSender<Ask>) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let Ok(Some(line)) = lines.next_line().await else { return };
            let args: Value = serde_json::from_str(&line).unwrap_or(json!({}));
            let (reply, rx) = oneshot::channel();
            if tx.send(Ask { args, reply }).is_err() {
                return;
            }
            let decision = rx.await.unwrap_or_else(|_| json!({"behavior": "deny", "message": "the turn ended"}));
            let _ = write.write_all(format!("{decision}\n").as_bytes()).await;
        });
    }
}

/// Answers one permission request through the session (policy or a person).
async fn answer(ask: Ask, item: Option<String>, ctx: &TurnCtx) {
    let tool = ask.args.get("tool_name").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let input = ask.args.get("input").cloned().unwrap_or(json!({}));
    let decision = if tool == "AskUserQuestion" {
        ask_question(&input, ctx).await
    } else {
        let (kind, title) = classify(&tool, &input);
        let (decision, message) = ctx.ask_permission(&tool, kind, title, input.clone(), item, Some(ask.args.clone())).await;
        if decision.allows() {
            json!({"behavior": "allow", "updatedInput": input})
        } else {
            json!({"behavior": "deny", "message": message.unwrap_or_else(|| "denied".into())})
        }
    };
    let _ = ask.reply.send(decision);
}

/// `AskUserQuestion` → `question.requested` for each question; the answers go back as its input.
async fn ask_question(input: &Value, ctx: &TurnCtx) -> Value {
    let mut answers = serde_json::Map::new();
    for q in input.get("questions").and_then(Value::as_array).cloned().unwrap_or_default() {
        let text = q.get("question").and_then(Value::as_str).unwrap_or_default().to_owned();
        let options = super::driver::question_options(&q);
        match ctx.ask_question(text.clone(), options, Some(q.clone())).await {
            Some(a) => {
                answers.insert(text, Value::String(a));
            }
            None => return json!({"behavior": "deny", "message": "the user declined to answer"}),
        }
    }
    let mut updated = input.clone();
    if let Some(obj) = updated.as_object_mut() {
        obj.insert("answers".into(), Value::Object(answers));
    }
    json!({"behavior": "allow", "updatedInput": updated})
}

/// What a Claude Code tool does, and a line for a person.
fn classify(tool: &str, input: &Value) -> (PermissionKind, String) {
    let s = |k: &str| input.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match tool {
        "Read" | "Glob" | "Grep" | "LS" | "NotebookRead" => (PermissionKind::Read, format!("{tool} {}", s("file_path") + &s("pattern") + &s("path"))),
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => (PermissionKind::Edit, format!("{} {}", tool.to_lowercase(), s("file_path") + &s("notebook_path"))),
        "Bash" => (PermissionKind::Execute, format!("run `{}`", s("command"))),
        _ => (PermissionKind::Other, format!("use {tool}")),
    }
}

/// An item being streamed: which kind, its id, and what has arrived.
struct Open {
    item_id: String,
    kind: ItemKind,
    native: Option<String>,
    text: String,
    tool_name: Option<String>,
    call_id: Option<String>,
}

/// Turns Claude Code's lines into events; returns the turn's end at the `result` line.
#[derive(Default)]
struct Translator {
    /// Open blocks of the message being streamed, by content index.
    blocks: HashMap<u64, Open>,
    message_id: Option<String>,
    /// Messages already shown from stream events (their complete `assistant` line adds nothing).
    streamed: Vec<String>,
    /// Tool-call items by the model's tool_use id.
    items_by_call: HashMap<String, String>,
    last_text: Option<String>,
}

impl Translator {
    fn line(&mut self, v: Value, ctx: &TurnCtx) -> Option<TurnEnd> {
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "system" => {
                if let Some(id) = v.get("session_id").and_then(Value::as_str) {
                    ctx.set_native_session_id(id);
                }
                if v.get("subtype").and_then(Value::as_str) == Some("init") {
                    // What Claude Code started with (model, tools, MCP servers, skills), kept in `raw`.
                    let detail = v.get("model").and_then(Value::as_str).map(|m| format!("model {m}"));
                    let part = vec![ContentPart::Status { label: "init".into(), detail }];
                    let item = ctx.start_item(ItemKind::System, Some(Role::System), None, None, Vec::new(), None);
                    ctx.complete_item(&item, ItemKind::System, Some(Role::System), None, None, ItemStatus::Completed, part, Some(v));
                }
            }
            "stream_event" => self.stream_event(&v, ctx),
            "assistant" => self.assistant(&v, ctx),
            "user" => self.tool_results(&v, ctx),
            "result" => return Some(self.result(v, ctx)),
            _ => {}
        }
        None
    }

    fn stream_event(&mut self, v: &Value, ctx: &TurnCtx) {
        let Some(ev) = v.get("event") else { return };
        let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ev.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                self.message_id = ev.pointer("/message/id").and_then(Value::as_str).map(str::to_owned);
                if let Some(id) = &self.message_id {
                    self.streamed.push(id.clone());
                }
            }
            "content_block_start" => {
                let block = ev.get("content_block").cloned().unwrap_or(json!({}));
                let native = self.message_id.as_ref().map(|m| format!("{m}#{index}"));
                let open = match block.get("type").and_then(Value::as_str).unwrap_or_default() {
                    "text" => {
                        let id = ctx.start_item(ItemKind::Message, Some(Role::Assistant), native.clone(), None, Vec::new(), Some(v.clone()));
                        Open { item_id: id, kind: ItemKind::Message, native, text: String::new(), tool_name: None, call_id: None }
                    }
                    "thinking" => {
                        let id = ctx.start_item(ItemKind::Reasoning, Some(Role::Assistant), native.clone(), None, Vec::new(), Some(v.clone()));
                        Open { item_id: id, kind: ItemKind::Reasoning, native, text: String::new(), tool_name: None, call_id: None }
                    }
                    "tool_use" | "server_tool_use" => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("tool").to_owned();
                        let call_id = block.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                        let part = ContentPart::ToolCall { name: name.clone(), call_id: call_id.clone(), arguments: json!({}) };
                        let id = ctx.start_item(ItemKind::ToolCall, Some(Role::Assistant), Some(call_id.clone()), None, vec![part], Some(v.clone()));
                        self.items_by_call.insert(call_id.clone(), id.clone());
                        Open { item_id: id, kind: ItemKind::ToolCall, native: Some(call_id.clone()), text: String::new(), tool_name: Some(name), call_id: Some(call_id) }
                    }
                    _ => return,
                };
                self.blocks.insert(index, open);
            }
            "content_block_delta" => {
                let Some(open) = self.blocks.get_mut(&index) else { return };
                let d = ev.get("delta").cloned().unwrap_or(json!({}));
                let piece = d.get("text").or_else(|| d.get("thinking")).or_else(|| d.get("partial_json")).and_then(Value::as_str);
                if let Some(piece) = piece {
                    open.text.push_str(piece);
                    ctx.delta(&open.item_id, piece.to_owned(), Some(v.clone()));
                }
            }
            "content_block_stop" => {
                if let Some(open) = self.blocks.remove(&index) {
                    self.complete(open, ItemStatus::Completed, ctx, Some(v.clone()));
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, open: Open, status: ItemStatus, ctx: &TurnCtx, raw: Option<Value>) {
        let content = match open.kind {
            ItemKind::Message => {
                self.last_text = Some(open.text.clone());
                vec![ContentPart::Text { text: open.text }]
            }
            ItemKind::Reasoning => vec![ContentPart::Reasoning { text: open.text }],
            _ => {
                let arguments = serde_json::from_str(&open.text).unwrap_or(json!({}));
                let mut parts = Vec::new();
                if let Some(file) = arguments.get("file_path").and_then(Value::as_str) {
                    let action = match open.tool_name.as_deref() {
                        Some("Read") => "read",
                        Some("Write") => "write",
                        _ => "patch",
                    };
                    parts.push(ContentPart::FileRef { path: file.to_owned(), action: action.into(), diff: None });
                }
                parts.insert(0, ContentPart::ToolCall { name: open.tool_name.unwrap_or_default(), call_id: open.call_id.unwrap_or_default(), arguments });
                parts
            }
        };
        ctx.complete_item(&open.item_id, open.kind, Some(Role::Assistant), open.native, None, status, content, raw);
    }

    /// Closes blocks left open by a cancel or crash.
    fn close_open(&mut self, ctx: &TurnCtx, status: ItemStatus) {
        let mut open: Vec<(u64, Open)> = self.blocks.drain().collect();
        open.sort_by_key(|(i, _)| *i);
        for (_, o) in open {
            self.complete(o, status, ctx, None);
        }
    }

    /// A complete assistant message: only new if it was not streamed (partial messages off).
    fn assistant(&mut self, v: &Value, ctx: &TurnCtx) {
        let id = v.pointer("/message/id").and_then(Value::as_str).unwrap_or_default();
        if self.streamed.iter().any(|s| s == id) {
            return;
        }
        for block in v.pointer("/message/content").and_then(Value::as_array).cloned().unwrap_or_default() {
            match block.get("type").and_then(Value::as_str).unwrap_or_default() {
                "text" => {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let item = ctx.start_item(ItemKind::Message, Some(Role::Assistant), Some(id.to_owned()), None, Vec::new(), Some(v.clone()));
                    ctx.delta(&item, text.clone(), None);
                    self.last_text = Some(text.clone());
                    ctx.complete_item(&item, ItemKind::Message, Some(Role::Assistant), Some(id.to_owned()), None, ItemStatus::Completed, vec![ContentPart::Text { text }], None);
                }
                "tool_use" => {
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("tool").to_owned();
                    let call_id = block.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let part = ContentPart::ToolCall { name, call_id: call_id.clone(), arguments: block.get("input").cloned().unwrap_or(json!({})) };
                    let item = ctx.start_item(ItemKind::ToolCall, Some(Role::Assistant), Some(call_id.clone()), None, vec![part.clone()], Some(v.clone()));
                    self.items_by_call.insert(call_id.clone(), item.clone());
                    ctx.complete_item(&item, ItemKind::ToolCall, Some(Role::Assistant), Some(call_id), None, ItemStatus::Completed, vec![part], None);
                }
                _ => {}
            }
        }
    }

    /// `tool_result` blocks in a `user` line.
    fn tool_results(&mut self, v: &Value, ctx: &TurnCtx) {
        let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) else { return };
        for block in blocks {
            if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                continue;
            }
            let call_id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let output = match block.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
                _ => String::new(),
            };
            let parent = self.items_by_call.get(&call_id).cloned();
            let status = if is_error { ItemStatus::Failed } else { ItemStatus::Completed };
            let item = ctx.start_item(ItemKind::ToolResult, Some(Role::Tool), Some(call_id.clone()), parent.clone(), Vec::new(), Some(v.clone()));
            let content = vec![ContentPart::ToolResult { call_id: call_id.clone(), output, is_error }];
            ctx.complete_item(&item, ItemKind::ToolResult, Some(Role::Tool), Some(call_id), parent, status, content, None);
        }
    }

    fn result(&mut self, v: Value, ctx: &TurnCtx) -> TurnEnd {
        self.close_open(ctx, ItemStatus::Failed);
        if let Some(id) = v.get("session_id").and_then(Value::as_str) {
            ctx.set_native_session_id(id);
        }
        let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false)
            || v.get("subtype").and_then(Value::as_str).is_some_and(|s| s != "success");
        let text = v.get("result").and_then(Value::as_str).map(str::to_owned);
        let usage = v.get("usage").map(|u| {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            Usage {
                input_tokens: n("input_tokens"),
                output_tokens: n("output_tokens"),
                cache_read_tokens: n("cache_read_input_tokens"),
                cache_write_tokens: n("cache_creation_input_tokens"),
            }
        });
        let mut end = TurnEnd {
            stop_reason: v.get("stop_reason").and_then(Value::as_str).map(str::to_owned),
            text: text.clone().or_else(|| self.last_text.clone()),
            usage,
            cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
            ..TurnEnd::default()
        };
        if is_error {
            let message = text
                .filter(|t| !t.is_empty())
                .or_else(|| v.get("errors").map(|e| e.to_string()))
                .unwrap_or_else(|| format!("claude ended the turn with {}", v.get("subtype").and_then(Value::as_str).unwrap_or("an error")));
            let (code, mut status) = classify_error(&message);
            // Claude Code reports the model API's status separately; prefer it to parsing the text.
            if let Some(s) = v.get("api_error_status").and_then(Value::as_u64) {
                status = u16::try_from(s).ok();
            }
            let code = match status {
                Some(401) | Some(403) => "model_auth",
                Some(429) => "model_rate_limited",
                Some(_) => "model_error",
                None => code,
            };
            ctx.error(EventSource::Agent, code, message.clone(), status, Some(v));
            end.failed = Some(message);
        }
        end
    }
}

/// The error code and HTTP status for a model API failure as Claude Code reports it ("API Error: 401 …").
pub(crate) fn classify_error(message: &str) -> (&'static str, Option<u16>) {
    let status = message
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3)
        .filter_map(|w| w.parse::<u16>().ok())
        .find(|s| (400..600).contains(s));
    let code = match status {
        Some(401) | Some(403) => "model_auth",
        Some(429) => "model_rate_limited",
        Some(_) => "model_error",
        None if message.to_lowercase().contains("auth") => "model_auth",
        None => "agent_error",
    };
    (code, status)
}

/// Makes each skill directory visible to the agent under `~/<subdir>/<name>` (a symlink; existing
/// entries are left alone).
pub(crate) fn link_skills(settings: &SessionSettings, subdir: &str) {
    let Some(home) = settings.request.env.get("HOME").cloned().or_else(|| std::env::var("HOME").ok()) else { return };
    let dir = PathBuf::from(home).join(subdir);
    for skill in &settings.request.skills {
        let src = settings.cwd.join(skill);
        let Some(name) = src.file_name() else { continue };
        let dst = dir.join(name);
        if dst.exists() {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::os::unix::fs::symlink(&src, &dst)) {
            tracing::warn!(skill = %src.display(), error = %e, "cannot hand a skill to the agent");
        }
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    #[test]
    fn a_socket_path_too_long_for_an_address_moves_to_a_private_temp_dir() {
        let (p, held) = socket_path(std::path::Path::new("/s/ses_1")).unwrap();
        assert_eq!((p, held.is_none()), (PathBuf::from("/s/ses_1/permissions.sock"), true));
        let deep = PathBuf::from("/tmp").join("d".repeat(120));
        let (p, held) = socket_path(&deep).unwrap();
        let held = held.expect("a directory of its own");
        assert!(p.starts_with(held.path()) && p.as_os_str().len() <= MAX_SOCKET_PATH, "{}", p.display());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(held.path()).unwrap().permissions().mode() & 0o777, 0o700);
        std::os::unix::net::UnixListener::bind(&p).expect("binds");
    }
}
