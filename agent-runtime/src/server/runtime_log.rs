//! `GET /v1/runtime/logs`: the runtime's own log file, whole, its last lines, or followed like
//! `tail -f`.
//!
//! The file is the one `sbx-agent server` logs to (`<log dir>/sbx-agent.log`, see [`super::cli`]).
//! Following polls the file for appended data and copes with it being truncated or replaced; the
//! response ends when the client goes away or the server shuts down.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiQuery, ApiResult, AppState};
use crate::api::runtime_log::RuntimeLogQuery;
use crate::api::Problem;

/// Read chunk size.
const CHUNK: usize = 64 * 1024;
/// How often a follow checks the file for new data.
const POLL: Duration = Duration::from_millis(200);

/// Set once the server is shutting down, so follows end and do not hold graceful shutdown open.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Ends every log follow in this process (called when the server is told to stop).
pub(crate) fn shutting_down() {
    SHUTTING_DOWN.store(true, Ordering::Relaxed);
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logs))
}

/// The runtime's own log (not a process's output: see `/v1/processes/{id}/logs` for that).
#[utoipa::path(get, path = "/v1/runtime/logs", tag = "runtime", params(RuntimeLogQuery),
    responses(
        (status = 200, description = "The log as text, streamed; with `follow=true` the response stays open and \
            carries lines as they are appended", body = String, content_type = "text/plain"),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This runtime logs to stdout, or its log file does not exist", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub(super) async fn logs(State(state): State<AppState>, ApiQuery(q): ApiQuery<RuntimeLogQuery>) -> ApiResult<Response> {
    let Some(path) = state.config().log_file.clone() else {
        return Err(ApiError::not_found(
            "this runtime logs to stdout, not to a file (SBX_AGENT_LOG_STDOUT is set, or it was started \
             in-process); read its log where its stdout goes",
        ));
    };
    let shown = path.display().to_string();
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || open_at_tail(&path, q.tail))
            .await
            .map_err(|e| ApiError::internal(format!("log task failed: {e}")))?
    };
    let (file, pos, ino) = match opened {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "no log file at {shown}: this runtime logs to stdout (or has not logged anything yet)"
            )))
        }
        Err(e) => return Err(ApiError::internal(format!("cannot read {shown}: {e}"))),
    };
    let tail = Tail { file: tokio::fs::File::from_std(file), path, pos, ino, follow: q.follow.unwrap_or(false), done: false };
    let body = Body::from_stream(futures::stream::unfold(tail, next_chunk));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Opens the log positioned at the start of its last `tail` lines (or at the start). Blocking.
fn open_at_tail(path: &Path, tail: Option<u64>) -> io::Result<(std::fs::File, u64, u64)> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let pos = match tail {
        Some(n) => tail_offset(&mut file, meta.len(), n)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(pos))?;
    Ok((file, pos, meta.ino()))
}

/// The offset where the last `n` lines of the first `len` bytes begin (a final newline does not start
/// an empty line). Reads backwards a chunk at a time. Blocking.
fn tail_offset(file: &mut std::fs::File, len: u64, n: u64) -> io::Result<u64> {
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; CHUNK];
    let mut end = len;
    let mut seen = 0u64;
    while end > 0 {
        let size = (end.min(CHUNK as u64)) as usize;
        let start = end - size as u64;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..size])?;
        for i in (0..size).rev() {
            let at = start + i as u64;
            if buf[i] == b'\n' && at + 1 != len {
                seen += 1;
                if seen == n {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// A log being streamed.
struct Tail {
    file: tokio::fs::File,
    path: PathBuf,
    pos: u64,
    ino: u64,
    follow: bool,
    done: bool,
}

async fn next_chunk(mut t: Tail) -> Option<(io::Result<Bytes>, Tail)> {
    if t.done {
        return None;
    }
    loop {
        let mut buf = vec![0u8; CHUNK];
        match t.file.read(&mut buf).await {
            Ok(0) if !t.follow || SHUTTING_DOWN.load(Ordering::Relaxed) => return None,
            Ok(0) => {
                tokio::time::sleep(POLL).await;
                if let Err(e) = reopen_if_replaced(&mut t).await {
                    t.done = true;
                    return Some((Err(e), t));
                }
            }
            Ok(n) => {
                buf.truncate(n);
                t.pos += n as u64;
                return Some((Ok(Bytes::from(buf)), t));
            }
            Err(e) => {
                t.done = true;
                return Some((Err(e), t));
            }
        }
    }
}

/// Starts over when the file was truncated (shorter than what we sent) or replaced (another inode at
/// the path); waits quietly while the path is missing (mid-rotation).
async fn reopen_if_replaced(t: &mut Tail) -> io::Result<()> {
    let meta = match tokio::fs::metadata(&t.path).await {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.ino() != t.ino {
        t.file = tokio::fs::File::open(&t.path).await?;
        t.ino = meta.ino();
        t.pos = 0;
    } else if meta.len() < t.pos {
        t.file.seek(SeekFrom::Start(0)).await?;
        t.pos = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::tail_offset;

    fn tail(text: &str, n: u64) -> String {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(text.as_bytes()).expect("write");
        let at = tail_offset(&mut f, text.len() as u64, n).expect("tail");
        text[at as usize..].to_owned()
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn tail_spans_chunks() {
        let line = "x".repeat(1000);
        let text: String = (0..200).map(|i| format!("{i} {line}\n")).collect();
        let got = tail(&text, 3);
        assert!(got.starts_with("197 "), "{}", &got[..10]);
        assert_eq!(got.lines().count(), 3);
    }
}
