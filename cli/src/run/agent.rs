//! A task's agent phase: one session, one turn, its events in `events.jsonl` (and the host state) and
//! its `transcript.md` — also when the task is stopped (Ctrl-C, timeout) or something breaks halfway.
//!
//! A stop cancels the turn through the runtime's API, so the runtime itself records how the turn ended
//! (`turn.completed`, outcome `cancelled`); the session is then ended the same way (`session.ended`),
//! and the events not yet seen are fetched page by page, so `events.jsonl` always closes.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use sbx_agent::api::session::{CreateSessionRequest, EndReason, Event, EventData, McpServer, PermissionPolicy, TurnOutcome};
use sbx_agent::client::Client;
use tokio_util::sync::CancellationToken;

use super::plan::PlannedTask;
use super::task::{Stopped, TaskEnv, TaskResult, WORK};

/// How long a cancelled turn may take to end, and the session after it.
const WIND_DOWN: Duration = Duration::from_secs(20);

/// Runs the turn. `Ok(true)` when it completed; `Err(Stopped)` when `stop` fired (files written).
pub async fn run(env: &TaskEnv<'_>, client: &Client, task: &PlannedTask, dir: &Path, r: &mut TaskResult, stop: &CancellationToken) -> Result<bool> {
    let req = request(task);
    let session = tokio::select! {
        s = client.create_session(&req) => s.context("starting the agent")?,
        _ = stop.cancelled() => return Err(Stopped.into()),
    };
    let mut log = Log::new(dir)?;
    let turned = turn(client, task, &session.id, &mut log, r, stop).await;
    // End the session through the runtime (it records `session.ended`, with why: a stop is Ctrl-C
    // when the run's own token fired, else the task's timeout), then fetch what is left.
    let reason = match (stop.is_cancelled(), env.cancel.is_cancelled()) {
        (false, _) => EndReason::Completed,
        (true, true) => EndReason::Cancelled,
        (true, false) => EndReason::Timeout,
    };
    let ended = tokio::time::timeout(WIND_DOWN, client.end_session_for(&session.id, false, reason)).await;
    let rest = tokio::time::timeout(WIND_DOWN, log.fetch_rest(client, &session.id)).await;
    let written = log.finish(env, r, &session.id);
    let ok = turned?;
    written?;
    ended.map_err(|_| anyhow::anyhow!("the session did not end within {}s", WIND_DOWN.as_secs()))??;
    rest.map_err(|_| anyhow::anyhow!("the session's last events did not arrive within {}s", WIND_DOWN.as_secs()))??;
    if stop.is_cancelled() && !ok {
        return Err(Stopped.into());
    }
    Ok(ok)
}

fn request(task: &PlannedTask) -> CreateSessionRequest {
    let skills = task
        .skills
        .iter()
        .map(|s| format!(".sbx-run/skills/{}", s.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "skill".into())))
        .collect();
    CreateSessionRequest {
        agent: task.agent.clone(),
        cwd: Some(WORK.into()),
        model: task.model.clone(),
        permission_policy: PermissionPolicy::AllowAll,
        env: task.env.clone(),
        mcp_servers: task
            .mcp_servers
            .iter()
            .map(|m| McpServer {
                name: m.name.clone(),
                command: m.command.clone(),
                args: m.args.clone(),
                env: m.env.clone(),
                url: m.url.clone(),
                headers: m.headers.clone(),
            })
            .collect(),
        skills,
        llm: task.llm.for_agent(&task.agent),
        ..Default::default()
    }
}

/// Sends the prompt and follows the events until the turn ends; a stop cancels the turn and waits
/// (at most [`WIND_DOWN`]) for the runtime's `turn.completed`.
async fn turn(client: &Client, task: &PlannedTask, session: &str, log: &mut Log, r: &mut TaskResult, stop: &CancellationToken) -> Result<bool> {
    let turn = client.send_message(session, &task.prompt, false).await?;
    let mut follow = client.follow_events(session, 0).await?;
    let mut wind_down: Option<tokio::time::Instant> = None;
    loop {
        let ev = match wind_down {
            Some(until) => match tokio::time::timeout_at(until, follow.next()).await {
                Ok(ev) => ev,
                Err(_) => anyhow::bail!("the turn did not end within {}s of being cancelled", WIND_DOWN.as_secs()),
            },
            None => tokio::select! {
                ev = follow.next() => ev,
                _ = stop.cancelled() => {
                    client.cancel_turn(session).await.context("cancelling the turn")?;
                    wind_down = Some(tokio::time::Instant::now() + WIND_DOWN);
                    continue;
                }
            },
        };
        let Some(ev) = ev else { return Ok(false) };
        let ev = ev?;
        let done = match &ev.body {
            EventData::TurnCompleted(t) if ev.sequence > turn.first_sequence => {
                r.usage = t.usage.clone();
                r.cost_usd = t.cost_usd;
                Some(t.outcome == TurnOutcome::Completed)
            }
            _ => None,
        };
        log.push(ev)?;
        if let Some(ok) = done {
            return Ok(ok);
        }
    }
}

/// `events.jsonl` as it is written, and the events for the transcript and the host state.
struct Log {
    dir: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    events: Vec<Event>,
    rows: Vec<(u64, String)>,
}

impl Log {
    fn new(dir: &Path) -> Result<Self> {
        Ok(Self { dir: dir.to_path_buf(), file: std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl"))?), events: Vec::new(), rows: Vec::new() })
    }

    fn push(&mut self, ev: Event) -> Result<()> {
        let line = serde_json::to_string(&ev)?;
        writeln!(self.file, "{line}")?;
        self.rows.push((ev.sequence, line));
        self.events.push(ev);
        Ok(())
    }

    /// Pages through the events after the last one seen until the session has ended.
    async fn fetch_rest(&mut self, client: &Client, session: &str) -> Result<()> {
        loop {
            let after = self.events.last().map(|e| e.sequence).unwrap_or(0);
            let page = client.session_events(session, after, None).await?;
            let last = page.events.is_empty();
            for ev in page.events {
                if ev.sequence > after {
                    self.push(ev)?;
                }
            }
            if page.ended && !page.has_more {
                return Ok(());
            }
            if last {
                // The session has not recorded its end yet: follow until it does.
                let mut follow = client.follow_events(session, after).await?;
                while let Some(ev) = follow.next().await {
                    self.push(ev?)?;
                }
                return Ok(());
            }
        }
    }

    /// Flushes `events.jsonl`, keeps the events in the host state and writes `transcript.md`.
    fn finish(mut self, env: &TaskEnv<'_>, r: &mut TaskResult, session: &str) -> Result<()> {
        r.events = self.events.len() as u64;
        self.file.flush()?;
        let sandbox = r.sandbox.clone().unwrap_or_default();
        std::fs::write(self.dir.join("transcript.md"), crate::commands::session::markdown(session, &self.events))?;
        env.ctx.state.record_events(&sandbox, session, &self.rows)?;
        Ok(())
    }
}
