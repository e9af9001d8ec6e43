//! `/v1/processes/*`: run-to-completion and managed processes.
//!
//! - `run.rs`: `POST /v1/processes/run`.
//! - `manager.rs`: the table of managed processes (and the terminals' slots), limits, stdin, kill.
//! - `logs.rs`: each managed process's bounded log and the SSE stream that follows it.
//! - `os.rs`: request validation into a command, signals, exit statuses.
//!
//! Every child leads its own process group, and signals go to the whole group, so what a command
//! starts is stopped with it.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nix::sys::signal::Signal;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, ApiQuery, ApiResult, AppState};
use crate::api::process::{
    frame, CreateProcessRequest, DeleteQuery, LogStreamFilter, LogsQuery, LogsResponse, ProcessInfo, ProcessInputRequest,
    ProcessInputResponse, ProcessLimits, ProcessLimitsUpdate, ProcessList, RunRequest, RunResponse, SignalRequest,
    WaitQuery,
};
use crate::api::Problem;

mod logs;
mod manager;
pub(crate) mod os;
mod ring;
mod run;

pub use manager::ProcessManager;

/// How long `kill` waits for the exit by default.
const DEFAULT_KILL_WAIT_MS: u64 = 5_000;
/// The longest any `waitMs` may be.
const MAX_WAIT_MS: u64 = 60_000;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_process))
        .routes(routes!(list_processes, create_process))
        .routes(routes!(get_config, set_config))
        .routes(routes!(get_process, delete_process))
        .routes(routes!(process_logs))
        .routes(routes!(process_input))
        .routes(routes!(signal_process))
        .routes(routes!(stop_process))
        .routes(routes!(kill_process))
}

/// Run a command to completion and return its output, exit code and duration.
///
/// The command runs in its own process group; when `timeoutMs` expires the whole group is killed
/// (SIGKILL) and `timedOut` is true. Output is returned byte for byte, base64 in `stdoutBase64` and
/// `stderrBase64`; output beyond `maxOutputBytes` is drained and dropped, and flagged with
/// `stdoutTruncated`/`stderrTruncated`. For more output than that, start a managed process and follow it.
#[utoipa::path(post, path = "/v1/processes/run", tag = "processes", request_body = RunRequest,
    responses(
        (status = 200, description = "The command ran (whatever its exit code)", body = RunResponse),
        (status = 400, description = "Bad request: both or neither of command/shell, timeout over the limit, bad cwd, or the program cannot be started", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "cwd is outside the runtime's root", body = Problem, content_type = "application/problem+json"),
    ))]
async fn run_process(State(state): State<AppState>, ApiJson(req): ApiJson<RunRequest>) -> ApiResult<ApiJson<RunResponse>> {
    Ok(ApiJson(run::run(state.processes(), req).await?))
}

