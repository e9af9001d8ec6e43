//! `sbx completions SHELL`.

use anyhow::Result;
use clap::{Args, CommandFactory};

use crate::output::Exit;

/// `sbx completions` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx completions bash > ~/.local/share/bash-completion/completions/sbx\n  sbx completions zsh > \"${fpath[1]}/_sbx\"")]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Prints the script.
pub fn run(a: &CompletionsArgs) -> Result<Exit> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "sbx", &mut std::io::stdout());
    Ok(Exit::Success)
}
