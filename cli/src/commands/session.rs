//! `sbx session …` and `sbx prompt`: agent sessions in a sandbox, rendered for people as they stream,
//! as JSON lines for scripts, and copied into the host state so a transcript outlives the sandbox.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use sbx_agent::api::session::{
    ContentPart, CreateSessionRequest, Event, EventData, ItemKind, PermissionDecision, PermissionKind, PermissionPolicy,
    PermissionRequested, QuestionRequested, Role, TurnCompleted, TurnOutcome,
};
use sbx_agent::client::Client;

use crate::context::Ctx;
use crate::output::{usage, Exit, Interrupted, Output};

/// `sbx session` subcommands.
#[derive(Args, Debug)]
pub struct SessionArgs {
    #[command(subcommand)]
    command: SessionCommand,
}

#[derive(Subcommand, Debug)]
enum SessionCommand {
    /// Start a session with an agent in a sandbox; prints its id.
    New(NewArgs),
    /// List a sandbox's sessions.
    Ls(LsArgs),
    /// Send a message (one turn) and show the agent's answer as it streams.
    Send(SendArgs),
    /// Print a session's events (JSON lines with --json).
    Events(EventsArgs),
    /// Follow a session live, from the last event this host saw.
    Attach(AttachArgs),
    /// Write a session's transcript (from the host's copy, so it works after the sandbox is gone).
    Export(ExportArgs),
    /// Cancel the running turn.
    Cancel(Target),
    /// End a session (stops its agent; events stay readable).
    End(Target),
}

/// `--permission-mode`: which tool uses need a person's answer.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyArg {
    /// Every tool use waits for a reply (answered by `session send`, see --approve).
    Ask,
    /// Allow everything (the sandbox is the boundary).
    AllowAll,
    /// Allow reads, ask for the rest.
    AllowReads,
    /// Deny everything that needs permission.
    DenyAll,
}

impl From<PolicyArg> for PermissionPolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Ask => Self::Ask,
            PolicyArg::AllowAll => Self::AllowAll,
            PolicyArg::AllowReads => Self::AllowReads,
            PolicyArg::DenyAll => Self::DenyAll,
        }
    }
}

/// `--approve`: how `send` answers permission requests when no one is asked.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approve {
    /// Allow every request.
    All,
    /// Deny every request.
    None,
    /// Allow reads, deny the rest.
    Reads,
}

/// Session settings shared by `session new` and `prompt`.
#[derive(Args, Debug, Clone)]
pub struct AgentOptions {
    /// The agent: claude, codex or mock.
    #[arg(short, long, default_value = "claude")]
    pub agent: String,
    /// The model to ask the agent for.
    #[arg(short, long)]
    pub model: Option<String>,
    /// The agent's mode (see `sbx agent ls NAME`).
    #[arg(long)]
    pub mode: Option<String>,
    /// Which tool uses need an answer (ask, allow-all, allow-reads, deny-all).
    #[arg(long, value_enum)]
    pub permission_mode: Option<PolicyArg>,
    /// Working directory of the agent inside the sandbox.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment for the agent (repeatable). Only what you name here crosses into the sandbox.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
}

impl AgentOptions {
    fn request(&self, default_policy: PermissionPolicy) -> Result<CreateSessionRequest> {
        let mut env = BTreeMap::new();
        for p in &self.env {
            match p.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    env.insert(k.to_owned(), v.to_owned());
                }
                _ => return Err(usage(format!("bad --env `{p}`: expected KEY=VALUE"))),
            }
        }
        Ok(CreateSessionRequest {
            agent: self.agent.clone(),
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            mode: self.mode.clone(),
            permission_policy: self.permission_mode.map(Into::into).unwrap_or(default_policy),
            env,
            ..Default::default()
        })
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx session new dev --agent claude\n  sbx session new dev --agent codex --model gpt-5 --permission-mode allow-all\n  sbx session new dev --agent mock --id demo")]
struct NewArgs {
    /// The sandbox.
    name: String,
    #[command(flatten)]
    agent: AgentOptions,
    /// Your id for the session (default: one is made up).
    #[arg(long)]
    id: Option<String>,
}