/// List managed processes (running and exited, until deleted), oldest first.
#[utoipa::path(get, path = "/v1/processes", tag = "processes",
    responses(
        (status = 200, description = "Every managed process", body = ProcessList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_processes(State(state): State<AppState>) -> ApiJson<ProcessList> {
    ApiJson(ProcessList { processes: state.processes().list() })
}

/// Start a managed background process; its output is kept as a log (see `/logs`).
#[utoipa::path(post, path = "/v1/processes", tag = "processes", request_body = CreateProcessRequest,
    responses(
        (status = 201, description = "Started", body = ProcessInfo),
        (status = 400, description = "Bad request, or the program cannot be started", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "cwd is outside the runtime's root", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "maxConcurrentProcesses are already running", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_process(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateProcessRequest>,
) -> ApiResult<(StatusCode, ApiJson<ProcessInfo>)> {
    let info = state.processes().start(req).await?;
    Ok((StatusCode::CREATED, ApiJson(info)))
}

/// The process limits.
#[utoipa::path(get, path = "/v1/processes/config", tag = "processes",
    responses(
        (status = 200, description = "The current limits", body = ProcessLimits),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_config(State(state): State<AppState>) -> ApiJson<ProcessLimits> {
    ApiJson(state.processes().limits())
}

/// Change the process limits; fields left out keep their value. `PUT` and `POST` do the same.
#[utoipa::path(method(put, post), path = "/v1/processes/config", tag = "processes", request_body = ProcessLimitsUpdate,
    responses(
        (status = 200, description = "The new limits", body = ProcessLimits),
        (status = 400, description = "A zero or inconsistent value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_config(
    State(state): State<AppState>,
    ApiJson(update): ApiJson<ProcessLimitsUpdate>,
) -> ApiResult<ApiJson<ProcessLimits>> {
    let mgr = state.processes();
    let merged = mgr.limits().merged(&update);
    Ok(ApiJson(mgr.set_limits(merged)?))
}

/// One managed process.
#[utoipa::path(get, path = "/v1/processes/{id}", tag = "processes",
    params(("id" = String, Path, description = "Process id (`proc_1`, …)")),
    responses(
        (status = 200, description = "The process", body = ProcessInfo),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_process(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<ApiJson<ProcessInfo>> {
    Ok(ApiJson(state.processes().get(&id)?.info()))
}

/// Forget an exited process and its log. A running one is refused (409) unless `force=true`, which
/// kills its process group first.
#[utoipa::path(delete, path = "/v1/processes/{id}", tag = "processes",
    params(("id" = String, Path, description = "Process id"), DeleteQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still running (pass force=true)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_process(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    state.processes().remove(&id, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A managed process's output, byte for byte.
///
/// Without `follow`, the kept entries as JSON (data base64). With `follow=true`, `Accept:
/// text/event-stream` or `Accept: application/vnd.sbx.log-frames`, a stream: every kept entry, then
/// live ones as they are written, and when the process has exited and its output is complete, the
/// exit (its ProcessInfo); then the stream ends. As binary frames when `Accept` names
/// `application/vnd.sbx.log-frames` (raw bytes, for bulk output: 1-byte kind, 4-byte big-endian
/// length, payload; see LogFrames), else as server-sent events (`event: log`, `id:` = the entry's seq,
/// data = a LogEntry; `event: exit`). Reconnect with `Last-Event-ID` (or `after`) to resume without
/// losing or repeating entries.
///
/// A follower is never skipped over: while it has not read the log, a process that outruns it waits
/// (its pipe is not read), and a follower that disconnects keeps its place for 30 s. Output that
/// nobody followed and that outgrew `maxLogBytesPerProcess` is dropped, and a reader that reaches
/// the gap gets an explicit marker first (`event: dropped` / a DROPPED frame: a LogDropped with the
/// byte counts).
#[utoipa::path(get, path = "/v1/processes/{id}/logs", tag = "processes",
    params(("id" = String, Path, description = "Process id"), LogsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq (SSE reconnects)")),
    responses(
        (status = 200, description = "Entries as JSON, or a server-sent event stream when following",
            content((LogsResponse = "application/json"), (crate::api::process::LogSseEvent = "text/event-stream"),
                (crate::api::process::LogFrames = "application/vnd.sbx.log-frames"))),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
    ))]
async fn process_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let proc = state.processes().get(&id)?;
    let filter = q.stream.unwrap_or(LogStreamFilter::Combined);
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a log seq number"))?,
        ),
        None => None,
    };
    let after = last_event_id.or(q.after).unwrap_or(0);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let wants_frames = accept.contains(frame::MEDIA_TYPE);
    let wants_sse = accept.contains("text/event-stream");
    if q.follow.unwrap_or(false) || wants_sse || wants_frames {
        return Ok(logs::follow(proc, filter, after, q.tail, wants_frames));
    }
    let status = proc.info().status;
    let entries = proc.log_query(filter, after, q.tail);
    let gap = proc.log_dropped_after(after).unwrap_or_default();
    Ok(ApiJson(LogsResponse {
        entries,
        status,
        dropped: gap.through_seq > 0,
        dropped_stdout_bytes: gap.stdout_bytes,
        dropped_stderr_bytes: gap.stderr_bytes,
    })
    .into_response())
}

/// Write to a managed process's stdin, and optionally close it (`eof`).
#[utoipa::path(post, path = "/v1/processes/{id}/input", tag = "processes",
    params(("id" = String, Path, description = "Process id")), request_body = ProcessInputRequest,
    responses(
        (status = 200, description = "Written", body = ProcessInputResponse),
        (status = 400, description = "Bad base64 or encoding", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stdin is closed, or the process is not reading it", body = Problem, content_type = "application/problem+json"),
    ))]
async fn process_input(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ProcessInputRequest>,
) -> ApiResult<ApiJson<ProcessInputResponse>> {
    let proc = state.processes().get(&id)?;
    let base64 = match req.encoding.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("utf8") | Some("utf-8") => req.base64,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("unknown encoding `{other}`; use `utf8` or `base64`")))
        }
    };
    let data = if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(req.data.trim())
            .map_err(|e| ApiError::bad_request(format!("`data` is not valid base64: {e}")))?
    } else {
        req.data.into_bytes()
    };
    let closed = proc.write_stdin(&data, req.eof).await?;
    Ok(ApiJson(ProcessInputResponse { bytes_written: data.len() as u64, closed }))
}

/// Send a signal to a managed process's whole process group.
#[utoipa::path(post, path = "/v1/processes/{id}/signal", tag = "processes",
    params(("id" = String, Path, description = "Process id")), request_body = SignalRequest,
    responses(
        (status = 200, description = "Sent; the process as it is now (it may not have exited yet)", body = ProcessInfo),
        (status = 400, description = "Unknown signal", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The process has already exited", body = Problem, content_type = "application/problem+json"),
    ))]
