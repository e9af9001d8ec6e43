//! `sbx acp NAME`: sbx as an ACP agent (Agent Client Protocol, JSON-RPC 2.0 lines on stdin/stdout),
//! for editors that launch agents as local commands (Zed's `agent_servers`). Each ACP session is a
//! session of the chosen agent (`--agent`: claude, codex, vibe, mock, …) in the sandbox `NAME`; its
//! events are mapped back to ACP (`map.rs`), its permission requests are asked of the editor with
//! `session/request_permission`, `session/cancel` cancels the turn. When the editor closes stdin,
//! the sessions end.
//!
//! stdout carries only ACP messages; logs go to stderr.

mod map;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use clap::Args;
use futures::StreamExt;
use sbx_agent::api::session::{EventData, PermissionDecision, PermissionKind, PermissionPolicy, PermissionRequested, QuestionRequested};
use sbx_agent::client::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::session::AgentOptions;
use crate::context::Ctx;
use crate::output::{Exit, Interrupted};
use crate::provision::{self, Plan, Progress, UpOptions};

/// `sbx acp`.
#[derive(Args, Debug)]
#[command(
    after_help = "Speaks ACP on stdin/stdout; an editor launches it. Zed (settings.json):\n  \"agent_servers\": {\"sbx claude\": {\"command\": \"sbx\", \"args\": [\"acp\", \"dev\", \"--agent\", \"claude\"]}}\n\nA sandbox of its own, made on first use and removed when the editor closes:\n  sbx acp scratch --up --provider docker --rm --agent claude --credentials claude\n\nSee docs/acp.md."
)]
pub struct AcpArgs {
    /// The sandbox (made with `sbx up`, or by `--up`).
    name: String,
    #[command(flatten)]
    agent: AgentOptions,
    #[command(flatten)]
    up: UpFlags,
}

/// `sbx acp --up`: the sandbox made on demand. Progress goes to stderr; stdout stays ACP's.
#[derive(Args, Debug)]
struct UpFlags {
    /// Make the sandbox when there is none named NAME (on --provider), and put the agent in it; an
    /// existing one is used as it is.
    #[arg(long, help_heading = "Sandbox")]
    up: bool,
    /// With --up: where to make it.
    #[arg(long, default_value = "local", env = "SBX_PROVIDER", value_name = "PROVIDER", requires = "up", help_heading = "Sandbox",
          value_parser = crate::provider_arg::ProviderArg::Any, hide_possible_values = true)]
    provider: String,
    /// With --up: image or template (default: sbx's base image).
    #[arg(long, requires = "up", help_heading = "Sandbox")]
    image: Option<String>,
    /// With --up: pass this machine's LLM credentials for these agents to the sandbox's sessions
    /// (comma-separated; see `sbx up --help`).
    #[arg(long, value_delimiter = ',', value_name = "AGENTS", requires = "up", help_heading = "Sandbox")]
    credentials: Vec<String>,
    /// With --up: how the agent gets in (auto, from-host, vendor, image, pip, mirror=URL).
    #[arg(long, value_name = "SOURCE", requires = "up", help_heading = "Sandbox")]
    agents_from: Option<crate::agents_setup::AgentsFrom>,
    /// With --up: remove the sandbox this command made when the editor closes (or stops it). A
    /// sandbox that already existed is left alone.
    #[arg(long, requires = "up", help_heading = "Sandbox")]
    rm: bool,
}

/// The ACP version spoken.
const PROTOCOL_VERSION: u64 = 1;

struct Server {
    client: Client,
    options: AgentOptions,
    policy: PermissionPolicy,
    out: tokio::sync::Mutex<tokio::io::Stdout>,
    next_id: AtomicU64,
    /// Our requests to the editor, waiting for its answer.
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>,
    /// Sessions made here (ended when the editor goes).
    sessions: Mutex<BTreeSet<String>>,
    /// Tools the editor allowed always, by session.
    always: Mutex<BTreeSet<(String, String)>>,
}

impl Server {
    async fn send(&self, msg: &Value) {
        let mut line = msg.to_string();
        line.push('\n');
        let mut out = self.out.lock().await;
        // The editor went away: nothing to tell anyone, the read loop ends at end of input.
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.flush().await;
    }

