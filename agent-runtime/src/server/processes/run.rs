//! `POST /v1/processes/run`: run a command to completion.
//!
//! The child gets its own process group, so a timeout kills everything it started (SIGKILL to the
//! group). Stdout and stderr are read concurrently, each kept up to the byte cap and drained past it
//! (so the child never blocks on a full pipe). The run is over when the child has exited *and* both
//! pipes are closed, like `subprocess.run`; a background grandchild that keeps a pipe open therefore
//! counts towards the run, until the timeout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::os::{exit_parts, signal_group, spawn_error, Spec};
use super::ProcessManager;
use crate::api::process::{RunRequest, RunResponse};
use crate::server::ApiError;

/// How long to wait for the pipes to close after the group was killed at the timeout, before giving
/// up on a descendant that left the group (e.g. with `setsid`) but kept stdout open.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// Kills a process group when dropped while armed: a client that goes away mid-run takes the run with it.
struct GroupKill {
    pgid: Option<u32>,
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = signal_group(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `req` to completion under the manager's limits.
pub(crate) async fn run(mgr: &ProcessManager, req: RunRequest) -> Result<RunResponse, ApiError> {
    let limits = mgr.limits();
    let timeout_ms = match req.timeout_ms {
        None => limits.default_run_timeout_ms,
        Some(0) => return Err(ApiError::bad_request("`timeoutMs` must be at least 1")),
        Some(t) if t > limits.max_run_timeout_ms => {
            return Err(ApiError::bad_request(format!(
                "`timeoutMs` {t} is over the limit of {} (maxRunTimeoutMs in /v1/processes/config)",
                limits.max_run_timeout_ms
            )))
        }
        Some(t) => t,
    };
    let cap = req.max_output_bytes.map_or(limits.max_output_bytes, |m| m.min(limits.max_output_bytes));
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let stdin = match (req.stdin, req.stdin_base64) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give `stdin` or `stdinBase64`, not both")),
        (Some(s), None) => Some(s.into_bytes()),
        (None, Some(b)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| ApiError::bad_request(format!("`stdinBase64` is not valid base64: {e}")))?,
        ),
        (None, None) => None,
    };
    let spec = Spec::new(mgr.fs(), req.command, req.args, req.shell, req.cwd, req.env).await?;

    let mut cmd = spec.command();
    cmd.process_group(0)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started) + Duration::from_millis(timeout_ms);
    let mut child = cmd.spawn().map_err(|e| spawn_error(&spec.program, &e))?;
    let mut guard = GroupKill { pgid: child.id() };

    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits without reading its input is fine: ignore EPIPE.
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
            let _ = pipe.shutdown().await;
        });
    }
    let cancel = CancellationToken::new();
    let out = tokio::spawn(capture(child.stdout.take(), cap, cancel.clone()));
    let err = tokio::spawn(capture(child.stderr.take(), cap, cancel.clone()));

    let work = async {
        let status = child.wait().await;
        let out = out.await;
        let err = err.await;
        (status, out, err)
    };
    tokio::pin!(work);
    let mut timed_out = false;
    let (status, out, err) = match tokio::time::timeout_at(deadline, &mut work).await {
        Ok(done) => done,
        Err(_) => {
            timed_out = true;
            if let Some(pgid) = guard.pgid {
                signal_group(pgid, Signal::SIGKILL)?;
            }
            match tokio::time::timeout(DRAIN_AFTER_KILL, &mut work).await {
                Ok(done) => done,
                Err(_) => {
                    // Something outside the group holds the pipes: stop reading and report what we have.
                    cancel.cancel();
                    work.await
                }
            }
        }
    };
    guard.pgid = None;
    let duration_ms = started.elapsed().as_millis() as u64;
    let status = status.map_err(|e| ApiError::internal(format!("waiting for `{}`: {e}", spec.program)))?;
    let (stdout, stdout_truncated) = out.map_err(|e| ApiError::internal(format!("reading stdout: {e}")))?;
    let (stderr, stderr_truncated) = err.map_err(|e| ApiError::internal(format!("reading stderr: {e}")))?;
    let (exit_code, signal) = exit_parts(status);
    Ok(RunResponse {
        exit_code,
        signal,
        stdout: stdout.into(),
        stderr: stderr.into(),
        stdout_truncated,
        stderr_truncated,
        duration_ms,
        timed_out,
    })
}

/// Reads `pipe` to the end (or until cancelled), keeping the first `cap` bytes.
async fn capture<R: AsyncRead + Unpin>(pipe: Option<R>, cap: usize, cancel: CancellationToken) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let Some(mut pipe) = pipe else { return (kept, truncated) };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = pipe.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = cancel.cancelled() => break,
        };
        let room = cap.saturating_sub(kept.len());
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    (kept, truncated)
}
