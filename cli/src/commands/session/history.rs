//! What the host keeps of sessions: listing them, paging their events, exporting a transcript, and
//! copying events into the host state.

use anyhow::Result;
use futures::StreamExt;
use sbx_agent::api::session::Event;
use sbx_agent::client::Client;

use super::transcript::{markdown, summary};
use super::{EventsArgs, ExportArgs, ExportFormat};
use crate::context::Ctx;
use crate::output::{usage, Exit};

pub(super) async fn ls(ctx: &Ctx, name: &str) -> Result<Exit> {
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

pub(super) async fn events(ctx: &Ctx, a: EventsArgs) -> Result<Exit> {
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

pub(super) async fn export(ctx: &Ctx, a: ExportArgs) -> Result<Exit> {
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
pub(super) async fn sync(ctx: &Ctx, client: &Client, sandbox: &str, session: &str) -> Result<()> {
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
pub(super) struct Recorder {
    sandbox: String,
    session: String,
    rows: Vec<(u64, String)>,
}

impl Recorder {
    pub(super) fn new(sandbox: &str, session: &str) -> Self {
        Self { sandbox: sandbox.to_owned(), session: session.to_owned(), rows: Vec::new() }
    }
    pub(super) fn push(&mut self, ctx: &Ctx, ev: &Event) -> Result<()> {
        self.rows.push((ev.sequence, serde_json::to_string(ev)?));
        if self.rows.len() >= 512 {
            self.flush(ctx)?;
        }
        Ok(())
    }
    pub(super) fn flush(&mut self, ctx: &Ctx) -> Result<()> {
        ctx.state.record_events(&self.sandbox, &self.session, &self.rows)?;
        self.rows.clear();
        Ok(())
    }
}