    async fn reply(&self, id: &Value, result: Result<Value, (i64, String)>) {
        let msg = match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err((code, message)) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        };
        self.send(&msg).await;
    }

    async fn update(&self, session: &str, update: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session, "update": update}})).await;
    }

    /// Sends a request to the editor and waits for its answer.
    async fn request(&self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        rx.await.unwrap_or_else(|_| Err(json!({"message": "the editor went away"})))
    }

    async fn handle(self: Arc<Self>, msg: Value) {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
        let result = match method {
            "initialize" => Ok(json!({
                "protocolVersion": PROTOCOL_VERSION,
                "agentCapabilities": {"loadSession": false, "promptCapabilities": {"image": false, "audio": false, "embeddedContext": true},
                                      "mcpCapabilities": {"http": true, "sse": false}},
                "authMethods": [],
                "agentInfo": {"name": "sbx", "title": format!("sbx ({})", self.options.agent), "version": env!("CARGO_PKG_VERSION")},
            })),
            "authenticate" => Ok(json!({})),
            "session/new" => self.new_session(&params).await,
            "session/prompt" => self.prompt(&params).await,
            "session/set_mode" => self.set_mode(&params).await,
            "session/cancel" => {
                if let Some(s) = params.get("sessionId").and_then(Value::as_str) {
                    let _ = self.client.cancel_turn(s).await;
                }
                return;
            }
            other => Err((-32601, format!("sbx acp does not handle `{other}`"))),
        };
        if !id.is_null() {
            self.reply(&id, result).await;
        }
    }

    async fn new_session(&self, params: &Value) -> Result<Value, (i64, String)> {
        let mut req = self.options.request(PermissionPolicy::Ask).map_err(|e| (-32602, e.to_string()))?;
        for m in params.get("mcpServers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            req.mcp_servers.push(mcp_server(m).map_err(|e| (-32602, e))?);
        }
        let info = self.client.create_session(&req).await.map_err(|e| (-32603, e.to_string()))?;
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(info.id.clone());
        let mut out = json!({ "sessionId": info.id });
        if let Ok(agent) = self.client.agent(&self.options.agent).await {
            if !agent.modes.is_empty() {
                let current = info.mode.clone().unwrap_or_else(|| agent.modes[0].id.clone());
                let modes: Vec<Value> = agent.modes.iter().map(|m| json!({"id": m.id, "name": m.id, "description": m.description})).collect();
                out["modes"] = json!({"currentModeId": current, "availableModes": modes});
            }
        }
        Ok(out)
    }

    /// `session/set_mode`, between turns: ACP agents and the mock switch; claude and codex take
    /// their mode when the session starts (`--mode`), and the editor is told so.
    async fn set_mode(&self, params: &Value) -> Result<Value, (i64, String)> {
        let sid = params.get("sessionId").and_then(Value::as_str).ok_or((-32602, "`sessionId` is missing".to_owned()))?;
        let mode = params.get("modeId").and_then(Value::as_str).ok_or((-32602, "`modeId` is missing".to_owned()))?;
        match self.client.set_mode(sid, mode).await {
            Ok(_) => {
                self.update(sid, json!({"sessionUpdate": "current_mode_update", "currentModeId": mode})).await;
                Ok(json!({}))
            }
            Err(e) => Err((-32602, e.to_string())),
        }
    }

    async fn prompt(self: &Arc<Self>, params: &Value) -> Result<Value, (i64, String)> {
        let sid = params.get("sessionId").and_then(Value::as_str).ok_or((-32602, "`sessionId` is missing".to_owned()))?.to_owned();
        let blocks = params.get("prompt").and_then(Value::as_array).cloned().unwrap_or_default();
        let text = map::prompt_text(&blocks);
        let turn = self.client.send_message(&sid, &text, false).await.map_err(|e| (-32603, e.to_string()))?;
        let mut follow = self.client.follow_events(&sid, turn.first_sequence.saturating_sub(1)).await.map_err(|e| (-32603, e.to_string()))?;
        let mut mapper = map::Mapper::default();
        let mut last_error = None;
        while let Some(ev) = follow.next().await {
            let ev = ev.map_err(|e| (-32603, e.to_string()))?;
            for u in mapper.map(&ev) {
                self.update(&sid, u).await;
            }
            match ev.body {
                EventData::PermissionRequested(p) if self.asks(&sid, &p) => {
                    let me = Arc::clone(self);
                    let sid = sid.clone();
                    tokio::spawn(async move { me.ask(&sid, p).await });
                }
                EventData::QuestionRequested(q) => {
                    let me = Arc::clone(self);
                    let sid = sid.clone();
                    tokio::spawn(async move { me.question(&sid, q).await });
                }
                EventData::Error(e) => last_error = Some(e.message),
                EventData::TurnCompleted(done) => return map::prompt_result(&done, last_error.as_deref()).map_err(|m| (-32603, m)),
                EventData::SessionEnded(e) => {
                    return Err((-32603, format!("the session ended: {}", e.message.unwrap_or_else(|| format!("{:?}", e.reason)))))
                }
                _ => {}
            }
        }
        Err((-32603, "the session's event stream ended before the turn did".to_owned()))
    }

    /// Whether the editor decides this request (the session's policy decides the rest).
    fn asks(&self, sid: &str, p: &PermissionRequested) -> bool {
        let always = self.always.lock().unwrap_or_else(|e| e.into_inner()).contains(&(sid.to_owned(), p.tool_name.clone()));
        !always
            && match self.policy {
                PermissionPolicy::Ask => true,
                PermissionPolicy::AllowReads => p.kind != PermissionKind::Read,
                PermissionPolicy::AllowAll | PermissionPolicy::DenyAll => false,
            }
    }

    /// Asks the editor (`session/request_permission`) and passes its answer to the session.
    async fn ask(&self, sid: &str, p: PermissionRequested) {
        let call_id = p.item_id.clone().unwrap_or_else(|| p.permission_id.clone());
        let kind = match p.kind {
            PermissionKind::Read => "read",
            PermissionKind::Edit => "edit",
            PermissionKind::Execute => "execute",
            PermissionKind::Other => "other",
        };
        let params = json!({
            "sessionId": sid,
            "toolCall": {"toolCallId": call_id, "title": p.title, "kind": kind, "rawInput": p.input},
            "options": [
                {"optionId": "allow_once", "name": "Allow", "kind": "allow_once"},
                {"optionId": "allow_always", "name": format!("Always allow {}", p.tool_name), "kind": "allow_always"},
                {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"},
            ],
        });
        let decision = match self.request("session/request_permission", params).await {
            Ok(r) if r.pointer("/outcome/outcome").and_then(Value::as_str) == Some("selected") => {
                match r.pointer("/outcome/optionId").and_then(Value::as_str) {
                    Some("allow_once") => PermissionDecision::Allow,
                    Some("allow_always") => {
                        self.always.lock().unwrap_or_else(|e| e.into_inner()).insert((sid.to_owned(), p.tool_name.clone()));
                        PermissionDecision::AllowAlways
                    }
                    _ => PermissionDecision::Deny,
                }
            }
            _ => PermissionDecision::Deny,
        };
        let message = (!decision.allows()).then(|| "the user rejected this in the editor".to_owned());
        // Already resolved (the turn was cancelled meanwhile): nothing to do.
        if let Err(e) = self.client.reply_permission(sid, &p.permission_id, decision, message).await {
            tracing::debug!(error = %e, "permission reply not taken");
        }
    }
}