#[derive(Args, Debug)]
struct LsArgs {
    /// The sandbox.
    name: String,
}

#[derive(Args, Debug)]
#[command(after_help = "Permission requests are asked on a terminal; otherwise --approve decides (without it, they are denied).\n\nExamples:\n  sbx session send dev ses_1a2b \"add a --verbose flag\"\n  sbx session send dev ses_1a2b \"run the tests\" --approve all\n  sbx session send dev ses_1a2b \"summarise\" --json | jq -c 'select(.type==\"item.delta\")'")]
struct SendArgs {
    /// The sandbox.
    name: String,
    /// The session.
    session: String,
    /// The message.
    text: String,
    /// Answer permission requests without asking: all, none, reads.
    #[arg(long, value_enum)]
    approve: Option<Approve>,
}

#[derive(Args, Debug)]
struct EventsArgs {
    /// The sandbox.
    name: String,
    /// The session.
    session: String,
    /// Only events after this sequence.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Keep printing new events until the session ends.
    #[arg(short, long)]
    follow: bool,
}

#[derive(Args, Debug)]
struct AttachArgs {
    /// The sandbox.
    name: String,
    /// The session.
    session: String,
    /// Answer permission requests without asking: all, none, reads.
    #[arg(long, value_enum)]
    approve: Option<Approve>,
}

/// Export formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    /// One event per line, as stored.
    Jsonl,
    /// A readable transcript.
    Markdown,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The sandbox (it may be gone: the host keeps a copy of every event it saw).
    name: String,
    /// The session.
    session: String,
    /// jsonl or markdown.
    #[arg(long, value_enum, default_value_t = ExportFormat::Markdown)]
    format: ExportFormat,
}

#[derive(Args, Debug)]
struct Target {
    /// The sandbox.
    name: String,
    /// The session.
    session: String,
}

/// `sbx prompt` flags.
#[derive(Args, Debug)]
#[command(after_help = "Exit code: 0 when the agent finished its answer, 1 when it failed, 130 on Ctrl-C.\n\nExamples:\n  sbx prompt dev \"what does this repo do?\"\n  sbx prompt dev \"fix the failing test\" --agent codex --approve all\n  sbx prompt dev \"echo hi\" --agent mock")]
pub struct PromptArgs {
    /// The sandbox.
    pub name: String,
    /// The message.
    pub text: String,
    #[command(flatten)]
    pub agent: AgentOptions,
    /// Answer permission requests without asking: all, none, reads.
    #[arg(long, value_enum)]
    pub approve: Option<Approve>,
    /// Keep the session open afterwards (default: it is ended).
    #[arg(long)]
    pub keep: bool,
}

