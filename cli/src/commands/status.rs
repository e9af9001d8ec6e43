//! `sbx status NAME`.

use anyhow::Result;
use clap::Args;

use crate::context::{provider, Ctx};
use crate::output::Exit;

/// `sbx status` flags.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The sandbox.
    pub name: String,
}

/// Runs `sbx status`.
pub async fn run(ctx: &Ctx, a: StatusArgs) -> Result<Exit> {
    let rec = ctx.record(&a.name)?;
    let p = provider(&rec.provider).await?;
    let live = p.get(&rec.id).await?;
    let health = match ctx.client(&rec).await {
        Ok(c) => c.health().await.ok(),
        Err(_) => None,
    };
    let state = live.as_ref().map(|s| s.state.to_string()).unwrap_or_else(|| "missing".into());
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({
            "name": rec.name, "provider": rec.provider, "id": rec.id, "state": state,
            "endpoint": rec.endpoint, "labels": rec.labels, "createdAt": rec.created_at,
            "expiresAt": rec.expires_at, "runtime": health, "phases": rec.phases,
        }));
    } else {
        ctx.out.line(format!("name:      {}", rec.name));
        ctx.out.line(format!("provider:  {}", rec.provider));
        ctx.out.line(format!("id:        {}", rec.id));
        ctx.out.line(format!("state:     {state}"));
        ctx.out.line(format!("age:       {}", super::ls::age(Some(rec.created_at))));
        match &health {
            Some(h) => ctx.out.line(format!("runtime:   healthy (sbx-agent {}, up {} s)", h.version, h.uptime_ms / 1000)),
            None => ctx.out.line("runtime:   not answering"),
        }
        if !rec.phases.0.is_empty() {
            let each: Vec<String> = rec.phases.0.iter().map(|p| format!("{} {} ms", p.name, p.duration_ms)).collect();
            ctx.out.line(format!("made in:   {:.1} s ({})", rec.phases.total().as_secs_f64(), each.join(", ")));
        }
    }
    // A sandbox that is gone, or whose runtime does not answer, is what exit 5 means (docs/cli.md).
    Ok(if live.is_some() && health.is_some() { Exit::Success } else { Exit::Sandbox })
}
