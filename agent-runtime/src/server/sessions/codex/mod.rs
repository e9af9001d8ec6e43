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

use std::path::PathBuf;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

mod approvals;
mod translate;

use approvals::{answer, Answer};
use translate::Translator;

use super::driver::{agent_command, collect_stderr, AgentDriver, AgentGone, SessionSettings, StderrTail, TurnCtx, TurnEnd};
use crate::api::session::{
    ContentPart, EventSource, ItemKind, ItemStatus, Role,
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
        let status = super::driver::exit_status_or_kill(&mut self.child).await;
        let tail = strip_ansi(&self.stderr.last_words().await);
        AgentGone(format!("{what} ({status}): {tail}"))
    }

    async fn kill(mut self) {
        super::driver::kill_agent(&mut self.child).await;
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

#[async_trait::async_trait]
impl AgentDriver for CodexDriver {
    async fn turn(&mut self, text: &str, ctx: &TurnCtx) -> Result<TurnEnd, AgentGone> {
        if let Some(failed) = super::llm::preflight("codex", &self.settings, ctx).await {
            return Ok(failed);
        }
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
        if let Some(p) = self.proc.take() {
            // Codex's app-server exits at the end of its input; kill it if it lingers.
            super::driver::close_agent(p.child, p.stdin).await;
        }
    }
}

/// A status line from the runtime about the agent, as a system item.
fn status_item(ctx: &TurnCtx, label: &str, detail: Option<String>, raw: Option<Value>) {
    let content = vec![ContentPart::Status { label: label.to_owned(), detail }];
    let id = ctx.start_item(ItemKind::System, Some(Role::System), None, None, Vec::new(), raw);
    ctx.complete_item(&id, ItemKind::System, Some(Role::System), None, None, ItemStatus::Completed, content, None);
}

