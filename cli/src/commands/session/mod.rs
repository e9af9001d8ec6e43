//! `sbx session …` and `sbx prompt`: agent sessions in a sandbox, rendered for people as they stream,
//! as JSON lines for scripts, and copied into the host state so a transcript outlives the sandbox.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use sbx_agent::api::session::{CreateSessionRequest, EndReason, PermissionPolicy, TurnCompleted, TurnOutcome};
use sbx_agent::api::ProblemKind;

use crate::context::Ctx;
use crate::output::{usage, Exit, Interrupted};

mod history;
mod transcript;
mod view;

use history::{events, export, ls, sync};
pub use transcript::markdown;
use view::{follow_turn, View};

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
    /// The agent: claude, codex, mock, an ACP agent (vibe, gemini, opencode, openhands) or one configured in the sandbox.
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
    pub(crate) fn request(&self, default_policy: PermissionPolicy) -> Result<CreateSessionRequest> {
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
#[command(after_help = "Exit code: 0 when the agent finished its answer, 6 when it failed (or is not installed), 130 on Ctrl-C.\n\nExamples:\n  sbx prompt dev \"what does this repo do?\"\n  sbx prompt dev \"fix the failing test\" --agent codex --approve all\n  sbx prompt dev \"echo hi\" --agent mock")]
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
        // A turn cut short by Ctrl-C ends its session as cancelled, not completed.
        let reason = if result.as_ref().is_err_and(|e| e.is::<Interrupted>()) { EndReason::Cancelled } else { EndReason::Completed };
        let _ = client.end_session_for(&info.id, false, reason).await;
        let _ = sync(ctx, &client, &a.name, &info.id).await;
    } else {
        ctx.out.note(format!("session {} kept; `sbx session send {} {} …` continues it", info.id, a.name, info.id));
    }
    Ok(turn_exit(&result?))
}

/// A refused session: an agent that is not installed stays a typed error (exit 6); other bad
/// settings (an unknown agent, model or mode) are the user's input (exit 2).
fn agent_error(e: sbx_agent::client::ClientError) -> anyhow::Error {
    if e.problem_kind() == Some(ProblemKind::AgentNotInstalled) {
        return e.into();
    }
    match e.status() {
        Some(400) | Some(404) => usage(e.to_string()),
        _ => e.into(),
    }
}

fn turn_exit(done: &TurnCompleted) -> Exit {
    match done.outcome {
        TurnOutcome::Completed => Exit::Success,
        TurnOutcome::Failed => Exit::Agent,
        TurnOutcome::Cancelled => Exit::Interrupted,
    }
}