/// Runs `sbx session …`.
pub async fn run(ctx: &Ctx, a: SessionArgs) -> Result<Exit> {
    match a.command {
        SessionCommand::New(a) => {
            let rec = ctx.record(&a.name)?;
            let client = ctx.client(&rec).await?;
            let mut req = a.agent.request(PermissionPolicy::Ask)?;
            req.id = a.id;
            let info = client.create_session(&req).await.map_err(agent_error)?;
            sync(ctx, &client, &a.name, &info.id).await?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::to_value(&info)?);
            } else {
                ctx.out.line(&info.id);
                ctx.out.note(format!("next: sbx session send {} {} \"your message\"", a.name, info.id));
            }
            Ok(Exit::Success)
        }
        SessionCommand::Ls(a) => ls(ctx, &a.name).await,
        SessionCommand::Send(a) => {
            let rec = ctx.record(&a.name)?;
            let client = ctx.client(&rec).await?;
            let turn = client.send_message(&a.session, &a.text, false).await?;
            let done = follow_turn(ctx, &client, &a.name, &a.session, turn.first_sequence - 1, a.approve).await?;
            Ok(turn_exit(&done))
        }
        SessionCommand::Events(a) => events(ctx, a).await,
        SessionCommand::Attach(a) => {
            let rec = ctx.record(&a.name)?;
            let client = ctx.client(&rec).await?;
            let from = ctx.state.last_event_seq(&a.name, &a.session)?;
            ctx.out.note(format!("attached to {} after event {from}; Ctrl-C detaches", a.session));
            let mut view = View::new(ctx, &client, &a.name, &a.session, a.approve);
            let mut follow = client.follow_events(&a.session, from).await?;
            loop {
                tokio::select! {
                    ev = follow.next() => match ev {
                        Some(ev) => view.event(ev?).await?,
                        None => break,
                    },
                    _ = tokio::signal::ctrl_c() => {
                        view.flush()?;
                        return Ok(Exit::Success);
                    }
                }
            }
            view.flush()?;
            Ok(Exit::Success)
        }
        SessionCommand::Export(a) => export(ctx, a).await,
        SessionCommand::Cancel(t) => {
            let client = ctx.client(&ctx.record(&t.name)?).await?;
            let cancelled = client.cancel_turn(&t.session).await?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({ "cancelled": cancelled }));
            } else {
                ctx.out.note(if cancelled { "cancelled the running turn" } else { "no turn was running" });
            }
            Ok(Exit::Success)
        }
        SessionCommand::End(t) => {
            let client = ctx.client(&ctx.record(&t.name)?).await?;
            let info = client.end_session(&t.session, false).await?;
            sync(ctx, &client, &t.name, &t.session).await?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::to_value(&info)?);
            } else {
                ctx.out.note(format!("ended {}", t.session));
            }
            Ok(Exit::Success)
        }
    }
}

/// Runs `sbx prompt`: a new session, one turn, the answer on stdout.
pub async fn prompt(ctx: &Ctx, a: PromptArgs) -> Result<Exit> {
    let rec = ctx.record(&a.name)?;
    let client = ctx.client(&rec).await?;
    let info = client.create_session(&a.agent.request(PermissionPolicy::Ask)?).await.map_err(agent_error)?;
    let result = async {
        let turn = client.send_message(&info.id, &a.text, false).await?;
        follow_turn(ctx, &client, &a.name, &info.id, turn.first_sequence - 1, a.approve).await
    }
    .await;
    if !a.keep {
        let _ = client.end_session(&info.id, false).await;
        let _ = sync(ctx, &client, &a.name, &info.id).await;
    } else {
        ctx.out.note(format!("session {} kept; `sbx session send {} {} …` continues it", info.id, a.name, info.id));
    }
    Ok(turn_exit(&result?))
}

fn agent_error(e: sbx_agent::client::ClientError) -> anyhow::Error {
    match e.status() {
        Some(400) | Some(404) => usage(e.to_string()),
        _ => e.into(),
    }
}

fn turn_exit(done: &TurnCompleted) -> Exit {
    match done.outcome {
        TurnOutcome::Completed => Exit::Success,
        TurnOutcome::Failed => Exit::Failure,
        TurnOutcome::Cancelled => Exit::Interrupted,
    }
}

async fn ls(ctx: &Ctx, name: &str) -> Result<Exit> {
    let live = match ctx.record(name) {
        Ok(rec) => Some(ctx.client(&rec).await?),
        Err(e) => {
            // The sandbox is gone: what the host kept is still worth listing.
            let stored = ctx.state.stored_sessions(name)?;
            if stored.is_empty() {
                return Err(e);
            }
            None
        }
    };
    let Some(client) = live else {
        let stored = ctx.state.stored_sessions(name)?;
        if ctx.out.json {
            let v: Vec<_> = stored.iter().map(|(id, seq)| serde_json::json!({"id": id, "lastSequence": seq, "stored": true})).collect();
            ctx.out.json_value(&serde_json::Value::Array(v));
        } else {
            ctx.out.note(format!("sandbox `{name}` is gone; sessions this host kept (see `sbx session export`):"));
            ctx.out.line(format!("{:<24} {:>7}", "SESSION", "EVENTS"));
            for (id, seq) in stored {
                ctx.out.line(format!("{id:<24} {seq:>7}"));
            }
        }
        return Ok(Exit::Success);
    };
    let sessions = client.list_sessions().await?;
    if ctx.out.json {
        ctx.out.json_value(&serde_json::to_value(&sessions)?);
        return Ok(Exit::Success);
    }
    if sessions.is_empty() {
        ctx.out.note(format!("no sessions in {name}; `sbx session new {name} --agent claude` starts one"));
        return Ok(Exit::Success);
    }
    ctx.out.line(format!("{:<24} {:<8} {:<8} {:>5} {:>7}  {}", "SESSION", "AGENT", "STATE", "TURNS", "EVENTS", "CREATED"));
    for s in sessions {
        let state = serde_json::to_value(s.state)?.as_str().unwrap_or_default().to_owned();
        ctx.out.line(format!("{:<24} {:<8} {:<8} {:>5} {:>7}  {}", s.id, s.agent, state, s.turns, s.last_sequence, s.created_at));
    }
    Ok(Exit::Success)
}

