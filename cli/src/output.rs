//! Human output vs `--json`, progress only on a TTY, one clear error line, and exit codes.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::cli::{ColorChoice, GlobalArgs};

/// Exit codes, as `docs/cli.md` documents them. Scripts branch on these: never renumber one.
///
/// | code | meaning |
/// |-----:|---------|
/// | 0 | ok |
/// | 1 | any other failure |
/// | 2 | usage or config: bad flags, bad `sbx.yaml`, unknown provider/agent/sandbox name, missing image |
/// | 3 | auth: an API key is missing or refused |
/// | 4 | provider: its control plane or API failed (error status, rate limit, unreachable, timeout) |
/// | 5 | sandbox: it is gone, or its runtime is unreachable or unhealthy |
/// | 6 | agent: the coding agent is not installed, or its turn failed |
/// | 125 | `sbx exec`: some of the command's output was lost |
/// | 130 | interrupted (Ctrl-C) |
///
/// `sbx exec` otherwise exits with the remote command's own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything worked.
    Success,
    /// 1: something failed that no other code names.
    Failure,
    /// 2: the input was wrong (flags, config, names, a missing image).
    Usage,
    /// 3: credentials missing or refused.
    Auth,
    /// 4: the provider's control plane failed.
    Provider,
    /// 5: the sandbox is gone, or its runtime does not answer.
    Sandbox,
    /// 6: the coding agent is missing or failed.
    Agent,
    /// 125: `sbx exec` lost some of the command's output.
    DataLost,
    /// 130: Ctrl-C.
    Interrupted,
    /// A specific code (the remote command's).
    Code(u8),
}

impl Exit {
    /// Every named code, in the order of the table (for docs and tests).
    pub const ALL: &'static [Exit] = &[
        Self::Success,
        Self::Failure,
        Self::Usage,
        Self::Auth,
        Self::Provider,
        Self::Sandbox,
        Self::Agent,
        Self::DataLost,
        Self::Interrupted,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Auth => 3,
            Self::Provider => 4,
            Self::Sandbox => 5,
            Self::Agent => 6,
            Self::DataLost => 125,
            Self::Interrupted => 130,
            Self::Code(c) => c,
        }
    }

    /// The stable name of the code in JSON error objects (`error.code`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::Failure => "failure",
            Self::Usage => "usage",
            Self::Auth => "auth",
            Self::Provider => "provider",
            Self::Sandbox => "sandbox",
            Self::Agent => "agent",
            Self::DataLost => "data_lost",
            Self::Interrupted => "interrupted",
            Self::Code(_) => "exit",
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        e.code().into()
    }
}

/// A failure the CLI names itself (before or after talking to a provider or a runtime). Typed so the
/// exit code comes from the variant, never from the message.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input was wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Credentials are missing (exit 3).
    #[error("{0}")]
    Auth(String),
}

/// Returns a usage error (exit 2) with `msg`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CliError::Usage(msg.into()))
}

/// Returns an auth error (exit 3) with `msg`, which says how to provide the credentials.
pub fn auth_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CliError::Auth(msg.into()))
}

/// Marks that the user pressed Ctrl-C (exit 130).
#[derive(Debug)]
pub struct Interrupted;
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}
impl std::error::Error for Interrupted {}

/// The exit code of an error and a hint for it: the first error in its chain (outermost first) whose
/// type sbx knows decides, by its variant; an error of no known type exits 1.
pub fn classify(e: &anyhow::Error) -> (Exit, Option<String>) {
    e.chain().find_map(classify_one).unwrap_or((Exit::Failure, None))
}

