//! `sbx logs NAME`.

use anyhow::Result;
use clap::Args;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The sandbox.
    pub name: String,
}

/// Runs `sbx logs`.
pub async fn run(_ctx: &Ctx, _a: LogsArgs) -> Result<Exit> {
    anyhow::bail!("sbx logs: not wired yet")
}
