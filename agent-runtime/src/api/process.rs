//! Process API wire types (`/v1/processes/*`, `/v1/pty`).
//!
//! Three ways to run things in the sandbox:
//! - **run to completion** (`POST /v1/processes/run`, [`RunRequest`] → [`RunResponse`]): output,
//!   exit code, duration, with a timeout that kills the whole process group;
//! - **managed processes** (`POST /v1/processes`, [`CreateProcessRequest`] → [`ProcessInfo`]): started
//!   in the background, with logs ([`LogEntry`], followable as binary frames ([`frame`]) or
//!   server-sent events), stdin, signals;
//! - **terminals** (`GET /v1/pty`, [`PtyQuery`]): a PTY over WebSocket, see [`PtyClientMessage`] and
//!   [`PtyServerMessage`] for the protocol.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::b64;

/// Runtime limits on processes; readable and settable at `/v1/processes/config`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessLimits {
    /// How many managed processes and PTYs may run at once.
    pub max_concurrent_processes: u32,
    /// Timeout for `POST /v1/processes/run` when the request gives none.
    pub default_run_timeout_ms: u64,
    /// The largest timeout a run request may ask for.
    pub max_run_timeout_ms: u64,
    /// Bytes of stdout (and, separately, stderr) a run keeps; the rest is dropped and flagged truncated.
    pub max_output_bytes: u64,
    /// Bytes of output each managed process keeps. While a client follows the log, a process that
    /// outruns it waits (its pipe is not read) instead of losing output; with nobody following, the
    /// oldest output is dropped and a follower that comes later gets a `dropped` marker with the count.
    pub max_log_bytes_per_process: u64,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            max_concurrent_processes: 64,
            default_run_timeout_ms: 60_000,
            max_run_timeout_ms: 3_600_000,
            max_output_bytes: 16 * 1024 * 1024,
            max_log_bytes_per_process: 8 * 1024 * 1024,
        }
    }
}

impl ProcessLimits {
    /// Checks that every value is usable and the timeouts agree; the error says which value is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_processes == 0 {
            return Err("maxConcurrentProcesses must be at least 1".into());
        }
        if self.default_run_timeout_ms == 0 {
            return Err("defaultRunTimeoutMs must be at least 1".into());
        }
        if self.max_run_timeout_ms == 0 {
            return Err("maxRunTimeoutMs must be at least 1".into());
        }
        if self.default_run_timeout_ms > self.max_run_timeout_ms {
            return Err(format!(
                "defaultRunTimeoutMs ({}) is larger than maxRunTimeoutMs ({})",
                self.default_run_timeout_ms, self.max_run_timeout_ms
            ));
        }
        if self.max_output_bytes == 0 {
            return Err("maxOutputBytes must be at least 1".into());
        }
        if self.max_log_bytes_per_process == 0 {
            return Err("maxLogBytesPerProcess must be at least 1".into());
        }
        Ok(())
    }

    /// These limits with the fields `update` sets replaced.
    pub fn merged(&self, update: &ProcessLimitsUpdate) -> Self {
        Self {
            max_concurrent_processes: update.max_concurrent_processes.unwrap_or(self.max_concurrent_processes),
            default_run_timeout_ms: update.default_run_timeout_ms.unwrap_or(self.default_run_timeout_ms),
            max_run_timeout_ms: update.max_run_timeout_ms.unwrap_or(self.max_run_timeout_ms),
            max_output_bytes: update.max_output_bytes.unwrap_or(self.max_output_bytes),
            max_log_bytes_per_process: update.max_log_bytes_per_process.unwrap_or(self.max_log_bytes_per_process),
        }
    }
}

/// `PUT`/`POST /v1/processes/config`: a full or partial [`ProcessLimits`]; fields left out keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessLimitsUpdate {
    /// See [`ProcessLimits::max_concurrent_processes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_processes: Option<u32>,
    /// See [`ProcessLimits::default_run_timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_run_timeout_ms: Option<u64>,
    /// See [`ProcessLimits::max_run_timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_timeout_ms: Option<u64>,
    /// See [`ProcessLimits::max_output_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// See [`ProcessLimits::max_log_bytes_per_process`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes_per_process: Option<u64>,
}

impl From<ProcessLimits> for ProcessLimitsUpdate {
    fn from(l: ProcessLimits) -> Self {
        Self {
            max_concurrent_processes: Some(l.max_concurrent_processes),
            default_run_timeout_ms: Some(l.default_run_timeout_ms),
            max_run_timeout_ms: Some(l.max_run_timeout_ms),
            max_output_bytes: Some(l.max_output_bytes),
            max_log_bytes_per_process: Some(l.max_log_bytes_per_process),
        }
    }
}