fn classify_one(cause: &(dyn std::error::Error + 'static)) -> Option<(Exit, Option<String>)> {
    use sbx_agent::api::ProblemKind;
    use sbx_agent::client::ClientError;
    use sbx_providers::Error as P;
    if let Some(e) = cause.downcast_ref::<CliError>() {
        return Some(match e {
            CliError::Usage(_) => (Exit::Usage, None),
            CliError::Auth(_) => (Exit::Auth, Some("`sbx auth status` shows which keys sbx finds and where".into())),
        });
    }
    if cause.is::<Interrupted>() {
        return Some((Exit::Interrupted, None));
    }
    if let Some(e) = cause.downcast_ref::<P>() {
        return Some(match e {
            P::Auth { provider, .. } if *provider == sbx_providers::registry::SSH.name => {
                (Exit::Auth, Some("SSH keys come from ssh-agent (`ssh-add`) and ~/.ssh; host keys from ~/.ssh/known_hosts (docs/providers/ssh.md)".into()))
            }
            P::Auth { provider, .. } => {
                (Exit::Auth, Some(format!("`sbx auth login {provider}` stores a key; `sbx auth status` shows what sbx finds")))
            }
            P::ImageNotFound { hint, .. } => (Exit::Usage, Some(hint.clone())),
            P::InvalidSpec(_) | P::Unsupported { .. } | P::RuntimeNotFound { .. } => (Exit::Usage, None),
            P::NotFound { .. } => {
                (Exit::Sandbox, Some("the sandbox is gone; `sbx ls` shows what is left, `sbx down NAME` forgets it".into()))
            }
            P::NotRunning { .. } => (Exit::Sandbox, Some("`sbx resume NAME` starts it again".into())),
            P::Runtime(_) => (Exit::Sandbox, Some("`sbx logs NAME` shows the runtime's log".into())),
            P::RateLimited { .. } => (Exit::Provider, Some("the provider throttles requests; try again later".into())),
            P::Io { .. } => return None,
            // Api, Unavailable, Timeout, Provider and whatever variant comes next: the control plane.
            _ => (Exit::Provider, None),
        });
    }
    if let Some(e) = cause.downcast_ref::<ClientError>() {
        return match e {
            ClientError::Transport { .. } => {
                Some((Exit::Sandbox, Some("the sandbox's runtime does not answer; `sbx status NAME` checks it".into())))
            }
            ClientError::Api { .. } if e.problem_kind() == Some(ProblemKind::AgentNotInstalled) => {
                Some((Exit::Agent, Some("`sbx agent install NAME AGENT` installs it".into())))
            }
            _ => None,
        };
    }
    None
}

/// The JSON error object every failure prints under `--json`:
/// `{"error": {"code": "auth", "exit": 3, "message": "…", "hint": "…"}}` (`hint` only when there is one).
pub fn error_json(exit: Exit, message: &str, hint: Option<&str>) -> serde_json::Value {
    let mut error = serde_json::json!({ "code": exit.name(), "exit": exit.code(), "message": message });
    if let Some(h) = hint {
        error["hint"] = h.into();
    }
    serde_json::json!({ "error": error })
}

/// Reports a command line clap could not parse. `--help` and `--version` print as always (exit 0);
/// any other parse error is a usage error (exit 2): clap's text on stderr and, when `--json` is among
/// the arguments, one JSON error object on stdout.
pub fn parse_error(e: clap::Error, args: &[std::ffi::OsString]) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !json_requested(args) {
        let _ = e.print();
        return u8::try_from(e.exit_code()).unwrap_or(2).into();
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a subcommand is required".to_owned()
    } else {
        lines.first().map(|l| l.strip_prefix("error: ").unwrap_or(l).to_owned()).unwrap_or_else(|| e.kind().to_string())
    };
    let tips: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("tip: ")).collect();
    let hint = if tips.is_empty() { "`sbx --help` lists commands, `sbx COMMAND --help` their flags".to_owned() } else { tips.join("; ") };
    let out = Output { json: true, quiet: 0, fancy: false };
    out.json_value(&error_json(Exit::Usage, &message, Some(&hint)));
    let _ = e.print();
    Exit::Usage.into()
}

/// Whether `--json` is among the arguments (before a `--`, after which arguments are a command's).
fn json_requested(args: &[std::ffi::OsString]) -> bool {
    args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
}

/// How to print.
#[derive(Debug, Clone)]
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `-q` count.
    pub quiet: u8,
    /// Progress bars and colour allowed.
    pub fancy: bool,
}

