//! `sbx attach NAME` (serve a keyless sandbox's LLM relay in the foreground), `sbx proxy` (serve every
//! keyless sandbox's) and `sbx usage [NAME]` (the relay's audit rows). See docs/keyless.md.

use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::keyless::serve::{serve_forever, Relay};
use crate::output::{usage, Exit};

/// `sbx attach` flags.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sbx up --provider docker --name box --agent claude --keyless\n  sbx attach box        # serves box's model requests until Ctrl-C, a line per request"
)]
pub struct AttachArgs {
    /// The keyless sandbox.
    pub name: String,
}

/// `sbx proxy` flags.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sbx proxy             # foreground, until Ctrl-C\n  sbx proxy --daemon    # in the background (log: proxy.log in the state directory)\n  sbx proxy --stop"
)]
pub struct ProxyArgs {
    /// Serve in the background, detached from this terminal; a second `--daemon` finds the first.
    #[arg(long, conflicts_with = "stop")]
    pub daemon: bool,
    /// Stop the background proxy.
    #[arg(long)]
    pub stop: bool,
}

/// `sbx usage` flags.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sbx usage             # every relayed model request on this machine\n  sbx usage box --json  # one sandbox's, as JSON"
)]
pub struct UsageArgs {
    /// Only this sandbox's requests.
    pub name: Option<String>,
}

/// Runs `sbx attach`.
pub async fn attach(ctx: &Ctx, a: AttachArgs) -> Result<Exit> {
    let rec = ctx.record(&a.name)?;
    if ctx.state.relay_token(&rec.name)?.is_none() {
        return Err(usage(format!("sandbox `{}` is not keyless: make one with `sbx up --keyless`", rec.name)));
    }
    let client = ctx.client(&rec).await?;
    let relay = Relay::new(&rec.name, ctx.state.path(), Some(ctx.out.clone()))?;
    ctx.out.note(format!("serving the LLM relay of `{}` (Ctrl-C to stop)", rec.name));
    let stop = CancellationToken::new();
    tokio::select! {
        () = serve_forever(client, relay, stop.clone()) => {}
        _ = tokio::signal::ctrl_c() => stop.cancel(),
    }
    Ok(Exit::Success)
}

/// Runs `sbx proxy`: serves the relay of every keyless sandbox recorded here whose token is not revoked,
/// in the foreground, until Ctrl-C (sandboxes made later are picked up within a few seconds).
pub async fn proxy(ctx: &Ctx, a: ProxyArgs) -> Result<Exit> {
    let dir = ctx.state.path().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let daemon = crate::keyless::daemon::Daemon::new(&dir);
    if a.stop {
        let stopped = daemon.stop().await?;
        if ctx.out.json {
            ctx.out.json_value(&serde_json::json!({"stopped": stopped.is_some(), "pid": stopped}));
        } else {
            match stopped {
                Some(pid) => ctx.out.note(format!("stopped the background proxy (pid {pid})")),
                None => ctx.out.note("no background proxy runs"),
            }
        }
        return Ok(Exit::Success);
    }
    if a.daemon {
        let (pid, already) = match daemon.running() {
            Some(pid) => (pid, true),
            None => (daemon.start()?, false),
        };
        if ctx.out.json {
            ctx.out.json_value(&serde_json::json!({"pid": pid, "alreadyRunning": already, "log": daemon.log()}));
        } else {
            let what = if already { "already serves" } else { "serves" };
            ctx.out.note(format!(
                "a background proxy (pid {pid}) {what} the LLM relay of every keyless sandbox here; log: {}; stop: sbx proxy --stop",
                daemon.log().display()
            ));
        }
        return Ok(Exit::Success);
    }
    ctx.out.note("serving the LLM relay of every keyless sandbox on this machine (Ctrl-C to stop)");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let served = crate::keyless::Attachments::new(ctx.state.path());
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Success),
            _ = terminate.recv() => return Ok(Exit::Success),
        }
        for rec in ctx.state.list()? {
            let Some(t) = ctx.state.relay_token(&rec.name)? else { continue };
            if t.revoked_at.is_some() || rec.status != "ready" || served.serves(&rec.name) {
                continue;
            }
            match ctx.client(&rec).await {
                Ok(client) => {
                    served.ensure(&rec.name, &client)?;
                    ctx.out.note(format!("serving `{}`", rec.name));
                }
                Err(e) => tracing::info!(sandbox = %rec.name, error = %format!("{e:#}"), "not reachable yet"),
            }
        }
    }
}

