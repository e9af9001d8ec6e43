//! `sbx credentials extract|env`: the LLM credentials on this machine (the same code as
//! `sbx-agent credentials`).

use anyhow::Result;
use clap::Args;
use sbx_agent::credentials::cli::{run as run_credentials, CredentialsCommand};

use crate::output::{usage, Exit, Output};

/// `sbx credentials` flags.
#[derive(Args, Debug)]
pub struct CredentialsArgs {
    #[command(subcommand)]
    command: CredentialsCommand,
}

/// Runs `sbx credentials …`.
pub fn run(out: &Output, a: CredentialsArgs) -> Result<Exit> {
    let (text, warnings, code) = run_credentials(&a.command, out.json);
    if code == 2 {
        return Err(usage(warnings.join("; ")));
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
    print!("{text}");
    Ok(Exit::Success)
}
