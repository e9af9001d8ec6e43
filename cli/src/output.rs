//! Human output vs `--json`, progress only on a TTY, one clear error line, and exit codes.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::cli::{ColorChoice, GlobalArgs};

/// Exit codes sbx documents: 0 ok, 1 failure, 2 bad usage or config, 130 interrupted; `sbx exec` exits
/// with the remote command's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Success,
    /// Something failed.
    Failure,
    /// The input was wrong.
    Usage,
    /// Ctrl-C.
    Interrupted,
    /// A specific code (the remote command's).
    Code(u8),
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Success => 0.into(),
            Exit::Failure => 1.into(),
            Exit::Usage => 2.into(),
            Exit::Interrupted => 130.into(),
            Exit::Code(c) => c.into(),
        }
    }
}

/// An error that should exit with a particular code (others exit 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// Returns a usage error (exit 2) with `msg`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
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

    /// Reports the command's result and returns the exit code.
    pub fn finish(&self, result: anyhow::Result<Exit>) -> std::process::ExitCode {
        match result {
            Ok(code) => code.into(),
            Err(e) => {
                let code = if e.downcast_ref::<UsageError>().is_some() {
                    Exit::Usage
                } else if e.downcast_ref::<Interrupted>().is_some() {
                    Exit::Interrupted
                } else {
                    Exit::Failure
                };
                let msg = crate::redact::redact(&error_line(&e));
                if self.json {
                    self.json_value(&serde_json::json!({ "error": { "message": msg } }));
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
