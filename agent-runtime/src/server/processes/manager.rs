//! The table of managed processes and terminals, and the limits they run under.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::watch;

use super::logs::{pump, LogBuffer};
use super::os::{exit_parts, now_ms, signal_group, spawn_error, Spec};
use crate::api::process::{
    CreateProcessRequest, LogEntry, LogStream, LogStreamFilter, ProcessInfo, ProcessLimits, ProcessStatus,
};
use crate::api::ProblemKind;
use crate::server::fs::FsRoot;
use crate::server::ApiError;

/// After a managed process exits, how long to keep reading output that descendants still write
/// before declaring it exited anyway (its log is then complete in every ordinary case).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long a write to a managed process's stdin may block (the process is not reading) before failing.
const STDIN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a managed process ended.
#[derive(Debug, Clone)]
struct Exit {
    code: Option<i32>,
    signal: Option<String>,
    at_ms: u64,
}

/// One managed process.
#[derive(Debug)]
pub(crate) struct Managed {
    id: String,
    pid: u32,
    command: String,
    args: Vec<String>,
    cwd: String,
    started_at_ms: u64,
    exit: Mutex<Option<Exit>>,
    log: Mutex<LogBuffer>,
    /// Bumped on every log append and on exit; followers wait on it.
    changed: watch::Sender<()>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Managed {
    /// The wire view.
    pub(crate) fn info(&self) -> ProcessInfo {
        let exit = lock(&self.exit).clone();
        ProcessInfo {
            id: self.id.clone(),
            pid: self.pid,
            command: self.command.clone(),
            args: self.args.clone(),
            cwd: self.cwd.clone(),
            status: if exit.is_some() { ProcessStatus::Exited } else { ProcessStatus::Running },
            exit_code: exit.as_ref().and_then(|e| e.code),
            signal: exit.as_ref().and_then(|e| e.signal.clone()),
            started_at_ms: self.started_at_ms,
            exited_at_ms: exit.map(|e| e.at_ms),
        }
    }

    /// The process group id (the pid: each managed process leads its own group).
    pub(crate) fn pgid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn is_running(&self) -> bool {
        lock(&self.exit).is_none()
    }

    /// The info once exited, `None` while running.
    pub(crate) fn exited_info(&self) -> Option<ProcessInfo> {
        if self.is_running() {
            None
        } else {
            Some(self.info())
        }
    }

    pub(crate) fn append<'a>(&self, stream: LogStream, chunks: impl Iterator<Item = &'a str>) {
        {
            let mut log = lock(&self.log);
            for c in chunks {
                log.push(stream, c.to_owned());
            }
        }
        self.changed.send_replace(());
    }

    pub(crate) fn log_query(&self, filter: LogStreamFilter, after: u64, tail: Option<usize>) -> Vec<LogEntry> {
        lock(&self.log).query(filter, after, tail)
    }