async fn signal_process(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SignalRequest>,
) -> ApiResult<ApiJson<ProcessInfo>> {
    let proc = state.processes().get(&id)?;
    let sig = os::parse_signal(&req.signal)?;
    proc.signal(sig)?;
    Ok(ApiJson(proc.info()))
}

/// Ask a managed process to stop: SIGTERM to its process group, then wait up to `waitMs` (default 0).
#[utoipa::path(post, path = "/v1/processes/{id}/stop", tag = "processes",
    params(("id" = String, Path, description = "Process id"), WaitQuery),
    responses(
        (status = 200, description = "Signalled; the process as it is after the wait", body = ProcessInfo),
        (status = 400, description = "waitMs over 60000", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stop_process(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<ApiJson<ProcessInfo>> {
    end_process(&state, &id, Signal::SIGTERM, q.wait_ms.unwrap_or(0)).await
}

/// Kill a managed process: SIGKILL to its process group, then wait up to `waitMs` (default 5000) for it
/// to be gone. Killing an exited process is not an error.
#[utoipa::path(post, path = "/v1/processes/{id}/kill", tag = "processes",
    params(("id" = String, Path, description = "Process id"), WaitQuery),
    responses(
        (status = 200, description = "Killed; the process as it is after the wait", body = ProcessInfo),
        (status = 400, description = "waitMs over 60000", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
    ))]
async fn kill_process(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<ApiJson<ProcessInfo>> {
    end_process(&state, &id, Signal::SIGKILL, q.wait_ms.unwrap_or(DEFAULT_KILL_WAIT_MS)).await
}

async fn end_process(state: &AppState, id: &str, sig: Signal, wait_ms: u64) -> ApiResult<ApiJson<ProcessInfo>> {
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request(format!("waitMs is at most {MAX_WAIT_MS}")));
    }
    let proc = state.processes().get(id)?;
    if proc.is_running() {
        os::signal_group(proc.pgid(), sig)?;
        if wait_ms > 0 {
            proc.wait_exit(Duration::from_millis(wait_ms)).await;
        }
    }
    Ok(ApiJson(proc.info()))
}
