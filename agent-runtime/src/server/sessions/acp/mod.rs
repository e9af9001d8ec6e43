//! The generic adapter for agents that speak the Agent Client Protocol (ACP: JSON-RPC 2.0, one
//! object per line, over the agent's stdio): Mistral's `vibe-acp`, `gemini --acp`, `opencode acp`,
//! `openhands acp`, and any agent configured in `<state>/agents/acp.json` (see `config.rs`). One
//! process and one ACP session for the whole sbx session.
//!
//! - Start: `initialize` (protocol version 1; we offer `fs` and `terminal`) → `session/new` with the
//!   session's cwd and MCP servers (or `session/load` of the session a restarted runtime had, when
//!   the agent can) → `session/set_mode` when the session (or the preset) names a mode. An agent that
//!   exits, refuses or stays silent here fails the session's creation with what it said on stderr.
//! - A turn is `session/prompt`; its `session/update` notifications become events (`translate.rs`)
//!   until the prompt's answer (`stopReason`, `usage`). The agent's requests (permission, `fs/*`,
//!   `terminal/*`: `client.rs`) are answered concurrently with reading its output.
//! - Output that is not JSON-RPC becomes an `error` event (code `agent_error`); the turn goes on.
//! - Cancel sends `session/cancel`, answers open permission requests with `cancelled` and waits a
//!   little for the prompt's answer; an agent that does not stop is killed, and the next turn starts
//!   it again with a new ACP session (saying so).
//!
//! The ACP types are written here as JSON (serde_json) rather than taken from the
//! `agent-client-protocol` crate: its connection type is not `Send` and pulls in an MCP SDK and
//! schemars, and a tolerant reader suits agents that each follow a different schema release.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod client;
pub(crate) mod config;
mod rpc;
mod translate;

use client::{Answer, Client};
use config::AcpLaunch;
use rpc::Incoming;
use translate::{status_item, Translator};

use super::driver::{agent_command, collect_stderr, AgentDriver, AgentGone, SessionSettings, StderrTail, TurnCtx, TurnEnd};
use crate::api::session::{EventSource, Usage};

/// How long the agent may take to answer `initialize`, `session/new` and the like (vibe takes ~3 s
/// to start; an agent that takes this long is stuck).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a cancelled turn may take to end before the agent is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// The ACP version we speak.
const PROTOCOL_VERSION: u64 = 1;

struct Proc {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    rx: mpsc::UnboundedReceiver<Incoming>,
    stderr: StderrTail,
}

impl Proc {
    async fn send(&mut self, msg: &Value) -> Result<(), AgentGone> {
        match rpc::write(&mut self.stdin, msg).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.gone(&format!("the agent is not taking input ({e})")).await),
        }
    }

    /// Why the agent is gone, with its exit status and the last lines it wrote on stderr.
    async fn gone(&mut self, what: &str) -> AgentGone {
        let status = super::driver::exit_status_or_kill(&mut self.child).await;
        AgentGone(format!("{what} ({status}): {}", self.stderr.last_words().await))
    }

    async fn kill(mut self) {
        super::driver::kill_agent(&mut self.child).await;
    }

    /// Sends request `id` and waits (bounded) for its answer, outside a turn: the agent's own
    /// requests get an error (nobody could answer them), notifications go to `backlog` (for the next
    /// turn; `None`: dropped, as a loaded session's replayed history, which the journal already has),
    /// bad lines to `notices`.
    async fn call(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
        notices: &mut Vec<String>,
        mut backlog: Option<&mut Vec<Value>>,
    ) -> Result<Result<Value, Value>, AgentGone> {
        self.send(&rpc::request(id, method, params)).await?;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(self.gone(&format!("the agent did not answer `{method}` within {}s", RESPONSE_TIMEOUT.as_secs())).await),
                Ok(None | Some(Incoming::Closed)) => return Err(self.gone(&format!("the agent exited during `{method}`")).await),
                Ok(Some(m)) => m,
            };
            match msg {
                Incoming::Response { id: Some(rid), result, .. } if rid == id => return Ok(result),
                Incoming::Request(req) => {
                    let m = req.get("method").and_then(Value::as_str).unwrap_or_default();
                    let reply = rpc::error(&req, rpc::METHOD_NOT_FOUND, &format!("sbx-agent cannot answer `{m}` outside a turn"));
                    self.send(&reply).await?;
                }
                Incoming::Malformed(what) => notices.push(format!("malformed JSON-RPC from the agent during `{method}`: {what}")),
                Incoming::Notification(n) => {
                    if let Some(b) = backlog.as_deref_mut() {
                        b.push(n);
                    }
                }
                _ => {}
            }
        }
    }
}