    pub(crate) fn log_dropped_after(&self, after: u64) -> bool {
        lock(&self.log).dropped_after(after)
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Sends `sig` to the process group; refuses once the process has exited.
    pub(crate) fn signal(&self, sig: Signal) -> Result<(), ApiError> {
        if !self.is_running() {
            return Err(ApiError::conflict(format!("process {} has already exited", self.id)));
        }
        signal_group(self.pgid(), sig)
    }

    /// Waits up to `timeout` for the process to exit; true when it has.
    pub(crate) async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        let waiting = async {
            while self.is_running() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(timeout, waiting).await.is_ok()
    }

    /// Writes `data` to stdin, then closes it when `eof`. Returns whether stdin is now closed.
    pub(crate) async fn write_stdin(&self, data: &[u8], eof: bool) -> Result<bool, ApiError> {
        let mut guard = self.stdin.lock().await;
        if !data.is_empty() {
            let Some(pipe) = guard.as_mut() else {
                return Err(ApiError::conflict(format!(
                    "stdin of process {} is closed (end of file was sent, or the process exited)",
                    self.id
                )));
            };
            let write = async {
                pipe.write_all(data).await?;
                pipe.flush().await
            };
            match tokio::time::timeout(STDIN_WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    *guard = None;
                    return Err(ApiError::conflict(format!("process {} closed its stdin", self.id)));
                }
                Ok(Err(e)) => return Err(ApiError::internal(format!("writing to stdin of {}: {e}", self.id))),
                Err(_) => {
                    return Err(ApiError::conflict(format!(
                        "process {} is not reading its stdin (the write blocked for {}s)",
                        self.id,
                        STDIN_WRITE_TIMEOUT.as_secs()
                    )))
                }
            }
        }
        if eof {
            if let Some(mut pipe) = guard.take() {
                let _ = pipe.shutdown().await;
            }
        }
        Ok(guard.is_none())
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// By creation order (the numeric part of the id).
    procs: BTreeMap<u64, Arc<Managed>>,
    /// Running terminals: key → process group.
    ptys: HashMap<u64, u32>,
    /// Slots taken by starts in progress.
    reserved: usize,
}

impl Table {
    fn active(&self) -> usize {
        self.procs.values().filter(|p| p.is_running()).count() + self.ptys.len() + self.reserved
    }
}

/// The table of managed processes and the current limits.
pub struct ProcessManager {
    limits: Mutex<ProcessLimits>,
    fs: FsRoot,
    table: Mutex<Table>,
}

/// A slot under `maxConcurrentProcesses`, held while something starts; released on drop.
pub(crate) struct Reservation<'a> {
    mgr: &'a ProcessManager,
    held: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held {
            lock(&self.mgr.table).reserved -= 1;
        }
    }
}

impl ProcessManager {
    /// An empty table.
    pub fn new(limits: ProcessLimits, fs: FsRoot) -> Self {
        Self { limits: Mutex::new(limits), fs, table: Mutex::new(Table::default()) }
    }

    /// The current limits.
    pub fn limits(&self) -> ProcessLimits {
        lock(&self.limits).clone()
    }

    /// Replaces the limits after checking them.
    pub fn set_limits(&self, limits: ProcessLimits) -> Result<ProcessLimits, ApiError> {
        limits.validate().map_err(ApiError::bad_request)?;
        *lock(&self.limits) = limits.clone();
        Ok(limits)
    }

    /// The file root cwds are confined to.
    pub(crate) fn fs(&self) -> &FsRoot {
        &self.fs
    }

