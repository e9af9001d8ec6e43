//! The `sbx-agent` command line: `server`, `daemon`, and (later) `install-agent` and `credentials`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use super::{CorsConfig, ServerConfig};
use crate::api::process::ProcessLimits;

use crate::server_env::{LOG as ENV_LOG, LOG_STDOUT as ENV_LOG_STDOUT, TOKEN as ENV_TOKEN};

#[derive(Parser, Debug)]
#[command(
    name = "sbx-agent",
    version = concat!(env!("CARGO_PKG_VERSION"), " (the in-sandbox runtime of sbx, the coding-agent sandbox CLI)"),
    about = "The sbx in-sandbox runtime: an HTTP API for files, processes, terminals and agent sessions.",
    after_help = "Examples:\n  SBX_AGENT_TOKEN=secret sbx-agent server --port 2468\n  sbx-agent server --no-token --root /workspace      # loopback only\n  sbx-agent daemon start --token-sha256 $(printf %s \"$TOKEN\" | sha256sum | cut -c1-64) && sbx-agent daemon status"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server in the foreground.
    Server(ServerArgs),
    /// Manage one background server per host:port.
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
    /// Install an agent binary (claude, codex) for sessions to use.
    #[command(after_help = "Sources, in order: already installed (unless --reinstall); --from-path (a binary already here, \
e.g. uploaded from the host); a mirror URL template (--mirror or SBX_AGENT_MIRROR; {agent}, {version}, {os}, {arch} are \
filled in, and the SHA-256 is read from URL.sha256 unless --sha256 is given).\n\nExamples:\n  sbx-agent install-agent claude --from-path /tmp/claude\n  \
SBX_AGENT_MIRROR=http://mirror.internal/{agent}/{version}/{agent} sbx-agent install-agent --all")]
    InstallAgent(InstallAgentArgs),
    /// The MCP server Claude Code asks for permission (started by the runtime for each claude session).
    #[command(hide = true)]
    PermissionMcp {
        /// The session's permission socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Find the LLM credentials on this machine (masked unless --reveal), or print them as shell assignments.
    Credentials {
        #[command(subcommand)]
        command: crate::credentials::cli::CredentialsCommand,
    },
    /// Relay stdin/stdout to a TCP port on this machine until either side ends: how the ssh provider
    /// reaches the runtime when the SSH server forbids forwarding.
    #[command(hide = true)]
    Connect {
        /// Host to connect to.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Port to connect to.
        #[arg(long)]
        port: u16,
    },
    /// Sleep forever: the keep-alive process of containers whose image has no `sleep` (used by the
    /// Docker provider for scratch and distroless images; the real server is started next to it).
    #[command(hide = true)]
    Idle,
}

#[derive(Subcommand, Debug)]
enum DaemonAction {
    /// Start a background server, or reuse a healthy one on the same host:port.
    Start(Box<ServerArgs>),
    /// Stop the background server on host:port.
    Stop(DaemonTarget),
    /// Show whether a background server runs on host:port (pid, version, log file).
    Status(DaemonTarget),
}