/// `POST /v1/processes/run`: run a command to completion.
///
/// Give either `command` (with optional `args`, run directly, no shell) or `shell` (a string run with
/// `sh -c`), not both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// The program to run (looked up in `PATH` when it has no `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments to `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A shell command line, run with `sh -c`; excludes `command` and `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Working directory (relative paths are against the runtime's root or working directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables (added to the runtime's environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text written to the process's stdin (then stdin is closed). Without it stdin is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Like `stdin`, base64-encoded (for binary input); excludes `stdin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_base64: Option<String>,
    /// Kill the process group after this long (default `defaultRunTimeoutMs`, at most `maxRunTimeoutMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes of stdout (and, separately, stderr) to keep; capped at the configured `maxOutputBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

impl RunRequest {
    /// A request to run `command` with `args` directly (no shell).
    pub fn command<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { command: Some(command.into()), args: args.into_iter().map(Into::into).collect(), ..Self::default() }
    }
    /// A request to run a shell command line with `sh -c`.
    pub fn shell(line: impl Into<String>) -> Self {
        Self { shell: Some(line.into()), ..Self::default() }
    }
}

/// The result of `POST /v1/processes/run`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunResponse {
    /// The exit code; `null` when the process was killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the process (`"KILL"`, `"TERM"`, … or the number); `null` when it exited.
    pub signal: Option<String>,
    /// Standard output, byte for byte (base64 in JSON: output is bytes, not text).
    #[serde(rename = "stdoutBase64", with = "b64")]
    #[schema(value_type = String, format = Byte)]
    pub stdout: Bytes,
    /// Standard error, byte for byte (base64 in JSON).
    #[serde(rename = "stderrBase64", with = "b64")]
    #[schema(value_type = String, format = Byte)]
    pub stderr: Bytes,
    /// More stdout was written than kept.
    pub stdout_truncated: bool,
    /// More stderr was written than kept.
    pub stderr_truncated: bool,
    /// Wall-clock time from start to exit.
    pub duration_ms: u64,
    /// The timeout expired and the process group was killed.
    pub timed_out: bool,
}

impl RunResponse {
    /// True when the process exited with code 0 (not signalled, not timed out).
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
    /// Stdout as text when it is valid UTF-8 (never decoded lossily: bytes that are not text stay bytes).
    pub fn stdout_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.stdout).ok()
    }
    /// Stderr as text when it is valid UTF-8.
    pub fn stderr_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.stderr).ok()
    }
}

/// `POST /v1/processes`: start a managed background process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateProcessRequest {
    /// The program to run (looked up in `PATH` when it has no `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments to `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A shell command line, run with `sh -c`; excludes `command` and `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Working directory (relative paths are against the runtime's root or working directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables (added to the runtime's environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Not supported for managed processes: open a terminal with `GET /v1/pty` instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Hold output nobody has read yet, for up to this long: until the first client follows the log,
    /// the process waits when its log is full instead of losing the oldest output. For clients that
    /// start a process and then follow it (`sbx exec`), so the time in between loses nothing. After it,
    /// or without it, output nobody follows is dropped past `maxLogBytesPerProcess` (with a marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_output_ms: Option<u64>,
}

impl CreateProcessRequest {
    /// A request to start `command` with `args` directly (no shell).
    pub fn command<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { command: Some(command.into()), args: args.into_iter().map(Into::into).collect(), ..Self::default() }
    }
    /// A request to start a shell command line with `sh -c`.
    pub fn shell(line: impl Into<String>) -> Self {
        Self { shell: Some(line.into()), ..Self::default() }
    }
}

/// Whether a managed process is still running.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ProcessStatus {
    /// Still running.
    Running,
    /// Exited (or was killed); `exitCode`/`signal` say how.
    Exited,
}

/// A managed process.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    /// The runtime's id for it (`proc_1`, …).
    pub id: String,
    /// The OS process id (also its process group id).
    pub pid: u32,
    /// The program (`sh` for shell command lines).
    pub command: String,
    /// Its arguments (`["-c", line]` for shell command lines).
    pub args: Vec<String>,
    /// The working directory it was started in.
    pub cwd: String,
    /// Running or exited.
    pub status: ProcessStatus,
    /// The exit code once exited normally; `null` while running or when signalled.
    pub exit_code: Option<i32>,
    /// The signal that killed it (`"TERM"`, …); `null` while running or when it exited normally.
    pub signal: Option<String>,
    /// Start time, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Exit time, milliseconds since the Unix epoch; `null` while running.
    pub exited_at_ms: Option<u64>,
}

/// `GET /v1/processes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessList {
    /// Every managed process the runtime knows, oldest first (exited ones until deleted).
    pub processes: Vec<ProcessInfo>,
}

