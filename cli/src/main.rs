//! `sbx`: parse, dispatch, report. Everything else lives in the library modules.

mod agents_setup;
mod auth;
mod cli;
mod commands;
mod context;
mod keyless;
mod keystore;
mod output;
mod provider_arg;
mod provision;
mod redact;
mod run;
mod session_env;
mod state;

use clap::Parser;

fn main() -> std::process::ExitCode {
    redact::install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return output::parse_error(e, &args),
    };
    output::init_logging(cli.global.verbose);
    let out = output::Output::new(&cli.global);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(commands::dispatch(cli.command, out.clone()));
    // Background tasks (progress bars, HTTP connections) must not keep us alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    out.finish(result)
}
