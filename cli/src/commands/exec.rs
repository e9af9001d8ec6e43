//! `sbx exec NAME -- CMD…`.

use anyhow::Result;
use clap::Args;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx exec` flags.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The sandbox.
    pub name: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs `sbx exec`.
pub async fn run(_ctx: &Ctx, _a: ExecArgs) -> Result<Exit> {
    anyhow::bail!("sbx exec: not wired yet")
}
