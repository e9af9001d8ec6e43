//! Following a turn live: rendering it for a person (or as JSON lines) and answering permission
//! requests and questions.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};
use futures::StreamExt;
use sbx_agent::api::session::{
    ContentPart, Event, EventData, ItemKind, PermissionDecision, PermissionKind, PermissionRequested, QuestionRequested,
    Role, TurnCompleted,
};
use sbx_agent::client::Client;

use super::history::Recorder;
use super::Approve;
use crate::context::Ctx;
use crate::output::{Interrupted, Output};

/// Follows one turn from `from` to its `turn.completed`, rendering it, answering permission requests
/// and recording every event. Ctrl-C cancels the turn (and waits briefly for it to close).
pub(super) async fn follow_turn(ctx: &Ctx, client: &Client, sandbox: &str, session: &str, from: u64, approve: Option<Approve>) -> Result<TurnCompleted> {
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
pub(super) struct View<'a> {
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
    pub(super) fn new(ctx: &'a Ctx, client: &'a Client, sandbox: &str, session: &str, approve: Option<Approve>) -> Self {
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

    pub(super) fn flush(&mut self) -> Result<()> {
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

    pub(super) async fn event(&mut self, ev: Event) -> Result<()> {
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

pub(super) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}
