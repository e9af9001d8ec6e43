//! Batch transfer: upload a tar (or tar.gz) stream into a directory, download a directory as tar.
//!
//! Both directions stream: the request body is bridged into a blocking reader that the tar code pulls
//! from, and the tar writer pushes chunks into a bounded channel that becomes the response body. Memory
//! stays flat however large the archive is.

use std::io;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{blocking, io_error, unpack};
use crate::api::fs::{BinaryBody, PathQuery, UploadBatchResult};
use crate::api::Problem;
use crate::server::{ApiJson, ApiQuery, ApiResult, AppState};

/// Chunks of tar output in flight between the packing thread and the socket.
const DOWNLOAD_CHANNEL_DEPTH: usize = 8;

/// Unpack a tar or tar.gz stream into a directory (created if missing).
#[utoipa::path(post, path = "/v1/fs/upload-batch", tag = "fs", params(PathQuery),
    request_body(content((inline(BinaryBody) = "application/x-tar"), (inline(BinaryBody) = "application/gzip"), (inline(BinaryBody) = "application/octet-stream")),
        description = "A tar archive, optionally gzipped (detected by its magic bytes or the content type). \
            Files, directories and symlinks are unpacked; hard links, devices and FIFOs are refused."),
    responses(
        (status = 200, description = "What was unpacked", body = UploadBatchResult),
        (status = 400, description = "Bad query, not a tar archive, or an unsupported entry type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The directory, an entry, or a symlink's target is outside the root (or an entry leaves the directory)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An entry would replace a directory with a file, or a parent is a file", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn upload(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PathQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<ApiJson<UploadBatchResult>> {
    let gzip_hint = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("gzip"));
    let fs = state.fs().clone();
    let stream = body.into_data_stream().map_err(io::Error::other);
    // The bridge must be made on the async side (it captures the runtime) and read on the blocking side.
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    blocking(move || unpack::unpack_into(&fs, &q.path, reader, gzip_hint).map(ApiJson)).await
}

/// Download a directory (or one file) as an uncompressed tar stream. Symlinks are stored as links,
/// never followed; sockets, FIFOs and devices are left out.
#[utoipa::path(get, path = "/v1/fs/download-batch", tag = "fs", params(PathQuery),
    responses(
        (status = 200, description = "The tar stream; entry names are relative to the directory", body = inline(BinaryBody), content_type = "application/x-tar"),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file or directory", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A parent is not a directory", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn download(State(state): State<AppState>, ApiQuery(q): ApiQuery<PathQuery>) -> ApiResult<Response> {
    let fs = state.fs().clone();
    let src = blocking(move || {
        let path = fs.resolve(&q.path)?;
        std::fs::metadata(&path).map_err(|e| io_error(&q.path, e))?;
        Ok(path)
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(DOWNLOAD_CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::tar_pack::pack_to_channel(&src, tx) {
            // A closed channel means the client went away; nothing to report to anyone.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(path = %src.display(), error = %e, "tar download failed");
            }
        }
    });
    let mut resp = Body::from_stream(ReceiverStream::new(rx)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(resp)
}