/// Flags of `sbx-agent install-agent`.
#[derive(Args, Debug, Clone)]
pub struct InstallAgentArgs {
    /// The agent (`claude` or `codex`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub agent: Option<String>,
    /// Install every agent that has a binary.
    #[arg(long)]
    pub all: bool,
    /// Install even if one is present.
    #[arg(long)]
    pub reinstall: bool,
    /// The version to fetch from the mirror (default: latest).
    #[arg(long = "agent-version")]
    pub agent_version: Option<String>,
    /// Install this binary (already in the sandbox).
    #[arg(long, conflicts_with = "all")]
    pub from_path: Option<String>,
    /// Mirror URL template (default: $SBX_AGENT_MIRROR).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Expected SHA-256 of the binary.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Where from: auto (default), image, path, mirror, vendor, pip.
    #[arg(long, value_parser = ["auto", "image", "path", "mirror", "vendor", "pip"])]
    pub source: Option<String>,
    /// The vendor release channel's base URL (default: $SBX_CLAUDE_RELEASES_URL / $SBX_CODEX_RELEASES_URL).
    #[arg(long)]
    pub channel_url: Option<String>,
    /// A Python package index for `--source pip`.
    #[arg(long)]
    pub pip_index_url: Option<String>,
    /// The runtime's state directory (default: $XDG_STATE_HOME/sbx-agent).
    #[arg(long, env = "SBX_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which daemon a `stop`/`status` is about.
#[derive(Args, Debug, Clone)]
pub struct DaemonTarget {
    /// Host the daemon listens on.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port the daemon listens on.
    #[arg(short, long, default_value_t = crate::DEFAULT_PORT)]
    pub port: u16,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `sbx-agent server` (and `daemon start`).
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// TCP port (0 picks a free one).
    #[arg(short, long, default_value_t = crate::DEFAULT_PORT)]
    pub port: u16,
    /// Bearer token every route but /v1/health requires. Prefer the env var: flags show up in `ps`.
    #[arg(long, env = ENV_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    /// Instead of the token: its SHA-256 (64 hex digits). Requests pass when the SHA-256 of their bearer
    /// token matches, so the token itself is on no command line and in no environment (this is how
    /// `sbx` starts the runtime).
    #[arg(long, value_name = "HEX")]
    pub token_sha256: Option<String>,
    /// Serve without a token. Only allowed on a loopback address unless --allow-insecure-remote.
    #[arg(long, conflicts_with_all = ["token", "token_sha256"])]
    pub no_token: bool,
    /// Together with --no-token on a non-loopback address: yes, anyone who can reach it may use it.
    #[arg(long, requires = "no_token")]
    pub allow_insecure_remote: bool,
    /// Confine every file path (and process cwd) to this directory.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Also listen on this Unix socket (for sandboxes with no network).
    #[arg(long)]
    pub unix: Option<PathBuf>,
    /// Listen only on --unix, not on TCP.
    #[arg(long, requires = "unix")]
    pub unix_only: bool,
    /// CORS: an allowed origin (repeatable; `*` for any).
    #[arg(long = "cors-allow-origin")]
    pub cors_allow_origin: Vec<String>,
    /// CORS: an allowed method (repeatable).
    #[arg(long = "cors-allow-method")]
    pub cors_allow_method: Vec<String>,
    /// CORS: an allowed request header (repeatable).
    #[arg(long = "cors-allow-header")]
    pub cors_allow_header: Vec<String>,
    /// CORS: allow credentials.
    #[arg(long)]
    pub cors_allow_credentials: bool,
    /// Directory for log files (default: $XDG_STATE_HOME/sbx-agent/logs). Set SBX_AGENT_LOG_STDOUT=1 to log to stdout.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Where session journals and installed agents live (default: $XDG_STATE_HOME/sbx-agent). Sessions
    /// in it are reopened at start, so a restarted runtime keeps serving them.
    #[arg(long, env = "SBX_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Max managed processes and terminals at once.
    #[arg(long)]
    pub max_processes: Option<u32>,
    /// Default timeout of a run, in milliseconds.
    #[arg(long)]
    pub default_run_timeout_ms: Option<u64>,
    /// Max timeout a run may ask for, in milliseconds.
    #[arg(long)]
    pub max_run_timeout_ms: Option<u64>,
    /// Max stdout/stderr bytes a run keeps.
    #[arg(long)]
    pub max_output_bytes: Option<u64>,
    /// Max log bytes kept per managed process.
    #[arg(long)]
    pub max_log_bytes: Option<u64>,
    /// End after this many seconds with no request and no managed process or terminal running
    /// (0 or unset: never). The ssh provider sets it, so a forgotten sandbox does not run forever.
    #[arg(long, value_name = "SECS", env = "SBX_AGENT_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
}

impl ServerArgs {
    /// Checks the flags and turns them into a [`ServerConfig`].
    pub fn to_config(&self) -> Result<ServerConfig, String> {
        let token = self.token.clone().filter(|t| !t.is_empty());
        let token_sha256 = self.token_sha256.as_deref().map(parse_sha256).transpose()?;
        if token.is_some() && token_sha256.is_some() {
            return Err(format!("both a token ({ENV_TOKEN} or --token) and --token-sha256 given: give one"));
        }
        if token.is_none() && token_sha256.is_none() && !self.no_token {
            return Err(format!(
                "no token: pass --token-sha256 (the SHA-256 of the token clients will send), set {ENV_TOKEN} \
                 (or --token), or pass --no-token to serve without auth on loopback"
            ));
        }
        let cors = CorsConfig {
            allow_origins: self.cors_allow_origin.clone(),
            allow_methods: self.cors_allow_method.clone(),
            allow_headers: self.cors_allow_header.clone(),
            allow_credentials: self.cors_allow_credentials,
        };
        cors.validate()?;
        if self.no_token && !self.unix_only && !self.host.is_loopback() && !self.allow_insecure_remote {
            return Err(format!(
                "refusing --no-token on {}: anyone who can reach it could run commands. Use a token, \
                 listen on 127.0.0.1, or add --allow-insecure-remote if you really mean it",
                self.host
            ));
        }
        let mut limits = ProcessLimits::default();
        if let Some(v) = self.max_processes {
            limits.max_concurrent_processes = v;
        }
        if let Some(v) = self.default_run_timeout_ms {
            limits.default_run_timeout_ms = v;
        }
        if let Some(v) = self.max_run_timeout_ms {
            limits.max_run_timeout_ms = v;
        }
        if let Some(v) = self.max_output_bytes {
            limits.max_output_bytes = v;
        }
        if let Some(v) = self.max_log_bytes {
            limits.max_log_bytes_per_process = v;
        }
        if let Some(root) = &self.root {
            if !root.is_dir() {
                return Err(format!("--root {}: not a directory (create it first)", root.display()));
            }
        }
        Ok(ServerConfig {
            addr: (!self.unix_only).then(|| SocketAddr::new(self.host, self.port)),
            unix_socket: self.unix.clone(),
            token,
            token_sha256,
            root: self.root.clone(),
            cors,
            limits,
            log_file: (!log_to_stdout()).then(|| self.log_dir.clone().unwrap_or_else(default_log_dir).join(LOG_FILE)),
            state_dir: Some(self.state_dir.clone().unwrap_or_else(state_dir)),
            helper_exe: None,
            session_env: Default::default(),
            idle_timeout: self.idle_timeout.filter(|s| *s > 0).map(std::time::Duration::from_secs),
        })
    }
}

/// Parses `--token-sha256`: 64 hex digits.
fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    let bad = || format!("--token-sha256 `{hex}`: expected the SHA-256 of the token as 64 hex digits");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The runtime's log file name inside the log directory.
pub const LOG_FILE: &str = "sbx-agent.log";

/// Whether `SBX_AGENT_LOG_STDOUT` asks for logs on stdout instead of a file.
fn log_to_stdout() -> bool {
    std::env::var(ENV_LOG_STDOUT).map(|v| v != "0" && !v.is_empty()).unwrap_or(false)
}

/// The default log directory.
pub fn default_log_dir() -> PathBuf {
    state_dir().join("logs")
}

/// `$XDG_STATE_HOME/sbx-agent`, falling back to `~/.local/state/sbx-agent`, then `/tmp/sbx-agent`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sbx-agent");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/state/sbx-agent");
    }
    PathBuf::from("/tmp/sbx-agent")
}