impl Server {
    /// ACP has no stable way to ask the user a question: it goes to the editor as a permission request
    /// whose options are the question's answers (and "no answer"); free-text questions are rejected.
    async fn question(&self, sid: &str, q: QuestionRequested) {
        let answer = if q.options.is_empty() {
            None
        } else {
            let mut options: Vec<Value> =
                q.options.iter().enumerate().map(|(i, o)| json!({"optionId": format!("answer_{i}"), "name": o, "kind": "allow_once"})).collect();
            options.push(json!({"optionId": "no_answer", "name": "Don't answer", "kind": "reject_once"}));
            let params =
                json!({"sessionId": sid, "toolCall": {"toolCallId": q.question_id, "title": q.question, "kind": "other"}, "options": options});
            match self.request("session/request_permission", params).await {
                Ok(r) => r
                    .pointer("/outcome/optionId")
                    .and_then(Value::as_str)
                    .and_then(|id| id.strip_prefix("answer_"))
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| q.options.get(i).cloned()),
                Err(_) => None,
            }
        };
        if let Err(e) = self.client.reply_question(sid, &q.question_id, answer).await {
            tracing::debug!(error = %e, "question reply not taken");
        }
    }
}

/// An ACP MCP server (`{name, command, args, env: [{name, value}]}` or `{type: "http", name, url,
/// headers}`) as the session API takes it.
fn mcp_server(m: &Value) -> Result<sbx_agent::api::session::McpServer, String> {
    let name = m.get("name").and_then(Value::as_str).ok_or("an MCP server without a name")?.to_owned();
    let pairs = |k: &str| -> std::collections::BTreeMap<String, String> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| Some((p.get("name")?.as_str()?.to_owned(), p.get("value")?.as_str()?.to_owned()))).collect())
            .unwrap_or_default()
    };
    let strings = |k: &str| -> Vec<String> {
        m.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    Ok(sbx_agent::api::session::McpServer {
        name,
        command: m.get("command").and_then(Value::as_str).map(str::to_owned),
        args: strings("args"),
        env: pairs("env"),
        url: m.get("url").and_then(Value::as_str).map(str::to_owned),
        headers: pairs("headers"),
    })
}

/// Runs `sbx acp`: serves ACP on stdin/stdout until the editor closes stdin (or stops it).
pub async fn run(ctx: &Ctx, a: AcpArgs) -> Result<Exit> {
    let made = if a.up.up && ctx.state.get(&a.name)?.is_none() {
        let stopped = tokio::select! {
            r = make_sandbox(ctx, &a) => { r?; false }
            _ = stop_signal() => true,
        };
        if stopped {
            // A half-made sandbox was removed by `provision::up`'s guard as its future was dropped; one
            // that was made (its agent still going in) is removed here when --rm asked for it.
            if a.up.rm && ctx.state.get(&a.name)?.is_some() {
                remove_made(ctx, &a.name).await;
            }
            return Err(Interrupted.into());
        }
        true
    } else {
        false
    };
    let served = serve(ctx, a.name.clone(), a.agent).await;
    if made && a.up.rm {
        remove_made(ctx, &a.name).await;
    }
    served
}

