//! What every way of starting a process shares: validating the request into a [`Spec`], building the
//! command, signals and their names, exit statuses, and the clock.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::str::FromStr;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::api::process::SignalSpec;
use crate::server::fs::FsRoot;
use crate::server::ApiError;

/// A validated request to start something: program, arguments, working directory, extra environment.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) env: BTreeMap<String, String>,
}

impl Spec {
    /// Checks `command`/`args` versus `shell`, the environment, and resolves `cwd` (confined to the
    /// root when there is one; it must be an existing directory).
    pub(crate) async fn new(
        fs: &FsRoot,
        command: Option<String>,
        args: Vec<String>,
        shell: Option<String>,
        cwd: Option<String>,
        env: BTreeMap<String, String>,
    ) -> Result<Self, ApiError> {
        let (program, args) = match (command, shell) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give either `command` (with `args`) or `shell`, not both",
                ))
            }
            (None, Some(line)) => {
                if !args.is_empty() {
                    return Err(ApiError::bad_request(
                        "`args` goes with `command`; with `shell` put everything in the shell string",
                    ));
                }
                ("sh".to_owned(), vec!["-c".to_owned(), line])
            }
            (Some(cmd), None) => {
                if cmd.is_empty() {
                    return Err(ApiError::bad_request("`command` is empty; name a program to run"));
                }
                (cmd, args)
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "nothing to run: give `command` (with optional `args`) or `shell` (a command line)",
                ))
            }
        };
        if program.contains('\0') || args.iter().any(|a| a.contains('\0')) {
            return Err(ApiError::bad_request("`command` and `args` must not contain NUL bytes"));
        }
        for (k, v) in &env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "bad environment variable `{k}`: names must be non-empty without `=` or NUL, values without NUL"
                )));
            }
        }
        let cwd = resolve_cwd(fs, cwd).await?;
        Ok(Self { program, args, cwd, env })
    }

    /// A tokio command for this spec: runtime environment (minus the runtime's own token) plus `env`.
    pub(crate) fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .env_remove(crate::server_env::TOKEN)
            .envs(&self.env);
        cmd
    }

    /// The working directory as a string for reports.
    pub(crate) fn cwd_display(&self) -> String {
        self.cwd.to_string_lossy().into_owned()
    }
}

/// Resolves a requested working directory (default: the root, or the runtime's working directory).
pub(crate) async fn resolve_cwd(fs: &FsRoot, cwd: Option<String>) -> Result<PathBuf, ApiError> {
    let fs = fs.clone();
    let shown = cwd.clone().unwrap_or_else(|| ".".into());
    tokio::task::spawn_blocking(move || {
        let path = fs.resolve(&shown)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(path),
            Ok(_) => Err(ApiError::bad_request(format!("cwd `{shown}` is not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::bad_request(format!("cwd `{shown}` does not exist")))
            }
            Err(e) => Err(ApiError::bad_request(format!("cwd `{shown}`: {}", plain_io_error(&e)))),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("resolving cwd: {e}")))?
}

/// The problem for a failed spawn: the request named something that cannot be started.
pub(crate) fn spawn_error(program: &str, err: &std::io::Error) -> ApiError {
    ApiError::bad_request(format!("cannot start `{program}`: {}", plain_io_error(err)))
}

/// An I/O error's message without the trailing ` (os error N)`.
pub(crate) fn plain_io_error(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Parses a signal name (`TERM`, `SIGTERM`, `term`) or number.
pub(crate) fn parse_signal(spec: &SignalSpec) -> Result<Signal, ApiError> {
    match spec {
        SignalSpec::Number(n) => Signal::try_from(*n)
            .map_err(|_| ApiError::bad_request(format!("{n} is not a signal number on this system"))),
        SignalSpec::Name(name) => {
            let trimmed = name.trim();
            if let Ok(n) = trimmed.parse::<i32>() {
                return parse_signal(&SignalSpec::Number(n));
            }
            let upper = trimmed.to_ascii_uppercase();
            let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
            Signal::from_str(&full).map_err(|_| {
                ApiError::bad_request(format!(
                    "unknown signal `{name}`; use a name like TERM, INT, KILL, HUP, USR1 or a number"
                ))
            })
        }
    }
}

/// A signal's name without `SIG` (`TERM`), or its number when it has no name here.
pub(crate) fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_owned(),
        Err(_) => sig.to_string(),
    }
}

/// Exit code and signal name of a finished process.
pub(crate) fn exit_parts(status: ExitStatus) -> (Option<i32>, Option<String>) {
    (status.code(), status.signal().map(signal_name))
}

/// Sends `sig` to process group `pgid`. A group that is already gone is not an error.
pub(crate) fn signal_group(pgid: u32, sig: Signal) -> Result<(), ApiError> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Err(ApiError::internal(format!("bad process group {pgid}")));
    };
    if raw <= 1 {
        // Never signal "every process" (0 = our own group, 1 = init, negative = broadcast).
        return Err(ApiError::internal(format!("refusing to signal process group {raw}")));
    }
    match nix::sys::signal::killpg(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(ApiError::internal(format!("cannot signal process group {raw}: {e}"))),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_and_name() {
        assert_eq!(parse_signal(&"TERM".into()).unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal(&"sigint".into()).unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal(&"9".into()).unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal(&SignalSpec::Number(1)).unwrap(), Signal::SIGHUP);
        assert!(parse_signal(&"NOPE".into()).is_err());
        assert_eq!(signal_name(15), "TERM");
    }
}