fn init_logging(log_dir: Option<&PathBuf>, file_name: &str) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    if log_to_stdout() {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).init();
        return None;
    }
    let dir = log_dir.cloned().unwrap_or_else(default_log_dir);
    if std::fs::create_dir_all(&dir).is_err() {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
        return None;
    }
    let appender = tracing_appender::rolling::never(&dir, file_name);
    let (writer, guard) = tracing_appender::non_blocking(appender);
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(writer).init();
    Some(guard)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Entry point of the `sbx-agent` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            let session_env = take_session_env();
            let config = match args.to_config() {
                Ok(c) => ServerConfig { session_env, ..c },
                Err(e) => {
                    eprintln!("sbx-agent: {e}");
                    return ExitCode::from(2);
                }
            };
            let _guard = init_logging(args.log_dir.as_ref(), LOG_FILE);
            tracing::info!(version = crate::VERSION, addr = ?config.addr, unix = ?config.unix_socket, root = ?config.root, auth = config.token.is_some() || config.token_sha256.is_some(), "starting");
            match runtime().block_on(super::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    eprintln!("sbx-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Daemon { action } => super::daemon::run(action_into(action)),
        Command::InstallAgent(args) => install_agent(args),
        Command::Credentials { command } => {
            let (out, warnings, code) = crate::credentials::cli::run(&command, false);
            for w in warnings {
                eprintln!("sbx-agent: {}", w);
            }
            print!("{out}");
            ExitCode::from(code)
        }
        Command::PermissionMcp { socket } => match super::sessions::permission_mcp::run(&socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sbx-agent permission-mcp: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Connect { host, port } => connect(host, port),
        Command::Idle => loop {
            // `park` may wake spuriously; SIGTERM (forwarded by the container's init) ends the process.
            std::thread::park();
        },
    }
}

/// `sbx-agent connect`: stdin → the TCP port, the port → stdout. Ends when the port's side ends
/// (stdin may stay open: the client keeps idle connections), by `exit`, since a read of stdin in
/// progress would otherwise keep the process alive.
fn connect(host: IpAddr, port: u16) -> ExitCode {
    use tokio::io::AsyncWriteExt;
    let done = runtime().block_on(async {
        let mut tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let (mut from, mut to) = tcp.split();
        let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
        let up = async {
            let r = tokio::io::copy(&mut stdin, &mut to).await;
            let _ = to.shutdown().await;
            r
        };
        let down = async {
            let r = tokio::io::copy(&mut from, &mut stdout).await;
            let _ = stdout.flush().await;
            r
        };
        tokio::pin!(up, down);
        tokio::select! {
            d = &mut down => d,
            u = &mut up => { u?; down.await }
        }
    });
    match done {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("sbx-agent connect {host}:{port}: {e}");
            std::process::exit(1)
        }
    }
}

