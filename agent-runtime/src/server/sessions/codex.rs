//! The `codex` adapter: Codex's `app-server`, JSON-RPC 2.0 over stdio (one JSON object per line), one
//! process and one Codex thread for the whole session.
//!
//! - Start: `initialize` → `initialized` → `thread/start` (or `thread/resume` of the thread a
//!   restarted runtime had, falling back to a new thread when Codex no longer has it). The sandbox
//!   mode is the session's `mode` (default `danger-full-access`: the sbx sandbox is the boundary),
//!   MCP servers go in the thread's `config` overrides.
//! - A turn is `turn/start`; its notifications become events until `turn/completed`: `agentMessage`
//!   and `reasoning` items become message and reasoning items with deltas, `commandExecution`,
//!   `fileChange`, `mcpToolCall`, … become a tool-call item plus a tool-result item (command output
//!   streams as deltas of the result), `thread/tokenUsage/updated` adds up to the turn's usage, and
//!   `error` / a failed turn become an `error` event.
//! - The approval policy is `untrusted`, so Codex asks (server→client `…/requestApproval`
//!   requests) before anything that is not a known-safe read; each ask goes through the session's
//!   permission policy or a person, concurrently with reading Codex's output. A refusal is a
//!   `decline`, which carries no text: the model is told "rejected by user" whatever the reply's
//!   message (that message still shows in the tool's result item).
//! - Cancel sends `turn/interrupt` and waits a little for `turn/completed`; a Codex that does not
//!   settle is killed and resumed (same thread) at the next turn.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::driver::{agent_command, collect_stderr, AgentDriver, AgentGone, SessionSettings, StderrTail, TurnCtx, TurnEnd};
use crate::api::session::{
    ContentPart, EventSource, ItemKind, ItemStatus, PermissionDecision, PermissionKind, Role, Usage,
};

/// How long Codex may take to answer one of our requests (it answers in milliseconds; a Codex that
/// takes this long is stuck, and a session must not hang on it).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cancelled turn may take to report `turn/completed` before Codex is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// The sandbox modes Codex has; the first is the default.
const MODES: [&str; 3] = ["danger-full-access", "workspace-write", "read-only"];
/// Notifications we never use: asking Codex not to send them keeps the stream lean.
const OPT_OUT: [&str; 5] =
    ["thread/started", "thread/status/changed", "account/rateLimits/updated", "remoteControl/status/changed", "skills/changed"];

struct Proc {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: StderrTail,
}

impl Proc {
    async fn send(&mut self, msg: &Value) -> Result<(), AgentGone> {
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(b'\n');
        let res = async {
            self.stdin.write_all(&bytes).await?;
            self.stdin.flush().await
        }
        .await;
        match res {
            Ok(()) => Ok(()),
            Err(e) => Err(self.gone(&format!("codex is not taking input ({e})")).await),
        }
    }

    /// Why Codex is gone, with its exit status and the last lines it wrote on stderr.
    async fn gone(&mut self, what: &str) -> AgentGone {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(s)) => s.to_string(),
            _ => {
                let _ = self.child.start_kill();
                "still running; killed".to_owned()
            }
        };
        let tail = strip_ansi(&self.stderr.last_words().await);
        AgentGone(format!("{what} ({status}): {tail}"))
    }

    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Sends request `id` and waits (bounded) for its answer: `Ok(result)` or `Err(error)` as Codex
    /// sent them. Outside a turn nothing can answer Codex's own requests, so they get an error, and
    /// notifications are dropped.
    async fn call(&mut self, id: u64, method: &str, params: Value) -> Result<Result<Value, Value>, AgentGone> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
                Err(_) => {
                    return Err(self.gone(&format!("codex did not answer `{method}` within {}s", RESPONSE_TIMEOUT.as_secs())).await)
                }
                Ok(Ok(Some(line))) => line,
                Ok(_) => return Err(self.gone(&format!("codex exited while starting (waiting for `{method}`)")).await),
            };
            let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
            match classify(&msg) {
                Msg::Response(rid) if rid == Some(id) => {
                    return Ok(match msg.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                    });
                }
                Msg::Request(method) => {
                    let reply = rpc_error(&msg, &format!("sbx-agent cannot answer `{method}` outside a turn"));
                    self.send(&reply).await?;
                }
                _ => {}
            }
        }
    }
}

enum Msg<'a> {
    /// A server→client request (its method).
    Request(&'a str),
    Notification(&'a str),
    /// An answer to one of our requests (our ids are numbers).
    Response(Option<u64>),
}

fn classify(msg: &Value) -> Msg<'_> {
    match (msg.get("method").and_then(Value::as_str), msg.get("id")) {
        (Some(m), Some(_)) => Msg::Request(m),
        (Some(m), None) => Msg::Notification(m),
        (None, id) => Msg::Response(id.and_then(Value::as_u64)),
    }
}

