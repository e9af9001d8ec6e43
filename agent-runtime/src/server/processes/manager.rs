//! The table of managed processes and terminals, and the limits they run under.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::logs::pump;
use super::os::{exit_parts, now_ms, signal_group, spawn_error, Spec};
use super::ring::{Full, LogBuffer};
use crate::api::process::{
    CreateProcessRequest, LogDropped, LogEntry, LogStream, LogStreamFilter, ProcessInfo, ProcessLimits, ProcessStatus,
};
use crate::api::ProblemKind;
use crate::server::fs::FsRoot;
use crate::server::ApiError;

/// The longest `holdOutputMs` may be.
const MAX_HOLD: Duration = Duration::from_secs(600);
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
    /// Woken when a reader moves on or leaves; a pipe reader waiting for room in the log waits on it.
    room: Notify,
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

    /// Adds output to the log, waiting while it is full of output a follower has not read yet.
    /// Returns how long it waited.
    pub(crate) async fn append(&self, stream: LogStream, pieces: Vec<Bytes>) -> Duration {
        let mut waited = Duration::ZERO;
        for piece in pieces {
            loop {
                // Listen before trying, so a reader moving on in between is not missed.
                let room = self.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                let pushed = lock(&self.log).try_push(stream, &piece);
                match pushed {
                    Ok(()) => {
                        self.changed.send_replace(());
                        break;
                    }
                    Err(Full { retry_at }) => {
                        let t = std::time::Instant::now();
                        match retry_at {
                            Some(at) => {
                                let _ = tokio::time::timeout_at(at.into(), room).await;
                            }
                            None => room.await,
                        }
                        waited += t.elapsed();
                    }
                }
            }
        }
        waited
    }

    pub(crate) fn log_query(&self, filter: LogStreamFilter, after: u64, tail: Option<usize>) -> Vec<LogEntry> {
        lock(&self.log).query(filter, after, tail)
    }

    pub(crate) fn log_dropped_after(&self, after: u64) -> Option<LogDropped> {
        lock(&self.log).dropped_after(after)
    }

    /// A follower's place in the log, from `after` on.
    pub(crate) fn attach(&self, after: u64) -> u64 {
        lock(&self.log).attach(after)
    }

    /// The follower went away: its place lingers a while, then stops holding output back.
    pub(crate) fn detach(&self, cursor: u64) {
        lock(&self.log).detach(cursor);
        self.room.notify_waiters();
    }

    /// A follower's next read: a gap marker when output after its place was dropped, then up to
    /// about `max_bytes` of entries (the last `tail` ones instead, when given). Moves the follower's
    /// place (`after`, and its streams' offsets `next`) past what it returns.
    pub(crate) fn read_log(
        &self,
        cursor: u64,
        filter: LogStreamFilter,
        after: &mut u64,
        next: &mut Option<[u64; 2]>,
        tail: Option<usize>,
        max_bytes: usize,
    ) -> (Option<LogDropped>, Vec<LogEntry>) {
        let mut log = lock(&self.log);
        let gap = log.gap_after(*after, *next);
        if let Some(g) = &gap {
            *after = g.through_seq;
            *next = None;
        }
        if next.is_none() {
            *next = log.offsets_after(*after);
        }
        let entries = match tail {
            Some(n) => {
                let v = log.query(filter, *after, Some(n));
                *after = log.last_seq();
                *next = Some(log.written());
                v
            }
            None => {
                let (v, through) = log.read(filter, *after, max_bytes, next);
                *after = through;
                v
            }
        };
        log.advance(cursor, *after);
        drop(log);
        self.room.notify_waiters();
        (gap, entries)
    }
    /// Stops every follower's place from holding output back.
    pub(crate) fn release_readers(&self) {
        lock(&self.log).clear_cursors();
        self.room.notify_waiters();
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
        let hold = req.hold_output_ms.map(Duration::from_millis);
        if hold.is_some_and(|h| h > MAX_HOLD) {
            return Err(ApiError::bad_request(format!("`holdOutputMs` is at most {}", MAX_HOLD.as_millis())));
        }
        let spec = Spec::new(&self.fs, req.command, req.args, req.shell, req.cwd, req.env).await?;
        let slot = self.reserve()?;
        let mut cmd = spec.command();
        cmd.process_group(0).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&spec.program, &e))?;
        let pid = child.id().ok_or_else(|| ApiError::internal("the child exited before it had a pid"))?;
        let mut log = LogBuffer::new(self.limits().max_log_bytes_per_process);
        if let Some(h) = hold {
            log.hold_until(std::time::Instant::now() + h);
        }
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
            log: Mutex::new(log),
            changed,
            room: Notify::new(),
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
        });
        table.procs.insert(n, proc.clone());
        table.reserved -= 1;
        let mut slot = slot;
        slot.held = false;
        drop(table);

        let exited = CancellationToken::new();
        let readers = [
            child.stdout.take().map(|p| tokio::spawn(pump(p, LogStream::Stdout, proc.clone(), exited.clone()))),
            child.stderr.take().map(|p| tokio::spawn(pump(p, LogStream::Stderr, proc.clone(), exited.clone()))),
        ];
        let watcher = proc.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            // The readers finish on their own: at end of file, or a grace period after this (for
            // descendants that keep the pipes open), not counting time a slow follower held them.
            exited.cancel();
            for r in readers.into_iter().flatten() {
                let _ = r.await;
            }
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
            // Nobody will read it now: let the pipe readers drain instead of waiting for followers.
            proc.release_readers();
            proc.wait_exit(Duration::from_secs(10)).await;
        }
        let n = id.strip_prefix("proc_").and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            lock(&self.table).procs.remove(&n);
        }
        Ok(())
    }

    /// Whether a managed process or a terminal is running (the runtime is not idle then).
    pub(crate) fn busy(&self) -> bool {
        let table = lock(&self.table);
        !table.ptys.is_empty() || table.procs.values().any(|p| p.is_running())
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
            p.release_readers();
        }
        for pgid in ptys {
            let _ = signal_group(pgid, Signal::SIGKILL);
        }
        for p in &procs {
            p.wait_exit(Duration::from_secs(3)).await;
        }
    }
}