/// Which output stream a log entry came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Which streams `GET /v1/processes/{id}/logs` returns.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LogStreamFilter {
    /// Only stdout.
    Stdout,
    /// Only stderr.
    Stderr,
    /// Both, interleaved in the order they were read.
    #[default]
    Combined,
}

impl LogStreamFilter {
    /// Whether entries of `stream` pass this filter.
    pub fn accepts(self, stream: LogStream) -> bool {
        match self {
            Self::Combined => true,
            Self::Stdout => stream == LogStream::Stdout,
            Self::Stderr => stream == LogStream::Stderr,
        }
    }
    /// The query-string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Combined => "combined",
        }
    }
}

/// One chunk of a managed process's output, byte for byte.
///
/// An entry is what one read of the pipe returned (at most 64 KiB); a read of a few whole lines is
/// cut at its line ends, so output written line by line gives one entry per line. Concatenating the
/// `data` of consecutive entries of one stream gives the output exactly; `offset` tells where each
/// one starts, so a gap can never go unnoticed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Position in this process's log (both streams share one sequence, starting at 1). Used as the
    /// SSE event id, so `Last-Event-ID` resumes after it.
    pub seq: u64,
    /// Which stream.
    pub stream: LogStream,
    /// Where `data` starts in its stream: bytes the process wrote to that stream before it.
    #[serde(default)]
    pub offset: u64,
    /// The bytes (base64 in JSON).
    #[serde(rename = "dataBase64", with = "b64")]
    #[schema(value_type = String, format = Byte)]
    pub data: Bytes,
    /// When it was read, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// Output that was dropped before a reader got it: nobody was following the log and it outgrew
/// `maxLogBytesPerProcess` (the oldest output goes first). Sent in the stream where the gap is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogDropped {
    /// Every entry up to this seq is gone; the stream goes on after it.
    pub through_seq: u64,
    /// Bytes of stdout lost between what the reader had and what follows.
    pub stdout_bytes: u64,
    /// Bytes of stderr lost between what the reader had and what follows.
    pub stderr_bytes: u64,
}

impl LogDropped {
    /// Both streams' lost bytes together.
    pub fn total_bytes(&self) -> u64 {
        self.stdout_bytes + self.stderr_bytes
    }
}

/// `GET /v1/processes/{id}/logs` without `follow`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogsResponse {
    /// The kept entries that match the query, oldest first.
    pub entries: Vec<LogEntry>,
    /// The process's state when the entries were read.
    pub status: ProcessStatus,
    /// True when older entries were dropped (over `maxLogBytesPerProcess`) before the first one here.
    pub dropped: bool,
    /// How many bytes of stdout were dropped before the first entry here (0 when `dropped` is false).
    #[serde(default)]
    pub dropped_stdout_bytes: u64,
    /// How many bytes of stderr were dropped before the first entry here.
    #[serde(default)]
    pub dropped_stderr_bytes: u64,
}

/// Query of `GET /v1/processes/{id}/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct LogsQuery {
    /// `stdout`, `stderr` or `combined` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub stream: Option<LogStreamFilter>,
    /// Only the last N matching entries (of those kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<usize>,
    /// Only entries with `seq` greater than this (what `Last-Event-ID` does for SSE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Follow the log: the kept entries, then live ones, then the exit, after which the stream ends.
    /// As binary frames with `Accept: application/vnd.sbx.log-frames` (see [`frame`]), else as
    /// server-sent events (`event: log`, `id:` = seq, data = a LogEntry; `event: dropped` with a
    /// LogDropped where output was lost; one `event: exit` with the ProcessInfo). `Accept:
    /// text/event-stream` or the frames media type also follow without this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
}

/// The SSE event name of log entries on a followed log.
pub const LOG_EVENT: &str = "log";
/// The SSE event name of a gap on a followed log (data: [`LogDropped`]).
pub const DROPPED_EVENT: &str = "dropped";
/// The SSE event name of the final event on a followed log (data: [`ProcessInfo`]).
pub const EXIT_EVENT: &str = "exit";

