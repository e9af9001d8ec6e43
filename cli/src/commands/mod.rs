//! One file per subcommand.

pub mod acp;
pub mod agent;
pub mod auth;
pub mod credentials;
pub mod doctor;
pub mod completions;
pub mod exec;
pub mod fs;
pub mod gc;
pub mod keyless;
pub mod lifecycle;
pub mod logs;
pub mod ls;
pub mod providers;
pub mod self_update;
pub mod shell;
pub mod status;
pub mod session;
pub mod ui;
pub mod up;

use anyhow::Result;

use crate::cli::Command;
use crate::context::Ctx;
use crate::output::{Exit, Output};

/// Runs one subcommand.
pub async fn dispatch(cmd: Command, out: Output) -> Result<Exit> {
    if let Command::Completions(a) = &cmd {
        return completions::run(a);
    }
    // These read only this machine's files: no state needed.
    let cmd = match cmd {
        Command::Credentials(a) => return credentials::run(&out, a),
        Command::Config(a) => return crate::run::config_command(&out, a),
        Command::Providers(a) => return providers::run(&out, &a),
        Command::SelfUpdate(a) => return self_update::run(&out, &a).await,
        other => other,
    };
    let mut ctx = Ctx::open(out)?;
    // Commands that run agents serve the LLM relay of the keyless sandboxes they reach while they run.
    if matches!(cmd, Command::Session(_) | Command::Prompt(_) | Command::Run(_) | Command::Acp(_)) {
        ctx.serve_relays();
    }
    let ctx = ctx;
    match cmd {
        Command::Up(a) => up::run(&ctx, a).await,
        Command::Ls(a) => ls::run(&ctx, a).await,
        Command::Status(a) => status::run(&ctx, a).await,
        Command::Exec(a) => exec::run(&ctx, a).await,
        Command::Shell(a) => shell::run(&ctx, a).await,
        Command::Fs(a) => fs::run_fs(&ctx, a).await,
        Command::Cp(a) => fs::run_cp(&ctx, a).await,
        Command::Logs(a) => logs::run(&ctx, a).await,
        Command::Pause(a) => lifecycle::pause(&ctx, a, true).await,
        Command::Resume(a) => lifecycle::pause(&ctx, a, false).await,
        Command::Down(a) => lifecycle::down(&ctx, a).await,
        Command::Gc(a) => gc::run(&ctx, a).await,
        Command::Session(a) => session::run(&ctx, a).await,
        Command::Prompt(a) => session::prompt(&ctx, a).await,
        Command::Agent(a) => agent::run(&ctx, a).await,
        Command::Acp(a) => acp::run(&ctx, a).await,
        Command::Doctor(a) => doctor::run(&ctx, a).await,
        Command::Auth(a) => auth::run(&ctx, a).await,
        Command::Credentials(_) | Command::Config(_) | Command::Providers(_) | Command::SelfUpdate(_) => {
            unreachable!("handled above")
        }
        Command::Attach(a) => keyless::attach(&ctx, a).await,
        Command::Proxy(a) => keyless::proxy(&ctx, a).await,
        Command::Usage(a) => keyless::usage_command(&ctx, a),
        Command::Run(a) => crate::run::run(&ctx, a).await,
        Command::Runs(a) => crate::run::runs_command(&ctx, a),
        Command::Ui(a) => ui::run(&ctx, a).await,
        Command::Completions(_) => unreachable!("handled above"),
    }
}