/// An ACP agent behind one session.
pub(crate) struct AcpDriver {
    agent: String,
    settings: SessionSettings,
    binary: PathBuf,
    launch: AcpLaunch,
    proc: Option<Proc>,
    next_id: u64,
    session_id: String,
    /// Things to report as `error` events at the next turn (bad output while starting, a lost session).
    notices: Vec<String>,
    /// Notifications that came outside a turn (while starting): shown at the start of the next one.
    backlog: Vec<Value>,
    client: Client,
    /// The session's cost as the agent last reported it (to give each turn its share).
    cost_usd: Option<f64>,
}

impl AcpDriver {
    /// Starts the agent and opens (or loads) its ACP session.
    pub(crate) async fn start(agent: &str, launch: AcpLaunch, settings: SessionSettings) -> Result<Self, AgentGone> {
        let binary = settings.binary.clone().ok_or_else(|| AgentGone(format!("no binary for the {agent} agent")))?;
        let cwd = std::fs::canonicalize(&settings.cwd).unwrap_or_else(|_| settings.cwd.clone());
        let client = Client { cwd, env: settings.request.env.clone(), processes: settings.processes.clone(), terminals: Arc::default() };
        let resume = settings.native_session_id.clone();
        let mut d = Self {
            agent: agent.to_owned(),
            settings,
            binary,
            launch,
            proc: None,
            next_id: 1,
            session_id: String::new(),
            notices: Vec::new(),
            backlog: Vec::new(),
            client,
            cost_usd: None,
        };
        d.launch(resume).await?;
        Ok(d)
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn launch(&mut self, resume: Option<String>) -> Result<(), AgentGone> {
        let mut cmd = agent_command(&self.binary, &self.settings);
        cmd.args(&self.launch.args);
        for (k, v) in &self.launch.env {
            if !self.settings.request.env.contains_key(k) {
                cmd.env(k, v);
            }
        }
        let mut child = cmd.spawn().map_err(|e| AgentGone(format!("cannot start {}: {e}", self.binary.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| AgentGone("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| AgentGone("no stdout".into()))?;
        let stderr = collect_stderr(child.stderr.take().ok_or_else(|| AgentGone("no stderr".into()))?);
        let (tx, rx) = mpsc::unbounded_channel();
        rpc::spawn_reader(BufReader::new(stdout), tx);
        let mut proc = Proc { child, stdin, rx, stderr };
        match self.open_session(&mut proc, resume).await {
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

    async fn open_session(&mut self, proc: &mut Proc, resume: Option<String>) -> Result<(), AgentGone> {
        let agent = self.agent.clone();
        let init = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": {"fs": {"readTextFile": true, "writeTextFile": true}, "terminal": self.client.processes.is_some()},
            "clientInfo": {"name": "sbx-agent", "title": "sbx", "version": env!("CARGO_PKG_VERSION")},
        });
        let id = self.id();
        let caps = match proc.call(id, "initialize", init, &mut self.notices, Some(&mut self.backlog)).await? {
            Ok(r) => r,
            Err(e) => return Err(AgentGone(format!("the {agent} agent refused `initialize`: {}", rpc::error_text(&e)))),
        };
        let version = caps.get("protocolVersion").and_then(Value::as_u64);
        if version != Some(PROTOCOL_VERSION) {
            return Err(AgentGone(format!(
                "the {agent} agent speaks ACP version {}, sbx speaks version {PROTOCOL_VERSION}",
                caps.get("protocolVersion").map(Value::to_string).unwrap_or_else(|| "(none given)".into())
            )));
        }
        let can_load = caps.pointer("/agentCapabilities/loadSession").and_then(Value::as_bool).unwrap_or(false);
        let http_mcp = caps.pointer("/agentCapabilities/mcpCapabilities/http").and_then(Value::as_bool).unwrap_or(false);
        let mcp = self.mcp_servers(http_mcp);
        let cwd = self.client.cwd.to_string_lossy().into_owned();
        let mut modes = Value::Null;
        let mut opened = false;
        if let Some(sid) = resume.filter(|_| can_load) {
            let id = self.id();
            match proc.call(id, "session/load", json!({"sessionId": sid, "cwd": cwd, "mcpServers": mcp}), &mut self.notices, None).await? {
                Ok(r) => {
                    self.session_id = sid;
                    modes = r.get("modes").cloned().unwrap_or(Value::Null);
                    opened = true;
                }
                Err(e) => self.notices.push(format!(
                    "the {agent} agent could not load its session {sid} ({}); this turn starts a new session without the earlier conversation",
                    rpc::error_text(&e)
                )),
            }
        }
        if !opened {
            let id = self.id();
            match proc.call(id, "session/new", json!({"cwd": cwd, "mcpServers": mcp}), &mut self.notices, Some(&mut self.backlog)).await? {
                Ok(r) => match r.get("sessionId").and_then(Value::as_str) {
                    Some(s) => {
                        self.session_id = s.to_owned();
                        modes = r.get("modes").cloned().unwrap_or(Value::Null);
                    }
                    None => return Err(AgentGone(format!("the {agent} agent answered `session/new` without a sessionId: {r}"))),
                },
                Err(e) => return Err(AgentGone(self.new_session_error(&e, &caps))),
            }
        }
        self.start_mode(proc, &modes).await
    }

    /// Why `session/new` failed, for a person (credentials, when that is it).
    fn new_session_error(&self, e: &Value, caps: &Value) -> String {
        let mut msg = format!("the {} agent refused `session/new`: {}", self.agent, rpc::error_text(e));
        let auth =
            e.get("code").and_then(Value::as_i64) == Some(-32000) || caps.get("authMethods").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if auth && !self.launch.credentials.is_empty() {
            msg.push_str(&format!(
                ". It may need its credentials in the session environment ({}); `sbx credentials` shows what the host has",
                self.launch.credentials.join(", ")
            ));
        }
        msg
    }

    /// `session/set_mode` to the session's mode (or the agent's default under sbx). A mode the agent
    /// does not have fails the start when the session asked for it.
    async fn start_mode(&mut self, proc: &mut Proc, modes: &Value) -> Result<(), AgentGone> {
        let asked = self.settings.request.mode.clone();
        let Some(want) = asked.clone().or_else(|| self.launch.default_mode.clone()) else { return Ok(()) };
        let current = modes.get("currentModeId").and_then(Value::as_str);
        if current == Some(want.as_str()) {
            return Ok(());
        }
        let available: Vec<String> = modes
            .get("availableModes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default();
        if !available.contains(&want) {
            if asked.is_some() {
                let list = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
                return Err(AgentGone(format!("the {} agent has no mode `{want}`; its modes: {list}", self.agent)));
            }
            return Ok(());
        }
        let id = self.id();
        let params = json!({"sessionId": self.session_id, "modeId": want});
        if let Err(e) = proc.call(id, "session/set_mode", params, &mut self.notices, Some(&mut self.backlog)).await? {
            return Err(AgentGone(format!("the {} agent refused mode `{want}`: {}", self.agent, rpc::error_text(&e))));
        }
        Ok(())
    }

    /// The session's MCP servers as ACP wants them (HTTP ones only when the agent takes them).
    fn mcp_servers(&mut self, http: bool) -> Value {
        let pairs =
            |m: &std::collections::BTreeMap<String, String>| -> Vec<Value> { m.iter().map(|(k, v)| json!({"name": k, "value": v})).collect() };
        let mut out = Vec::new();
        for m in &self.settings.request.mcp_servers {
            match (&m.command, &m.url) {
                (Some(cmd), _) => out.push(json!({"name": m.name, "command": cmd, "args": m.args, "env": pairs(&m.env)})),
                (None, Some(url)) if http => out.push(json!({"type": "http", "name": m.name, "url": url, "headers": pairs(&m.headers)})),
                (None, Some(_)) => self.notices.push(format!("the {} agent takes no HTTP MCP servers; `{}` was left out", self.agent, m.name)),
                (None, None) => {}
            }
        }
        Value::Array(out)
    }
}

#[async_trait::async_trait]
impl AgentDriver for AcpDriver {
    async fn turn(&mut self, text: &str, ctx: &TurnCtx) -> Result<TurnEnd, AgentGone> {
        if let Some(failed) = super::llm::preflight(&self.agent, &self.settings, ctx).await {
            return Ok(failed);
        }
        if self.proc.as_mut().is_some_and(|p| !matches!(p.child.try_wait(), Ok(None))) {
            self.proc = None;
            self.notices.push(format!("the {} agent exited between turns; it was started again with a new session", self.agent));
        }
        if self.proc.is_none() {
            let resume = (!self.session_id.is_empty()).then(|| self.session_id.clone());
            self.launch(resume).await?;
        }
        ctx.set_native_session_id(&self.session_id);
        for n in std::mem::take(&mut self.notices) {
            ctx.error(EventSource::Runtime, "agent_error", n, None, None);
        }
        let prompt_id = self.id();
        let params = json!({"sessionId": self.session_id, "prompt": translate::prompt(text)});
        let session_id = self.session_id.clone();
        let helper = self.client.clone();
        let agent = self.agent.clone();
        let proc = self.proc.as_mut().ok_or_else(|| AgentGone(format!("the {agent} agent is not running")))?;
        proc.send(&rpc::request(prompt_id, "session/prompt", params)).await?;

        let mut tr = Translator::default();
        tr.cost_usd = self.cost_usd;
        for n in std::mem::take(&mut self.backlog) {
            if n.get("method").and_then(Value::as_str) == Some("session/update") {
                tr.update(&n, ctx);
            }
        }
        tr.close_text(ctx);
        let mut answers: FuturesUnordered<Answer<'_>> = FuturesUnordered::new();
        let mut cancelled = false;
        let mut deadline: Option<Instant> = None;
        let outcome: Result<TurnEnd, AgentGone> = loop {
            let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                msg = proc.rx.recv() => match msg {
                    None | Some(Incoming::Closed) => break Err(proc.gone(&format!("the {agent} agent exited in the middle of a turn")).await),
                    Some(Incoming::Response { id: Some(id), result, raw }) if id == prompt_id => break Ok(prompt_end(result, raw, cancelled, ctx)),
                    Some(Incoming::Response { .. }) => {}
                    Some(Incoming::Request(req)) => {
                        let tool = req.pointer("/params/toolCall/toolCallId").and_then(Value::as_str).and_then(|t| tr.tools.get(t)).cloned();
                        answers.push(Box::pin(client::answer(helper.clone(), req, tool, ctx)));
                    }
                    Some(Incoming::Notification(msg)) => {
                        if msg.get("method").and_then(Value::as_str) == Some("session/update") {
                            tr.update(&msg, ctx);
                        } else {
                            let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
                            status_item(ctx, &format!("notification {method}"), None, None, Some(msg));
                        }
                    }
                    Some(Incoming::Malformed(what)) => {
                        ctx.error(EventSource::Agent, "agent_error", format!("malformed JSON-RPC from the {agent} agent: {what}"), None, None);
                    }
                },
                Some(reply) = answers.next(), if !answers.is_empty() => {
                    if let Err(gone) = proc.send(&reply).await {
                        break Err(gone);
                    }
                }
                _ = ctx.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    deadline = Some(Instant::now() + CANCEL_GRACE);
                    if let Err(gone) = proc.send(&rpc::notification("session/cancel", json!({"sessionId": session_id}))).await {
                        break Err(gone);
                    }
                }
                _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                    tracing::warn!("the {agent} agent did not end the cancelled turn within {}s; stopping it", CANCEL_GRACE.as_secs());
                    break Ok(TurnEnd { cancelled: true, stop_reason: Some("cancelled".into()), ..TurnEnd::default() });
                }
            }
        };
        // Requests the agent no longer waits for: the cancel resolves their permission requests.
        if !answers.is_empty() {
            ctx.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), async { while answers.next().await.is_some() {} }).await;
        }
        drop(answers);
        tr.close_open(ctx);
        match outcome {
            Ok(mut end) => {
                if end.cancelled && deadline.is_some_and(|d| Instant::now() >= d) {
                    if let Some(p) = self.proc.take() {
                        p.kill().await;
                    }
                    self.session_id.clear();
                    self.notices.push(format!(
                        "the {} agent did not stop within {}s of the cancel; it was stopped, and this turn started a new ACP session \
                         without the earlier conversation",
                        self.agent,
                        CANCEL_GRACE.as_secs()
                    ));
                }
                if end.text.is_none() && !end.cancelled {
                    end.text = tr.last_text.clone();
                }
                if let (Some(now), None) = (tr.cost_usd, end.cost_usd) {
                    end.cost_usd = Some(now - self.cost_usd.unwrap_or(0.0));
                }
                self.cost_usd = tr.cost_usd;
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
            // ACP agents exit at the end of their input; kill one that lingers.
            super::driver::close_agent(p.child, p.stdin).await;
        }
        self.client.release_all().await;
    }

    async fn set_mode(&mut self, mode: &str) -> Result<(), String> {
        let Some(mut proc) = self.proc.take() else {
            // Not running (it stopped after a turn): it starts in this mode.
            self.settings.request.mode = Some(mode.to_owned());
            return Ok(());
        };
        let id = self.id();
        let params = json!({"sessionId": self.session_id, "modeId": mode});
        // Updates the agent sends meanwhile (`current_mode_update`) wait in the backlog for the next turn.
        let answer = proc.call(id, "session/set_mode", params, &mut self.notices, Some(&mut self.backlog)).await;
        self.proc = Some(proc);
        match answer {
            Ok(Ok(_)) => {
                self.settings.request.mode = Some(mode.to_owned());
                Ok(())
            }
            Ok(Err(e)) => Err(format!("the {} agent refused mode `{mode}`: {}", self.agent, rpc::error_text(&e))),
            Err(gone) => Err(gone.0),
        }
    }
}

/// The turn's end from the answer to `session/prompt`.
fn prompt_end(result: Result<Value, Value>, raw: Value, cancelled: bool, ctx: &TurnCtx) -> TurnEnd {
    let mut end = TurnEnd::default();
    match result {
        Ok(r) => {
            let reason = r.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn").to_owned();
            end.cancelled = reason == "cancelled" || cancelled;
            end.stop_reason = Some(reason);
            end.usage = r.get("usage").map(|u| {
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                Usage {
                    input_tokens: n("inputTokens"),
                    output_tokens: n("outputTokens"),
                    cache_read_tokens: n("cachedReadTokens"),
                    cache_write_tokens: n("cachedWriteTokens"),
                }
            });
        }
        Err(_) if cancelled => {
            end.cancelled = true;
            end.stop_reason = Some("cancelled".into());
        }
        Err(e) => {
            let message = format!("the agent failed the turn: {}", rpc::error_text(&e));
            ctx.error(EventSource::Agent, "agent_error", message.clone(), None, Some(raw));
            end.failed = Some(message);
        }
    }
    end
}