async fn events(ctx: &Ctx, a: EventsArgs) -> Result<Exit> {
    let rec = ctx.record(&a.name)?;
    let client = ctx.client(&rec).await?;
    let mut rec_buf = Recorder::new(&a.name, &a.session);
    let print = |ev: &Event| -> Result<()> {
        let line = serde_json::to_string(ev)?;
        if ctx.out.json {
            ctx.out.line(&line);
        } else {
            ctx.out.line(format!("{:>6} {} {:<20} {}", ev.sequence, ev.time, ev.body.type_name(), summary(ev)));
        }
        Ok(())
    };
    if a.follow {
        let mut follow = client.follow_events(&a.session, a.offset).await?;
        loop {
            tokio::select! {
                ev = follow.next() => match ev {
                    Some(ev) => { let ev = ev?; print(&ev)?; rec_buf.push(ctx, &ev)?; }
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    } else {
        let mut offset = a.offset;
        loop {
            let page = client.session_events(&a.session, offset, None).await?;
            for ev in &page.events {
                print(ev)?;
                rec_buf.push(ctx, ev)?;
            }
            offset = page.next_offset;
            if !page.has_more {
                break;
            }
        }
    }
    rec_buf.flush(ctx)?;
    Ok(Exit::Success)
}

async fn export(ctx: &Ctx, a: ExportArgs) -> Result<Exit> {
    // Bring the host's copy up to date when the sandbox still answers; otherwise use what is stored.
    if let Ok(rec) = ctx.record(&a.name) {
        if let Ok(client) = ctx.client(&rec).await {
            let _ = sync(ctx, &client, &a.name, &a.session).await;
        }
    }
    let stored = ctx.state.session_events(&a.name, &a.session)?;
    if stored.is_empty() {
        return Err(usage(format!(
            "no events of session `{}` in sandbox `{}` on this host; `sbx session ls {}` lists sessions",
            a.session, a.name, a.name
        )));
    }
    match a.format {
        ExportFormat::Jsonl => {
            for line in stored {
                ctx.out.line(line);
            }
        }
        ExportFormat::Markdown => {
            let events: Vec<Event> = stored.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
            ctx.out.line(markdown(&a.session, &events));
        }
    }
    Ok(Exit::Success)
}

/// Copies every event of a session the host has not stored yet.
async fn sync(ctx: &Ctx, client: &Client, sandbox: &str, session: &str) -> Result<()> {
    let mut offset = ctx.state.last_event_seq(sandbox, session)?;
    loop {
        let page = client.session_events(session, offset, None).await?;
        let rows: Vec<(u64, String)> =
            page.events.iter().map(|e| Ok((e.sequence, serde_json::to_string(e)?))).collect::<Result<_>>()?;
        ctx.state.record_events(sandbox, session, &rows)?;
        offset = page.next_offset;
        if !page.has_more {
            return Ok(());
        }
    }
}

/// Buffers events for the host state and writes them in batches.
struct Recorder {
    sandbox: String,
    session: String,
    rows: Vec<(u64, String)>,
}

impl Recorder {
    fn new(sandbox: &str, session: &str) -> Self {
        Self { sandbox: sandbox.to_owned(), session: session.to_owned(), rows: Vec::new() }
    }
    fn push(&mut self, ctx: &Ctx, ev: &Event) -> Result<()> {
        self.rows.push((ev.sequence, serde_json::to_string(ev)?));
        if self.rows.len() >= 512 {
            self.flush(ctx)?;
        }
        Ok(())
    }
    fn flush(&mut self, ctx: &Ctx) -> Result<()> {
        ctx.state.record_events(&self.sandbox, &self.session, &self.rows)?;
        self.rows.clear();
        Ok(())
    }
}

/// Follows one turn from `from` to its `turn.completed`, rendering it, answering permission requests
/// and recording every event. Ctrl-C cancels the turn (and waits briefly for it to close).
async fn follow_turn(ctx: &Ctx, client: &Client, sandbox: &str, session: &str, from: u64, approve: Option<Approve>) -> Result<TurnCompleted> {
    let mut view = View::new(ctx, client, sandbox, session, approve);
    let mut follow = client.follow_events(session, from).await?;
    let mut interrupted = false;
    loop {
        let ev = tokio::select! {
            ev = follow.next() => ev,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                ctx.out.note("\ncancelling the turn (Ctrl-C again to leave at once)…");
                let _ = client.cancel_turn(session).await;
                continue;
            }
        };
        let Some(ev) = ev else {
            view.flush()?;
            anyhow::bail!("session {session} ended before the turn completed");
        };
        let ev = ev?;
        let done = match &ev.body {
            EventData::TurnCompleted(t) => Some(t.clone()),
            _ => None,
        };
        view.event(ev).await?;
        if let Some(done) = done {
            view.flush()?;
            if interrupted {
                return Err(Interrupted.into());
            }
            return Ok(done);
        }
    }
}

/// Renders events for a person (or as JSON lines) and answers what needs answering.
struct View<'a> {
    ctx: &'a Ctx,
    client: &'a Client,
    session: String,
    approve: Option<Approve>,
    rec: Recorder,
    /// Whether the cursor is at the start of a line on stdout.
    line_start: bool,
    /// Items whose text is streamed to stdout (assistant messages).
    streaming: Vec<String>,
    tty: bool,
}

impl<'a> View<'a> {
    fn new(ctx: &'a Ctx, client: &'a Client, sandbox: &str, session: &str, approve: Option<Approve>) -> Self {
        Self {
            ctx,
            client,
            session: session.to_owned(),
            approve,
            rec: Recorder::new(sandbox, session),
            line_start: true,
            streaming: Vec::new(),
            tty: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        }
    }

    fn flush(&mut self) -> Result<()> {
        if !self.line_start {
            println!();
            self.line_start = true;
        }
        self.rec.flush(self.ctx)
    }

    fn out(&self) -> &Output {
        &self.ctx.out
    }

    fn text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(s.as_bytes());
        let _ = o.flush();
        self.line_start = s.ends_with('\n');
    }

    fn end_line(&mut self) {
        if !self.line_start {
            self.text("\n");
        }
    }

    async fn event(&mut self, ev: Event) -> Result<()> {
        self.rec.push(self.ctx, &ev)?;
        if self.out().json {
            self.out().line(serde_json::to_string(&ev)?);
        }
        match &ev.body {
            EventData::ItemStarted(i) if i.kind == ItemKind::Message && i.role == Some(Role::Assistant) => {
                self.streaming.push(i.item_id.clone());
            }
            EventData::ItemDelta(d) if !self.out().json && self.streaming.contains(&d.item_id) => self.text(&d.delta),
            EventData::ItemCompleted(i) => {
                if self.streaming.contains(&i.item_id) {
                    self.streaming.retain(|x| x != &i.item_id);
                    self.end_line();
                } else if !self.out().json && self.out().quiet == 0 {
                    self.describe_item(i);
                }
            }
            EventData::PermissionRequested(p) => self.permission(p).await?,
            EventData::QuestionRequested(q) => self.question(q).await?,
            EventData::Error(e) if !self.out().json => {
                self.end_line();
                eprintln!("error ({}): {}", e.code, e.message);
            }
            EventData::TurnCompleted(t) if !self.out().json && self.out().quiet == 0 => {
                self.end_line();
                let usage = t.usage.as_ref().map(|u| format!(" · {} in / {} out tokens", u.input_tokens, u.output_tokens)).unwrap_or_default();
                let outcome = serde_json::to_value(t.outcome)?.as_str().unwrap_or_default().to_owned();
                eprintln!("— turn {} {outcome} in {:.1}s{usage}", t.turn_id, t.duration_ms as f64 / 1000.0);
            }
            EventData::SessionEnded(e) if !self.out().json => {
                self.end_line();
                let reason = serde_json::to_value(e.reason)?.as_str().unwrap_or_default().to_owned();
                eprintln!("— session ended ({reason}){}", e.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default());
            }
            _ => {}
        }
        Ok(())
    }

    /// Tool calls, results and file changes, one or a few lines each on stderr.
    fn describe_item(&mut self, item: &sbx_agent::api::session::Item) {
        for part in &item.content {
            match part {
                ContentPart::ToolCall { name, arguments, .. } => {
                    self.end_line();
                    eprintln!("→ {name} {}", one_line(&arguments.to_string(), 100));
                }
                ContentPart::ToolResult { output, is_error, .. } => {
                    self.end_line();
                    let mark = if *is_error { "✗" } else { "←" };
                    eprintln!("{mark} {}", one_line(output, 100));
                }
                ContentPart::FileRef { path, action, diff } => {
                    self.end_line();
                    eprintln!("  {action} {path}");
                    if let Some(d) = diff {
                        eprintln!("{d}");
                    }
                }
                _ => {}
            }
        }
    }

    async fn permission(&mut self, p: &PermissionRequested) -> Result<()> {
        // Decided by the session's policy already? Then `permission.resolved` follows at once; the
        // runtime refuses our reply with 404, which is fine.
        let decision = match self.approve {
            Some(Approve::All) => Some(PermissionDecision::Allow),
            Some(Approve::None) => Some(PermissionDecision::Deny),
            Some(Approve::Reads) => Some(if p.kind == PermissionKind::Read { PermissionDecision::Allow } else { PermissionDecision::Deny }),
            None if self.tty && !self.out().json => None,
            None => Some(PermissionDecision::Deny),
        };
        let decision = match decision {
            Some(d) => d,
            None => {
                self.end_line();
                let prompt = format!("? allow {} — {} [y]es / [n]o / [a]lways: ", p.tool_name, p.title);
                let answer = ask_line(prompt).await?;
                match answer.trim().to_lowercase().as_str() {
                    "y" | "yes" => PermissionDecision::Allow,
                    "a" | "always" => PermissionDecision::AllowAlways,
                    _ => PermissionDecision::Deny,
                }
            }
        };
        let message = (decision == PermissionDecision::Deny && self.approve.is_none() && !self.tty)
            .then(|| "no one could be asked (not a terminal); run with --approve all|reads to allow".to_owned());
        match self.client.reply_permission(&self.session, &p.permission_id, decision, message).await {
            Ok(()) => {}
            Err(e) if e.status() == Some(404) => {} // the policy answered first
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn question(&mut self, q: &QuestionRequested) -> Result<()> {
        let answer = if self.tty && !self.out().json {
            self.end_line();
            let opts = if q.options.is_empty() { String::new() } else { format!(" [{}]", q.options.join("/")) };
            let a = ask_line(format!("? {}{opts}: ", q.question)).await?;
            Some(a.trim().to_owned()).filter(|a| !a.is_empty())
        } else {
            None
        };
        match self.client.reply_question(&self.session, &q.question_id, answer).await {
            Ok(()) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads one line from the terminal without blocking the async runtime.
async fn ask_line(prompt: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading the answer")?
    .context("reading the answer")
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// A short description of an event for the human `events` listing.
fn summary(ev: &Event) -> String {
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