fn rpc_error(request: &Value, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": request.get("id").cloned().unwrap_or(Value::Null),
           "error": {"code": -32601, "message": message}})
}

fn rpc_result(request: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request.get("id").cloned().unwrap_or(Value::Null), "result": result})
}

/// Codex colours its log lines even into a pipe; the escapes would only clutter error messages.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Codex behind one session.
pub(crate) struct CodexDriver {
    settings: SessionSettings,
    binary: PathBuf,
    proc: Option<Proc>,
    next_id: u64,
    thread_id: String,
    /// Something to tell the user at the next turn (a thread that could not be resumed).
    notice: Option<String>,
}

impl CodexDriver {
    /// Starts `codex app-server` and opens (or resumes) the session's thread.
    pub(crate) async fn start(settings: SessionSettings) -> Result<Self, AgentGone> {
        let binary = settings.binary.clone().ok_or_else(|| AgentGone("no codex binary".into()))?;
        if let Some(mode) = settings.request.mode.as_deref().filter(|m| !MODES.contains(m)) {
            return Err(AgentGone(format!("codex has no mode `{mode}`; use one of {}", MODES.join(", "))));
        }
        super::claude::link_skills(&settings, &skills_dir(&settings));
        let resume = settings.native_session_id.clone();
        let mut driver = Self { settings, binary, proc: None, next_id: 1, thread_id: String::new(), notice: None };
        driver.launch(resume).await?;
        Ok(driver)
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn launch(&mut self, resume: Option<String>) -> Result<(), AgentGone> {
        let mut cmd = agent_command(&self.binary, &self.settings);
        cmd.arg("app-server");
        let mut child = cmd.spawn().map_err(|e| AgentGone(format!("cannot start {}: {e}", self.binary.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| AgentGone("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| AgentGone("no stdout".into()))?;
        let stderr = collect_stderr(child.stderr.take().ok_or_else(|| AgentGone("no stderr".into()))?);
        let mut proc = Proc { child, stdin, stdout: BufReader::new(stdout).lines(), stderr };
        match self.open_thread(&mut proc, resume).await {
            Ok(()) => {
                self.proc = Some(proc);
                Ok(())
            }
            Err(e) => {
                proc.kill().await;
                Err(e)
            }
        }
    }

    async fn open_thread(&mut self, proc: &mut Proc, resume: Option<String>) -> Result<(), AgentGone> {
        let init = json!({
            "clientInfo": {"name": "sbx-agent", "version": env!("CARGO_PKG_VERSION")},
            "capabilities": {"optOutNotificationMethods": OPT_OUT},
        });
        let id = self.id();
        if let Err(e) = proc.call(id, "initialize", init).await? {
            return Err(AgentGone(format!("codex refused `initialize`: {}", rpc_message(&e))));
        }
        proc.send(&json!({"jsonrpc": "2.0", "method": "initialized"})).await?;
        let mut params = json!({
            "cwd": self.settings.cwd,
            "approvalPolicy": "untrusted",
            "sandbox": self.settings.request.mode.as_deref().unwrap_or(MODES[0]),
        });
        if let Some(model) = &self.settings.request.model {
            params["model"] = json!(model);
        }
        if let Some(config) = mcp_config(&self.settings) {
            params["config"] = config;
        }
        if let Some(thread) = resume {
            let mut p = params.clone();
            p["threadId"] = json!(thread);
            // The history is already in our journal; Codex need not send it back.
            p["excludeTurns"] = json!(true);
            let id = self.id();
            match proc.call(id, "thread/resume", p).await? {
                Ok(r) => {
                    self.thread_id = str_at(&r, "/thread/id").unwrap_or(&thread).to_owned();
                    return Ok(());
                }
                Err(e) => {
                    let msg = format!("codex could not resume its thread {thread} ({}); this turn starts a new thread without the earlier conversation", rpc_message(&e));
                    tracing::warn!("{msg}");
                    self.notice = Some(msg);
                }
            }
        }
        let id = self.id();
        match proc.call(id, "thread/start", params).await? {
            Ok(r) => match str_at(&r, "/thread/id") {
                Some(t) => {
                    self.thread_id = t.to_owned();
                    Ok(())
                }
                None => Err(AgentGone(format!("codex answered `thread/start` without a thread id: {r}"))),
            },
            Err(e) => Err(AgentGone(format!("codex refused `thread/start`: {}", rpc_message(&e)))),
        }
    }
}

fn rpc_message(err: &Value) -> String {
    err.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| err.to_string())
}

/// Where Codex looks for skills: `$CODEX_HOME/skills` (default `~/.codex/skills`). An absolute path
/// replaces the home directory `link_skills` joins it to.
fn skills_dir(settings: &SessionSettings) -> String {
    let home = settings.request.env.get("CODEX_HOME").cloned().or_else(|| std::env::var("CODEX_HOME").ok());
    match home {
        Some(h) if !h.is_empty() => PathBuf::from(h).join("skills").to_string_lossy().into_owned(),
        _ => ".codex/skills".to_owned(),
    }
}

/// The session's MCP servers as Codex config (`mcp_servers.NAME`), for the thread's overrides.
fn mcp_config(settings: &SessionSettings) -> Option<Value> {
    let mut servers = serde_json::Map::new();
    for m in &settings.request.mcp_servers {
        let v = match (&m.command, &m.url) {
            (Some(cmd), _) => json!({"command": cmd, "args": m.args, "env": m.env}),
            (None, Some(url)) => json!({"url": url, "http_headers": m.headers}),
            (None, None) => continue,
        };
        servers.insert(m.name.clone(), v);
    }
    (!servers.is_empty()).then(|| json!({ "mcp_servers": servers }))
}

type Answer<'a> = Pin<Box<dyn Future<Output = Answered> + Send + 'a>>;

/// The reply to one of Codex's requests, and for a refused tool what Codex's item should say.
struct Answered {
    reply: Value,
    denied: Option<(String, String)>,
}

#[async_trait::async_trait]
impl AgentDriver for CodexDriver {
    async fn turn(&mut self, text: &str, ctx: &TurnCtx) -> Result<TurnEnd, AgentGone> {
        if self.proc.as_mut().is_some_and(|p| !matches!(p.child.try_wait(), Ok(None))) {
            tracing::warn!("codex exited between turns; starting it again on the same thread");
            self.proc = None;
        }
        if self.proc.is_none() {
            // Killed after a cancel that did not settle, or gone between turns: the same thread goes
            // on in a new process.
            let thread = (!self.thread_id.is_empty()).then(|| self.thread_id.clone());
            self.launch(thread).await?;
        }
        ctx.set_native_session_id(&self.thread_id);
        if let Some(notice) = self.notice.take() {
            status_item(ctx, "thread not resumed", Some(notice), None);
        }
        let turn_req = self.id();
        let params = json!({"threadId": self.thread_id, "input": [{"type": "text", "text": text}]});
        let thread_id = self.thread_id.clone();
        let mut next_id = self.next_id;
        let proc = self.proc.as_mut().ok_or_else(|| AgentGone("codex is not running".into()))?;
        proc.send(&json!({"jsonrpc": "2.0", "id": turn_req, "method": "turn/start", "params": params})).await?;

        let mut tr = Translator::default();
        let mut answers: FuturesUnordered<Answer<'_>> = FuturesUnordered::new();
        let mut cancelled = false;
        let mut interrupt_sent = false;
        // Until Codex has accepted the turn, a response is what we wait for; after a cancel, the end.
        let mut deadline = Some(Instant::now() + RESPONSE_TIMEOUT);
        let outcome: Result<TurnEnd, AgentGone> = loop {
            if cancelled && !interrupt_sent {
                if let Some(turn) = tr.turn_id.clone() {
                    let id = next_id;
                    next_id += 1;
                    let msg = json!({"jsonrpc": "2.0", "id": id, "method": "turn/interrupt",
                                     "params": {"threadId": thread_id, "turnId": turn}});
                    if let Err(gone) = proc.send(&msg).await {
                        break Err(gone);
                    }
                    interrupt_sent = true;
                }
            }
            let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                line = proc.stdout.next_line() => {
                    let line = match line {
                        Ok(Some(line)) => line,
                        _ => break Err(proc.gone("codex exited in the middle of a turn").await),
                    };
                    let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
                    match classify(&msg) {
                        Msg::Response(Some(id)) if id == turn_req => match msg.get("error") {
                            Some(e) => {
                                let message = format!("codex refused the turn: {}", rpc_message(e));
                                ctx.error(EventSource::Agent, "agent_error", message.clone(), None, Some(msg.clone()));
                                break Ok(TurnEnd { failed: Some(message), ..TurnEnd::default() });
                            }
                            None => {
                                if let Some(turn) = str_at(&msg, "/result/turn/id") {
                                    tr.set_turn(turn);
                                }
                                if !cancelled {
                                    deadline = None;
                                }
                            }
                        },
                        Msg::Response(_) => {}
                        Msg::Request(method) => {
                            let method = method.to_owned();
                            let item = msg.pointer("/params/itemId").and_then(Value::as_str).and_then(|i| tr.items.get(i));
                            let item_id = item.map(|o| o.item_id.clone());
                            let changes = item.map(|o| o.args.clone());
                            answers.push(Box::pin(answer(method, msg, item_id, changes, ctx)));
                        }
                        Msg::Notification(method) => {
                            let method = method.to_owned();
                            if let Some(end) = tr.notification(&method, &msg, ctx, cancelled) {
                                break Ok(end);
                            }
                        }
                    }
                }
                Some(done) = answers.next(), if !answers.is_empty() => {
                    if let Some((native, message)) = done.denied {
                        tr.denied.insert(native, message);
                    }
                    if let Err(gone) = proc.send(&done.reply).await {
                        break Err(gone);
                    }
                }
                _ = ctx.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    deadline = Some(Instant::now() + INTERRUPT_GRACE);
                }
                _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                    if cancelled {
                        tracing::warn!("codex did not end the interrupted turn within {}s; stopping it", INTERRUPT_GRACE.as_secs());
                        break Ok(TurnEnd { cancelled: true, stop_reason: Some("cancelled".into()), ..TurnEnd::default() });
                    }
                    break Err(proc.gone(&format!("codex did not accept the turn within {}s", RESPONSE_TIMEOUT.as_secs())).await);
                }
            }
        };
        if !answers.is_empty() {
            // Codex no longer waits for these; resolving them closes their `permission.requested`.
            ctx.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), async { while answers.next().await.is_some() {} }).await;
        }
        drop(answers);
        self.next_id = next_id;
        tr.close_open(ctx);
        match outcome {
            Ok(mut end) => {
                if cancelled && !tr.settled {
                    // Codex never confirmed the interrupt: a fresh process resumes the thread next turn.
                    if let Some(p) = self.proc.take() {
                        p.kill().await;
                    }
                }
                if end.usage.is_none() {
                    end.usage = tr.usage.clone();
                }
                if end.text.is_none() && !end.cancelled {
                    end.text = tr.last_text.clone();
                }
                Ok(end)
            }
            Err(gone) => {
                if let Some(p) = self.proc.take() {
                    p.kill().await;
                }
                Err(gone)
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // Codex's app-server exits at the end of its input; kill it if it lingers.
            drop(p.stdin);
            if tokio::time::timeout(Duration::from_secs(3), p.child.wait()).await.is_err() {
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
        }
    }
}

/// A status line from the runtime about the agent, as a system item.
fn status_item(ctx: &TurnCtx, label: &str, detail: Option<String>, raw: Option<Value>) {
    let content = vec![ContentPart::Status { label: label.to_owned(), detail }];
    let id = ctx.start_item(ItemKind::System, Some(Role::System), None, None, Vec::new(), raw);
    ctx.complete_item(&id, ItemKind::System, Some(Role::System), None, None, ItemStatus::Completed, content, None);
}

/// Answers one server→client request: approvals through the session's permission policy (or a
/// person), user input through questions, anything else with an error so Codex does not wait.
async fn answer(method: String, req: Value, item_id: Option<String>, item_args: Option<Value>, ctx: &TurnCtx) -> Answered {
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
                let options = super::driver::question_options(&q);
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

/// An item of Codex being shown as events.
struct Open {
    item_id: String,
    kind: ItemKind,
    /// The tool (for tool calls) and its arguments as shown.
    tool: String,
    args: Value,
    text: String,
    /// For tool calls: the result item, once output started streaming.
    result: Option<String>,
    output: String,
}

/// Turns Codex's notifications of one turn into events.
#[derive(Default)]
struct Translator {
    turn_id: Option<String>,
    /// Open items by Codex's item id.
    items: HashMap<String, Open>,
    /// Why tools were refused, by Codex's item id (for their result).
    denied: HashMap<String, String>,
    usage: Option<Usage>,
    last_text: Option<String>,
    /// The turn's error was already reported (by an `error` notification).
    error_reported: bool,
    /// Codex reported the end of the turn.
    settled: bool,
    /// Usage reports that came before this turn's id was known.
    early_usage: Vec<Value>,
}

impl Translator {
    fn set_turn(&mut self, turn: &str) {
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

    fn notification(&mut self, method: &str, msg: &Value, ctx: &TurnCtx, cancelled: bool) -> Option<TurnEnd> {
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
    fn close_open(&mut self, ctx: &TurnCtx) {
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
    let status = http.or_else(|| super::claude::classify_error(message).1);
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
        assert_eq!(strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m boom"), "2026 ERROR boom");
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
