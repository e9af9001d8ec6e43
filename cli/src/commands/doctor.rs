//! `sbx doctor NAME`: from inside the sandbox, are the agents there and does each one's LLM endpoint
//! answer? Checked before a run spends its time (the runtime runs the same check before every turn).

use anyhow::Result;
use clap::Args;
use sbx_agent::api::session::CheckLlmRequest;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx doctor` flags.
#[derive(Args, Debug)]
#[command(after_help = "Exit code 1 when an agent's configured endpoint does not answer.\n\nExamples:\n  sbx doctor dev\n  sbx doctor dev --agent codex --json")]
pub struct DoctorArgs {
    /// The sandbox.
    name: String,
    /// Only this agent (default: claude and codex).
    #[arg(long)]
    agent: Vec<String>,
}

/// Runs `sbx doctor`.
pub async fn run(ctx: &Ctx, a: DoctorArgs) -> Result<Exit> {
    let client = ctx.client(&ctx.record(&a.name)?).await?;
    let agents = if a.agent.is_empty() { vec!["claude".to_owned(), "codex".to_owned()] } else { a.agent.clone() };
    let mut rows = Vec::new();
    let mut bad = false;
    for agent in &agents {
        let info = client.agent(agent).await?;
        let check = client.check_llm(agent, &CheckLlmRequest::default()).await?;
        // An endpoint that is configured and does not answer is the failure; the vendor default is
        // not checked (the sandbox may reach it through credentials sbx does not see).
        bad |= check.url.is_some() && !check.reachable;
        rows.push((info, check));
    }
    if ctx.out.json {
        let v: Vec<_> = rows.iter().map(|(i, c)| serde_json::json!({"agent": i, "llm": c})).collect();
        ctx.out.json_value(&serde_json::Value::Array(v));
    } else {
        for (info, c) in &rows {
            let installed = match (&info.version, info.installed) {
                (Some(v), true) => format!("installed ({v})"),
                _ => "not installed (sbx agent install, or agent_install: in sbx.yaml)".to_owned(),
            };
            ctx.out.line(format!("{}: {installed}", info.id));
            let llm = match (&c.url, c.reachable) {
                (None, _) => "vendor default endpoint (not checked; set llm: or --llm-base-url to use your own)".to_owned(),
                (Some(u), true) => format!("{u} answered HTTP {} in {} ms (from {})", c.status.unwrap_or(0), c.latency_ms, c.source),
                (Some(u), false) => format!("{u} does NOT answer from inside the sandbox (from {}): {}", c.source, c.error.as_deref().unwrap_or("?")),
            };
            ctx.out.line(format!("  llm: {llm}"));
        }
    }
    Ok(if bad { Exit::Failure } else { Exit::Success })
}
