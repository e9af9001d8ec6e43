//! `sbx pause`, `sbx resume`, `sbx down`.

use anyhow::Result;
use clap::Args;

use crate::context::{provider, Ctx};
use crate::provision;
use crate::output::{usage, Exit};

/// A sandbox name.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The sandbox.
    pub name: String,
}

/// `sbx down` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx down dev\n  sbx down a b c\n  sbx down --all")]
pub struct DownArgs {
    /// Sandboxes to destroy.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Destroy every sandbox in local state.
    #[arg(long)]
    pub all: bool,
}

/// Pause (`stop = true`) or resume.
pub async fn pause(ctx: &Ctx, a: NameArgs, stop: bool) -> Result<Exit> {
    let rec = ctx.record(&a.name)?;
    let p = provider(&rec.provider).await?;
    if !p.capabilities().pause {
        return Err(usage(format!("the {} provider cannot pause sandboxes", rec.provider)));
    }
    if stop {
        p.pause(&rec.id).await?;
    } else {
        p.resume(&rec.id).await?;
        // Make sure the runtime answers again before saying so.
        ctx.client(&rec).await?;
    }
    let what = if stop { "paused" } else { "resumed" };
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({ "name": rec.name, "state": what }));
    } else {
        ctx.out.note(format!("{what} `{}`", rec.name));
    }
    Ok(Exit::Success)
}

/// Destroys sandboxes and forgets them.
pub async fn down(ctx: &Ctx, a: DownArgs) -> Result<Exit> {
    let names: Vec<String> = if a.all { ctx.state.list()?.into_iter().map(|r| r.name).collect() } else { a.names };
    let mut destroyed = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        ctx.record(name)?;
        let step = ctx.out.step(&format!("destroying `{name}`"));
        match provision::down(ctx, name).await {
            Ok(()) => {
                step.done();
                destroyed.push(name.clone());
            }
            Err(e) => {
                step.fail();
                eprintln!("error: could not destroy `{name}`: {}", crate::output::error_line(&e));
                failed.push(name.clone());
            }
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({ "destroyed": destroyed, "failed": failed }));
    }
    Ok(if failed.is_empty() { Exit::Success } else { Exit::Failure })
}