/// The binary form of a followed log (`Accept: application/vnd.sbx.log-frames`): the output as it is,
/// with no text encoding, for clients that move a lot of it (`sbx exec`).
///
/// The body is a sequence of frames. Each frame is a 1-byte kind, a 4-byte big-endian payload length,
/// then the payload:
/// - [`STDOUT`](frame::STDOUT) / [`STDERR`](frame::STDERR): output. The payload is the entry's seq,
///   offset and timeMs (three 8-byte big-endian integers, [`DATA_PREFIX_LEN`](frame::DATA_PREFIX_LEN)),
///   then the bytes themselves.
/// - [`DROPPED`](frame::DROPPED): output was lost here; the payload is a [`LogDropped`] as JSON.
/// - [`EXIT`](frame::EXIT): the process exited and its output is complete; the payload is its
///   [`ProcessInfo`] as JSON. The body ends after it.
/// - [`KEEP_ALIVE`](frame::KEEP_ALIVE): empty, sent after 15 s of quiet so proxies keep the
///   connection open.
///
/// Clients skip kinds they do not know. Resume a broken stream with `Last-Event-ID` (or `after`) set
/// to the last seq received, as with SSE.
pub mod frame {
    /// The media type that asks for frames.
    pub const MEDIA_TYPE: &str = "application/vnd.sbx.log-frames";
    /// An empty frame sent after quiet.
    pub const KEEP_ALIVE: u8 = 0;
    /// Stdout bytes.
    pub const STDOUT: u8 = 1;
    /// Stderr bytes.
    pub const STDERR: u8 = 2;
    /// A [`LogDropped`](super::LogDropped) as JSON.
    pub const DROPPED: u8 = 3;
    /// The exited [`ProcessInfo`](super::ProcessInfo) as JSON; the last frame.
    pub const EXIT: u8 = 4;
    /// Kind byte plus the payload length.
    pub const HEADER_LEN: usize = 5;
    /// seq, offset and timeMs before the bytes of an output frame.
    pub const DATA_PREFIX_LEN: usize = 24;
}

/// The body of a followed log as binary frames (see [`frame`] for the format).
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct LogFrames(pub Vec<u8>);

/// `POST /v1/processes/{id}/input`: write to a managed process's stdin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInputRequest {
    /// What to write (UTF-8 text, or base64 when `base64` is true or `encoding` is `"base64"`).
    #[serde(default)]
    pub data: String,
    /// `data` is base64.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    /// `"utf8"` (default) or `"base64"`; an alternative spelling of `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Close stdin after writing (the process then sees end of file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eof: bool,
}

/// The answer to `POST /v1/processes/{id}/input`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInputResponse {
    /// Bytes written to stdin.
    pub bytes_written: u64,
    /// Whether stdin is now closed.
    pub closed: bool,
}

/// A signal: a name (`"TERM"`, `"SIGTERM"`, `"int"`, …) or a number (`15`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum SignalSpec {
    /// A signal number.
    Number(i32),
    /// A signal name, with or without the `SIG` prefix, any case.
    Name(String),
}

impl From<&str> for SignalSpec {
    fn from(s: &str) -> Self {
        Self::Name(s.to_owned())
    }
}

impl From<i32> for SignalSpec {
    fn from(n: i32) -> Self {
        Self::Number(n)
    }
}

/// `POST /v1/processes/{id}/signal`: send a signal to the process's whole process group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SignalRequest {
    /// The signal, e.g. `"TERM"`, `"INT"`, `"KILL"`, `"HUP"` or a number.
    pub signal: SignalSpec,
}

/// Query of `POST /v1/processes/{id}/kill` and `/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct WaitQuery {
    /// Wait up to this long for the process to exit before answering (kill default 5000, stop default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// Query of `DELETE /v1/processes/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct DeleteQuery {
    /// Kill a running process first instead of refusing with 409.
    #[serde(default)]
    pub force: bool,
}

/// Query of `GET /v1/pty` (the WebSocket upgrade).
///
/// `args` and `env` may repeat: `?command=bash&args=-l&args=-i&env=FOO=1`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct PtyQuery {
    /// The program (default: `$SHELL`, else `/bin/sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments (repeat the parameter for several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Terminal width in columns (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Terminal height in rows (default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables as `NAME=value` (repeat for several). `TERM` defaults to `xterm-256color`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

/// A text (JSON) frame the client sends on the PTY WebSocket. Binary frames are raw input bytes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PtyClientMessage {
    /// Change the terminal size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Input as text (the same as a binary frame of its UTF-8 bytes).
    Input {
        /// The text.
        data: String,
    },
}

/// A text (JSON) frame the server sends on the PTY WebSocket. Binary frames are raw output bytes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PtyServerMessage {
    /// The program exited; the server closes the socket next.
    #[serde(rename_all = "camelCase")]
    Exit {
        /// The exit code; `null` when killed by a signal.
        exit_code: Option<i32>,
        /// The signal name when killed by one.
        signal: Option<String>,
    },
    /// Something went wrong (e.g. a control message that could not be parsed); the session continues.
    Error {
        /// What.
        message: String,
    },
}

/// One server-sent event of a followed log, as it is on the wire. `data` is JSON text: a [`LogEntry`]
/// when `event` is `log`, a [`LogDropped`] when `event` is `dropped`, the exited process's
/// [`ProcessInfo`] when `event` is `exit` (the last event).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LogSseEvent {
    /// `log`, `dropped` or `exit`.
    pub event: String,
    /// The entry's seq (`log` events only); send it back as `Last-Event-ID` to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// JSON text of a LogEntry or ProcessInfo.
    pub data: String,
}
