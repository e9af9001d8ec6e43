//! `sbx shell NAME`.

use anyhow::Result;
use clap::Args;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx shell` flags.
#[derive(Args, Debug)]
pub struct ShellArgs {
    /// The sandbox.
    pub name: String,
}

/// Runs `sbx shell`.
pub async fn run(_ctx: &Ctx, _a: ShellArgs) -> Result<Exit> {
    anyhow::bail!("sbx shell: not wired yet")
}