/// `--rm`: removes the sandbox this command made; a failure is reported, not fatal.
async fn remove_made(ctx: &Ctx, name: &str) {
    let step = ctx.out.step(&format!("removing sandbox `{name}`"));
    match provision::down(ctx, name).await {
        Ok(()) => step.done(),
        Err(e) => {
            step.fail();
            ctx.out.note(format!("could not remove `{name}` (`sbx down {name}` tries again): {}", crate::output::error_line(&e)));
        }
    }
}

/// `--up`: makes sandbox NAME and puts the agent in it; a failure half-way leaves nothing behind.
async fn make_sandbox(ctx: &Ctx, a: &AcpArgs) -> Result<()> {
    let mut plan = Plan::new(&a.up.provider, a.name.clone())?;
    plan.sandbox.image = a.up.image.clone();
    plan.credentials = a.up.credentials.clone();
    plan.validate()?;
    let opts = UpOptions { observer: Arc::new(Progress::new(&ctx.out, plan.provider.name)), ..UpOptions::default() };
    let up = provision::up(ctx, &plan, opts).await?;
    ctx.out.note(format!("sandbox `{}` is up on {} in {:.1} s", up.name, up.provider, up.phases.total().as_secs_f64()));
    let installed = async {
        let client = ctx.client(&ctx.record(&up.name)?).await?;
        let from = a.up.agents_from.clone().unwrap_or_default();
        crate::agents_setup::ensure_agent(&client, &a.agent.agent, &from, None).await
    }
    .await;
    match installed {
        Ok(r) => {
            match r.source.as_str() {
                "none" => ctx.out.note(format!("{}: built in", a.agent.agent)),
                source => ctx.out.note(format!("{}: {} from {source}", a.agent.agent, r.version.as_deref().unwrap_or("?"))),
            }
            Ok(())
        }
        Err(e) => {
            // Made for this editor and useless without its agent: not left behind.
            let _ = provision::down(ctx, &up.name).await;
            Err(e.context(format!("the {} agent could not be put in the new sandbox `{}` (removed again)", a.agent.agent, up.name)))
        }
    }
}

/// Ctrl-C, or SIGTERM (how editors stop the agents they launched).
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serves ACP for sandbox `name` until stdin ends or a stop signal; then ends the sessions it made.
async fn serve(ctx: &Ctx, name: String, options: AgentOptions) -> Result<Exit> {
    let rec = ctx.record(&name)?;
    let client = ctx.client(&rec).await?;
    let policy = options.permission_mode.map(Into::into).unwrap_or(PermissionPolicy::Ask);
    let server = Arc::new(Server {
        client,
        options,
        policy,
        out: tokio::sync::Mutex::new(tokio::io::stdout()),
        next_id: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        sessions: Mutex::new(BTreeSet::new()),
        always: Mutex::new(BTreeSet::new()),
    });
    let read = async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
        while let Some(line) = lines.next_segment().await? {
            server.take(&line).await;
        }
        anyhow::Ok(())
    };
    let stopped = tokio::select! {
        r = read => { r?; false }
        _ = stop_signal() => true,
    };
    // The editor is gone: end its sessions (their agents stop; the events stay readable).
    let sessions = std::mem::take(&mut *server.sessions.lock().unwrap_or_else(|e| e.into_inner()));
    for s in sessions {
        let _ = server.client.end_session(&s, false).await;
    }
    Ok(if stopped { Exit::Interrupted } else { Exit::Success })
}

impl Server {
    /// One line from the editor: a response to one of our requests, or a request or notification
    /// for us (handled on its own task, so a long `session/prompt` does not hold up a `session/cancel`).
    async fn take(self: &Arc<Self>, line: &[u8]) {
        let msg: Value = match serde_json::from_slice(line.trim_ascii()) {
            Ok(v) => v,
            Err(_) if line.trim_ascii().is_empty() => return,
            Err(e) => {
                let err = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("not JSON: {e}")}});
                self.send(&err).await;
                return;
            }
        };
        let is_response = msg.get("method").is_none() && (msg.get("result").is_some() || msg.get("error").is_some());
        if is_response {
            let id = msg.get("id").and_then(Value::as_u64);
            let tx = id.and_then(|id| self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id));
            if let Some(tx) = tx {
                let _ = tx.send(match msg.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                });
            }
            return;
        }
        tokio::spawn(Arc::clone(self).handle(msg));
    }
}
