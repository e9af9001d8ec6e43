//! The command line, declared with clap derive. Global flags live here once; each subcommand's own
//! flags live next to its implementation in `commands/`.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

/// sbx — a sandbox for your coding agent, on any provider.
#[derive(Parser, Debug)]
#[command(
    name = "sbx",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("SBX_BUILD_COMMIT"),
        " ",
        env!("SBX_BUILD_TARGET"),
        ") — the coding-agent sandbox CLI (not Docker's `sbx`)"
    ),
    about = about(),
    long_about = None,
    after_help = "Examples:\n  sbx up --provider local --name dev          # a sandbox, no Docker or cloud needed\n  sbx exec dev -- git status                  # run a command in it\n  sbx shell dev                               # an interactive terminal\n  sbx down dev                                # destroy it\n\nDocs: docs/ in the repository; `sbx <command> --help` for each command.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    /// Less output (repeat for none).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use colour and progress bars.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `--color`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands.
// Parsed once per process, so the size of the largest variant (`up`'s flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a sandbox and start the runtime in it.
    Up(commands::up::UpArgs),
    /// List sandboxes (local state merged with the providers' own listings).
    #[command(alias = "list")]
    Ls(commands::ls::LsArgs),
    /// Show one sandbox and whether its runtime answers.
    Status(commands::status::StatusArgs),
    /// Run a command in a sandbox; its exit code becomes sbx's.
    Exec(commands::exec::ExecArgs),
    /// Open an interactive terminal in a sandbox.
    Shell(commands::shell::ShellArgs),
    /// Files in a sandbox: ls, cat, put, get, rm, mkdir, mv.
    Fs(commands::fs::FsArgs),
    /// Copy files or directories between the host and a sandbox (`NAME:/path` on either side).
    Cp(commands::fs::CpArgs),
    /// Show the runtime's log.
    Logs(commands::logs::LogsArgs),
    /// Pause a sandbox (keeps its state).
    Pause(commands::lifecycle::NameArgs),
    /// Resume a paused sandbox.
    Resume(commands::lifecycle::NameArgs),
    /// Destroy sandboxes.
    #[command(alias = "rm")]
    Down(commands::lifecycle::DownArgs),
    /// Destroy sbx sandboxes that are orphaned or past their ttl.
    Gc(commands::gc::GcArgs),
    /// Agent sessions in a sandbox: new, ls, send, events, attach, export, cancel, end.
    Session(commands::session::SessionArgs),
    /// Ask an agent one thing in a sandbox and print its answer (a new session, one turn).
    Prompt(commands::session::PromptArgs),
    /// The coding agents in a sandbox: ls, install.
    Agent(commands::agent::AgentArgs),
    /// Be an ACP agent on stdin/stdout for an editor (Zed…), running the agent in a sandbox.
    Acp(commands::acp::AcpArgs),
    /// Check a sandbox's agents and whether their LLM endpoint answers from inside it.
    Doctor(commands::doctor::DoctorArgs),
    /// LLM credentials on this machine: list them (masked) or print them as shell assignments.
    Credentials(commands::credentials::CredentialsArgs),
    /// The providers sbx can make sandboxes on: what each is, its capabilities, keys and env vars.
    Providers(commands::providers::ProvidersArgs),
    /// Cloud provider API keys (stored in a file only you can read): login, logout, status.
    Auth(commands::auth::AuthArgs),
    /// Serve a keyless sandbox's LLM relay from this machine until Ctrl-C (docs/keyless.md).
    Attach(commands::keyless::AttachArgs),
    /// Serve the LLM relay of every keyless sandbox on this machine (until Ctrl-C, or --daemon).
    Proxy(commands::keyless::ProxyArgs),
    /// Model requests relayed for keyless sandboxes: sandbox, session, model, tokens, latency, status.
    Usage(commands::keyless::UsageArgs),
    /// Run many tasks, each in its own sandbox with an agent, from an sbx.yaml (for CI).
    Run(crate::run::RunArgs),
    /// Runs recorded on this machine: ls, show (--open: the HTML report), report.
    Runs(crate::run::RunsArgs),
    /// A local page in the browser: sandboxes, live sessions and prompts, files, processes, a terminal.
    Ui(commands::ui::UiArgs),
    /// sbx.yaml helpers: schema.
    Config(crate::run::ConfigArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
    /// Replace this sbx (and its sbx-agent) with a newer release, checksums verified (runs the installer).
    SelfUpdate(commands::self_update::SelfUpdateArgs),
}

/// The one-line description, naming the registered providers (so it never offers one that isn't there).
fn about() -> String {
    format!("A sandbox for your coding agent on any provider: {}.", sbx_providers::registry::names().join(", "))
}
