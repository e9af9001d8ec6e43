//! Reading a file (streamed, with `Range`) and writing one (streamed to a temp file, then renamed).

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use super::confine::{self, Follow};
use super::{blocking, entry_at, io_error, FsRoot};
use crate::api::fs::{BinaryBody, parse_mode, ByteRange, Entry, PathQuery, RangeRequest, WriteQuery};
use crate::api::{Problem, ProblemKind};
use crate::server::{ApiError, ApiJson, ApiQuery, ApiResult, AppState};
use crate::stream_io::{self, CopyError};

/// Mode of a new file when the request gives none.
const DEFAULT_MODE: u32 = 0o644;

/// Read a file, or the byte range the `Range` header asks for.
#[utoipa::path(get, path = "/v1/fs/file", tag = "fs", params(PathQuery,
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`")),
    responses(
        (status = 200, description = "The whole file", body = inline(BinaryBody), content_type = "application/octet-stream",
            headers(("Accept-Ranges" = String, description = "`bytes`"), ("Content-Length" = u64, description = "Size in bytes"))),
        (status = 206, description = "The requested range", body = inline(BinaryBody), content_type = "application/octet-stream",
            headers(("Content-Range" = String, description = "`bytes a-b/size`"), ("Content-Length" = u64, description = "Length of the range"))),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a regular file", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is malformed or outside the file", body = Problem, content_type = "application/problem+json",
            headers(("Content-Range" = String, description = "`bytes */size`"))),
    ))]
pub(super) async fn read(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PathQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let fs = state.fs().clone();
    let shown = q.path.clone();
    let (file, size) = blocking(move || open_regular(&fs, &q.path)).await?;
    let range = headers.get(header::RANGE).map(|v| v.to_str().map_or(RangeRequest::Invalid, ByteRange::parse));
    let (first, last) = match range {
        None | Some(RangeRequest::Ignore) => return stream_response(file, StatusCode::OK, 0, size, size).await,
        Some(RangeRequest::Invalid) => return Ok(unsatisfiable(size, &format!("the Range header of `{shown}` is malformed"))),
        Some(RangeRequest::One(r)) => match r.clamp(size) {
            Some(span) => span,
            None => {
                return Ok(unsatisfiable(size, &format!("`{shown}` has {size} bytes; `{}` is outside it", r.header_value())))
            }
        },
    };
    stream_response(file, StatusCode::PARTIAL_CONTENT, first, last - first + 1, size).await
}

/// Opens `path` for reading if it is a regular file (a FIFO would block the open forever). Blocking.
fn open_regular(fs: &FsRoot, shown: &str) -> ApiResult<(std::fs::File, u64)> {
    let path = fs.resolve(shown)?;
    let meta = std::fs::metadata(&path).map_err(|e| io_error(shown, e))?;
    if meta.is_dir() {
        return Err(ApiError::conflict(format!("`{shown}` is a directory; list it with GET /v1/fs/entries")));
    }
    if !meta.is_file() {
        return Err(ApiError::conflict(format!("`{shown}` is not a regular file")));
    }
    let file = std::fs::File::open(&path).map_err(|e| io_error(shown, e))?;
    Ok((file, meta.len()))
}

/// Streams `len` bytes of `file` from `first`, read on the blocking pool a chunk at a time, never
/// holding more than a few chunks in memory.
async fn stream_response(file: std::fs::File, status: StatusCode, first: u64, len: u64, size: u64) -> ApiResult<Response> {
    // Exactly `len` bytes, so the body matches Content-Length even if the file grows meanwhile (and
    // fails rather than ends short if it shrinks).
    let body = Body::from_stream(stream_io::file_stream(file, first, len));
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {}-{}/{size}", first, first + len - 1);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// A 416 problem with the `Content-Range: bytes */size` header RFC 9110 asks for.
fn unsatisfiable(size: u64, detail: &str) -> Response {
    let mut resp = ApiError::new(ProblemKind::RangeNotSatisfiable, detail).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp
}

/// Write a file atomically: the body streams to a temp file beside it, which is renamed over the
/// target once complete, so readers see the old content or the new, never a mix. Like `cp` and
/// `docker cp`, the write is not forced to disk (no fsync): that would cost the time of writing the
/// whole file back, per file.
#[utoipa::path(put, path = "/v1/fs/file", tag = "fs", params(WriteQuery),
    request_body(content = inline(BinaryBody), content_type = "application/octet-stream", description = "The new content (streamed)"),
    responses(
        (status = 200, description = "The written file", body = Entry),
        (status = 400, description = "Bad query or mode, or the body broke off", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path (or where its symlink points) is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The directory does not exist (pass parents=true)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The path is a directory, or a parent is a file", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn write(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<WriteQuery>,
    body: Body,
) -> ApiResult<ApiJson<Entry>> {
    let mode = match q.mode.as_deref() {
        Some(m) => Some(parse_mode(m).ok_or_else(|| {
            ApiError::bad_request(format!("mode `{m}` is not octal permission bits like 644 or 0755"))
        })?),
        None => None,
    };
    let fs = state.fs().clone();
    let prep_q = q.clone();
    let prepared = blocking(move || prepare_write(&fs, &prep_q, mode)).await?;
    let mut temp = TempFile { path: Some(prepared.temp.clone()) };
    copy_body(body, prepared.file, prepared.mode).await?;
    let (from, target) = (prepared.temp, prepared.target);
    let done = blocking(move || {
        std::fs::rename(&from, &target).map_err(|e| io_error(&q.path, e))?;
        entry_at(&target).map(ApiJson).map_err(|e| io_error(&q.path, e))
    })
    .await;
    // After a failed rename the guard removes the temp file; after a successful one there is none.
    if done.is_ok() {
        temp.path = None;
    }
    done
}

/// Where a write goes, and the open temp file it streams into first.
struct PreparedWrite {
    target: PathBuf,
    temp: PathBuf,
    file: std::fs::File,
    mode: u32,
}

/// Resolves the target (through a final symlink, which must stay inside the root), makes the
/// directory if asked, and creates the temp file beside the target. Blocking.
fn prepare_write(fs: &FsRoot, q: &WriteQuery, mode: Option<u32>) -> ApiResult<PreparedWrite> {
    let resolved = fs.resolve(&q.path)?;
    // Renaming over a symlink would replace the link; writing "to" a link means writing its target.
    // resolve() has already checked where the link chain ends; re-check the end point on its own.
    let target = follow_links(&resolved, &q.path)?;
    fs.confine(&target, Follow::Final, &q.path)?;
    let existing = std::fs::metadata(&target).ok();
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(ApiError::conflict(format!("`{}` is a directory", q.path)));
    }
    let dir = target.parent().ok_or_else(|| ApiError::conflict(format!("`{}` is the root", q.path)))?;
    ensure_dir(dir, q.parents.unwrap_or(false), &q.path)?;
    let mode = mode.or(existing.map(|m| m.permissions().mode() & 0o7777)).unwrap_or(DEFAULT_MODE);
    let (temp, file) = create_temp(dir).map_err(|e| io_error(&q.path, e))?;
    Ok(PreparedWrite { target, temp, file, mode })
}

/// Follows symlinks at the end of `path` to the path a write would actually land on. Blocking.
fn follow_links(path: &Path, shown: &str) -> ApiResult<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&cur).map_err(|e| io_error(shown, e))?;
                cur = confine::normalize(cur.parent().unwrap_or(Path::new("/")), &link);
            }
            _ => return Ok(cur),
        }
    }
    Err(ApiError::bad_request(format!("`{shown}`: too many levels of symbolic links")))
}

/// Makes sure `dir` is a directory, creating it (and parents) when `parents` is set. Blocking.
fn ensure_dir(dir: &Path, parents: bool, shown: &str) -> ApiResult<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ApiError::conflict(format!("the parent of `{shown}` is not a directory"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && parents => {
            std::fs::create_dir_all(dir).map_err(|e| io_error(shown, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ApiError::not_found(format!(
            "the directory of `{shown}` does not exist; pass parents=true to create it"
        ))),
        Err(e) => Err(io_error(shown, e)),
    }
}

/// Creates a fresh, private temp file in `dir` (same file system as the target, so rename is atomic).
fn create_temp(dir: &Path) -> io::Result<(PathBuf, std::fs::File)> {
    loop {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        let path = dir.join(format!(".sbx-write-{}.tmp", hex::encode(rnd)));
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Streams the request body into `file` (on the blocking pool, in large writes), then sets its mode.
async fn copy_body(body: Body, file: std::fs::File, mode: u32) -> ApiResult<()> {
    let disk = |e: io::Error| ApiError::internal(format!("writing the temp file failed: {e}"));
    let stream = body.into_data_stream().map_err(io::Error::other);
    let (file, _) = stream_io::stream_to_writer(stream, file).await.map_err(|e| match e {
        CopyError::Read(e) => ApiError::bad_request(format!("the request body broke off: {e}")),
        CopyError::Write(e) => disk(e),
    })?;
    blocking(move || file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(disk)).await
}

/// Removes the temp file unless the write completed, including when the client disconnects and the
/// handler future is dropped mid-body.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            // A single unlink; not worth a trip to the blocking pool.
            let _ = std::fs::remove_file(p);
        }
    }
}