    /// Takes a slot under the concurrency limit, or fails with 429.
    pub(crate) fn reserve(&self) -> Result<Reservation<'_>, ApiError> {
        let max = self.limits().max_concurrent_processes as usize;
        let mut table = lock(&self.table);
        let active = table.active();
        if active >= max {
            return Err(ApiError::new(
                ProblemKind::LimitReached,
                format!(
                    "{active} processes and terminals are running, the limit is {max}; stop one or raise \
                     maxConcurrentProcesses with PUT /v1/processes/config"
                ),
            ));
        }
        table.reserved += 1;
        Ok(Reservation { mgr: self, held: true })
    }

    /// Turns a reservation into a running terminal with process group `pgid`; returns its key.
    pub(crate) fn register_pty(&self, mut slot: Reservation<'_>, pgid: u32) -> u64 {
        let mut table = lock(&self.table);
        table.reserved -= 1;
        slot.held = false;
        table.next_id += 1;
        let key = table.next_id;
        table.ptys.insert(key, pgid);
        key
    }

    /// Forgets a terminal that ended.
    pub(crate) fn unregister_pty(&self, key: u64) {
        lock(&self.table).ptys.remove(&key);
    }

    /// Starts a managed process.
    pub(crate) async fn start(&self, req: CreateProcessRequest) -> Result<ProcessInfo, ApiError> {
        if req.tty {
            return Err(ApiError::bad_request(
                "managed processes have no terminal; open one with GET /v1/pty (a WebSocket) instead of `tty: true`",
            ));
        }
        let spec = Spec::new(&self.fs, req.command, req.args, req.shell, req.cwd, req.env).await?;
        let slot = self.reserve()?;
        let mut cmd = spec.command();
        cmd.process_group(0).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&spec.program, &e))?;
        let pid = child.id().ok_or_else(|| ApiError::internal("the child exited before it had a pid"))?;
        let limit = self.limits().max_log_bytes_per_process;
        let (changed, _) = watch::channel(());

        let mut table = lock(&self.table);
        table.next_id += 1;
        let n = table.next_id;
        let proc = Arc::new(Managed {
            id: format!("proc_{n}"),
            pid,
            command: spec.program.clone(),
            args: spec.args.clone(),
            cwd: spec.cwd_display(),
            started_at_ms: now_ms(),
            exit: Mutex::new(None),
            log: Mutex::new(LogBuffer::new(limit)),
            changed,
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
        });
        table.procs.insert(n, proc.clone());
        table.reserved -= 1;
        let mut slot = slot;
        slot.held = false;
        drop(table);

        let readers = [
            child.stdout.take().map(|p| tokio::spawn(pump(p, LogStream::Stdout, proc.clone()))),
            child.stderr.take().map(|p| tokio::spawn(pump(p, LogStream::Stderr, proc.clone()))),
        ];
        let watcher = proc.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let drain = async {
                for r in readers.into_iter().flatten() {
                    let _ = r.await;
                }
            };
            let _ = tokio::time::timeout(DRAIN_GRACE, drain).await;
            let (code, signal) = match status {
                Ok(s) => exit_parts(s),
                Err(e) => {
                    tracing::warn!(id = %watcher.id, error = %e, "waiting for managed process failed");
                    (None, None)
                }
            };
            *lock(&watcher.exit) = Some(Exit { code, signal, at_ms: now_ms() });
            watcher.stdin.lock().await.take();
            watcher.changed.send_replace(());
            tracing::debug!(id = %watcher.id, ?code, "managed process exited");
        });
        Ok(proc.info())
    }

    /// Every managed process, oldest first.
    pub(crate) fn list(&self) -> Vec<ProcessInfo> {
        lock(&self.table).procs.values().map(|p| p.info()).collect()
    }

    /// The process with `id`, or 404.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<Managed>, ApiError> {
        let found = id
            .strip_prefix("proc_")
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|n| lock(&self.table).procs.get(&n).cloned());
        found.ok_or_else(|| {
            ApiError::not_found(format!("no process `{id}`; GET /v1/processes lists the ones that exist"))
        })
    }

    /// Removes an exited process; a running one only with `force` (it is killed first), else 409.
    pub(crate) async fn remove(&self, id: &str, force: bool) -> Result<(), ApiError> {
        let proc = self.get(id)?;
        if proc.is_running() {
            if !force {
                return Err(ApiError::conflict(format!(
                    "process {id} is still running; kill it first or pass force=true"
                )));
            }
            signal_group(proc.pgid(), Signal::SIGKILL)?;
            proc.wait_exit(Duration::from_secs(10)).await;
        }
        let n = id.strip_prefix("proc_").and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            lock(&self.table).procs.remove(&n);
        }
        Ok(())
    }

    /// Kills every managed process and terminal (server shutdown), waiting briefly for them to go.
    pub async fn kill_all(&self) {
        let (procs, ptys): (Vec<Arc<Managed>>, Vec<u32>) = {
            let table = lock(&self.table);
            (
                table.procs.values().filter(|p| p.is_running()).cloned().collect(),
                table.ptys.values().copied().collect(),
            )
        };
        for p in &procs {
            let _ = signal_group(p.pgid(), Signal::SIGKILL);
        }
        for pgid in ptys {
            let _ = signal_group(pgid, Signal::SIGKILL);
        }
        for p in &procs {
            p.wait_exit(Duration::from_secs(3)).await;
        }
    }
}
