//! `sbx fs …` and `sbx cp`.

use anyhow::Result;
use clap::Args;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx fs` flags.
#[derive(Args, Debug)]
pub struct FsArgs {
    /// The sandbox.
    pub name: String,
}

/// `sbx cp` flags.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Source.
    pub src: String,
    /// Destination.
    pub dest: String,
}

/// Runs `sbx fs`.
pub async fn run_fs(_ctx: &Ctx, _a: FsArgs) -> Result<Exit> {
    anyhow::bail!("sbx fs: not wired yet")
}

/// Runs `sbx cp`.
pub async fn run_cp(_ctx: &Ctx, _a: CpArgs) -> Result<Exit> {
    anyhow::bail!("sbx cp: not wired yet")
}