/// Runs `sbx usage`.
pub fn usage_command(ctx: &Ctx, a: UsageArgs) -> Result<Exit> {
    let rows = ctx.state.audit_rows(a.name.as_deref())?;
    let (input, output): (u64, u64) = rows.iter().fold((0, 0), |(i, o), r| (i + r.input_tokens.unwrap_or(0), o + r.output_tokens.unwrap_or(0)));
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({
            "requests": rows,
            "totals": {"requests": rows.len(), "inputTokens": input, "outputTokens": output},
        }));
        return Ok(Exit::Success);
    }
    if rows.is_empty() {
        ctx.out.note("no relayed model requests recorded (keyless sandboxes: `sbx up --keyless`)");
        return Ok(Exit::Success);
    }
    ctx.out.line(format!(
        "{:<19}  {:<16}  {:<14}  {:<24}  {:>6}  {:>8}  {:>8}  {:>8}",
        "TIME (UTC)", "SANDBOX", "SESSION", "MODEL", "STATUS", "IN", "OUT", "MS"
    ));
    for r in &rows {
        let time = time::OffsetDateTime::from_unix_timestamp((r.started_ms / 1000) as i64)
            .map(|t| format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second()))
            .unwrap_or_default();
        let n = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        ctx.out.line(format!(
            "{time:<19}  {:<16}  {:<14}  {:<24}  {:>6}  {:>8}  {:>8}  {:>8}",
            r.sandbox,
            r.session.as_deref().unwrap_or("-"),
            r.model.as_deref().unwrap_or("-"),
            r.status.map(|s| s.to_string()).unwrap_or_else(|| "…".into()),
            n(r.input_tokens),
            n(r.output_tokens),
            n(r.duration_ms),
        ));
    }
    ctx.out.note(format!("{} requests, {input} input and {output} output tokens", rows.len()));
    Ok(Exit::Success)
}

fn relay_token(ctx: &Ctx, name: &str) -> Result<crate::keyless::RelayToken> {
    ctx.state
        .relay_token(name)?
        .ok_or_else(|| usage(format!("sandbox `{name}` is not keyless (no relay token on this machine; `sbx up --keyless` makes one)")))
}

/// `sbx auth revoke NAME`.
pub fn revoke(ctx: &Ctx, name: &str) -> Result<Exit> {
    relay_token(ctx, name)?;
    let revoked = ctx.state.revoke_relay_token(name, crate::state::now_secs())?;
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({"name": name, "revoked": true, "alreadyRevoked": !revoked}));
    } else if revoked {
        ctx.out.note(format!("revoked the LLM relay token of `{name}`: its model requests get 401 (`sbx auth renew {name}` issues a new one)"));
    } else {
        ctx.out.note(format!("the LLM relay token of `{name}` was revoked already"));
    }
    Ok(Exit::Success)
}

/// `sbx auth renew NAME`: a new token with the same limits, pushed to the runtime.
pub async fn renew(ctx: &Ctx, name: &str) -> Result<Exit> {
    let old = relay_token(ctx, name)?;
    let rec = ctx.record(name)?;
    let policy = crate::keyless::Policy {
        agents: old.agents.clone(),
        ttl: std::time::Duration::from_secs(old.ttl_secs),
        rpm: old.rpm,
        max_tokens: old.max_tokens,
        wait: std::time::Duration::from_millis(old.wait_ms),
    };
    let fresh = policy.mint(name);
    ctx.state.put_relay_token(&fresh)?;
    let client = ctx.client(&rec).await?;
    crate::session_env::push(&ctx.state, &client, &rec).await?;
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({"name": name, "renewed": true, "expiresAt": fresh.expires_at}));
    } else {
        ctx.out.note(format!(
            "`{name}` has a new LLM relay token (valid {} s, renewed while served); sessions started from now on use it",
            fresh.ttl_secs
        ));
    }
    Ok(Exit::Success)
}