fn action_into(a: DaemonAction) -> super::daemon::Action {
    match a {
        DaemonAction::Start(args) => super::daemon::Action::Start(args),
        DaemonAction::Stop(t) => super::daemon::Action::Stop(t),
        DaemonAction::Status(t) => super::daemon::Action::Status(t),
    }
}

fn install_agent(args: InstallAgentArgs) -> ExitCode {
    let dir = args.state_dir.clone().unwrap_or_else(state_dir);
    let ids: Vec<String> = match (&args.agent, args.all) {
        (Some(a), _) => vec![a.clone()],
        (None, _) => super::sessions::installable_agents().iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut failed = false;
    for id in ids {
        let req = crate::api::session::InstallAgentRequest {
            reinstall: args.reinstall,
            version: args.agent_version.clone(),
            from_path: args.from_path.clone(),
            mirror_url: args.mirror.clone(),
            sha256: args.sha256.clone(),
            source: args.source.clone(),
            channel_url: args.channel_url.clone(),
            pip_index_url: args.pip_index_url.clone(),
        };
        match runtime().block_on(super::sessions::install_agent_into(&dir, &id, req)) {
            Ok(r) if args.json => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
            Ok(r) => println!(
                "{}: {} {} ({})",
                r.agent.id,
                if r.changed { "installed" } else { "already installed" },
                r.agent.version.as_deref().unwrap_or("unknown version"),
                r.agent.path.as_deref().unwrap_or("?")
            ),
            Err(e) => {
                eprintln!("sbx-agent: {id}: {e}");
                failed = true;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Takes the session-only variables out of this process's environment (so no child sees them under
/// their prefixed names) and returns them unprefixed. Called before any thread starts.
fn take_session_env() -> std::collections::BTreeMap<String, String> {
    let prefix = crate::server_env::SESSION_ENV_PREFIX;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else { continue };
        if let Some(name) = k.strip_prefix(prefix).filter(|n| !n.is_empty()) {
            out.insert(name.to_owned(), v.to_owned());
            std::env::remove_var(k);
        }
    }
    out
}