impl Output {
    /// From the global flags and the environment.
    pub fn new(g: &GlobalArgs) -> Self {
        let tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let fancy = !g.json
            && match g.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => tty && !no_color,
            };
        Self { json: g.json, quiet: g.quiet, fancy }
    }

    /// Prints a JSON value on stdout (one line); registered secrets are redacted.
    pub fn json_value(&self, v: &serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", crate::redact::redact(&v.to_string()));
    }

    /// Prints a line of data on stdout (human mode).
    pub fn line(&self, s: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`sbx ls | head`) is not an error.
        let _ = writeln!(out, "{}", s.as_ref());
    }

    /// Prints a note on stderr unless quiet or JSON.
    pub fn note(&self, s: impl AsRef<str>) {
        if self.quiet == 0 && !self.json {
            eprintln!("{}", s.as_ref());
        }
    }

    /// Starts a named step: a spinner on a TTY, a plain line otherwise.
    pub fn step(&self, what: &str) -> Step {
        let bar = if self.fancy && self.quiet == 0 {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_style(
                indicatif::ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .expect("valid template"),
            );
            pb.set_message(what.to_owned());
            pb.enable_steady_tick(Duration::from_millis(80));
            Some(pb)
        } else {
            None
        };
        Step { what: what.to_owned(), started: Instant::now(), bar, quiet: self.quiet > 0 || self.json }
    }

    /// Reports the command's result and returns the exit code: an error is one line on stderr and,
    /// under `--json`, one JSON error object on stdout ([`error_json`]).
    pub fn finish(&self, result: anyhow::Result<Exit>) -> std::process::ExitCode {
        match result {
            Ok(code) => code.into(),
            Err(e) => {
                let (code, hint) = classify(&e);
                let msg = crate::redact::redact(&error_line(&e));
                if self.json {
                    let hint = hint.map(|h| crate::redact::redact(&h));
                    self.json_value(&error_json(code, &msg, hint.as_deref()));
                }
                eprintln!("error: {msg}");
                code.into()
            }
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// A step in progress.
pub struct Step {
    what: String,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Step {
    /// Marks it done.
    pub fn done(self) {
        let ms = self.started.elapsed().as_millis();
        match self.bar {
            Some(pb) => pb.finish_with_message(format!("✓ {} ({ms} ms)", self.what)),
            None if !self.quiet => eprintln!("{} ... done ({ms} ms)", self.what),
            None => {}
        }
    }
    /// Marks it failed.
    pub fn fail(self) {
        if let Some(pb) = self.bar {
            pb.abandon_with_message(format!("✗ {}", self.what));
        } else if !self.quiet {
            eprintln!("{} ... failed", self.what);
        }
    }
}

/// Logs to stderr at a level picked by `-v` (or `RUST_LOG`).
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,sbx=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| crate::redact::RedactingStderr).try_init();
}

/// Draws an image pull: one bar per layer on a TTY; otherwise one plain line each time a layer's
/// status changes (never one per byte update).
pub struct LayerBars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<String, (indicatif::ProgressBar, String)>>,
    fancy: bool,
    quiet: bool,
}

impl LayerBars {
    /// A renderer for `out`'s mode.
    pub fn new(out: &Output) -> Self {
        Self {
            multi: indicatif::MultiProgress::new(),
            bars: Default::default(),
            fancy: out.fancy && out.quiet == 0,
            quiet: out.quiet > 0 || out.json,
        }
    }

    /// Shows one progress event of the pull.
    pub fn update(&self, p: &sbx_providers::docker::PullProgress) {
        if self.quiet {
            return;
        }
        let Some(layer) = p.layer.as_deref() else {
            if !self.fancy {
                eprintln!("{}: {}", p.image, p.status);
            }
            return;
        };
        let short: String = layer.chars().take(12).collect();
        let mut bars = self.bars.lock().expect("layer bars");
        let entry = bars.entry(short.clone()).or_insert_with(|| {
            let pb = if self.fancy { self.multi.add(indicatif::ProgressBar::new(0)) } else { indicatif::ProgressBar::hidden() };
            pb.set_style(
                indicatif::ProgressStyle::with_template("{prefix} {msg:<18} [{bar:30.cyan/blue}] {bytes}/{total_bytes}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            pb.set_prefix(short.clone());
            (pb, String::new())
        });
        let (pb, last_status) = entry;
        if let (Some(cur), Some(total)) = (p.current, p.total) {
            pb.set_length(total);
            pb.set_position(cur);
        }
        if *last_status != p.status {
            if !self.fancy {
                eprintln!("layer {short}: {}", p.status);
            }
            pb.set_message(p.status.clone());
            *last_status = p.status.clone();
            if p.status.starts_with("Pull complete") || p.status.starts_with("Already exists") {
                pb.finish();
            }
        }
    }
}

/// Unix seconds as a UTC date and time (for `sbx fs ls`, run ids and log lines).
pub fn utc(secs: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
