//! The fake's files: write (a gzip tar unpacked under `x-cwd`), read (raw bytes), mkdir.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{docker, error, parse, running, DEFAULT_CWD, S};

/// `POST …/fs/write`: the body (streamed, chunked or not) is a gzip tar; `tar` in the container
/// unpacks it under `x-cwd` (default `/`), which must exist.
pub(crate) async fn write(State(st): S, Path(sid): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let (_, container) = match running(&st, &sid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let cwd = headers.get("x-cwd").and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).unwrap_or("/").to_owned();
    let cwd = if cwd.starts_with('/') { cwd } else { format!("{DEFAULT_CWD}/{cwd}") };
    let mut child = match tokio::process::Command::new("docker")
        .args(["exec", "-i", &container, "tar", "-xzf", "-", "-C", &cwd, "--no-same-owner"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return error(500, "internal_server_error", &format!("exec: {e}")),
    };
    let mut stdin = child.stdin.take().expect("piped");
    let mut stream = body.into_data_stream();
    let mut broken = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if let Err(e) = stdin.write_all(&c).await {
                    broken = Some(e.to_string());
                    break;
                }
            }
            Err(e) => {
                broken = Some(format!("reading the request body: {e}"));
                break;
            }
        }
    }
    drop(stdin);
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => return error(500, "internal_server_error", &e.to_string()),
    };
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let code = if msg.contains("Cannot") && msg.contains("No such file") { "path_not_found" } else { "bad_request" };
        return error(400, code, &format!("unpacking into {cwd} failed: {msg}"));
    }
    if let Some(e) = broken {
        return error(400, "bad_request", &e);
    }
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
pub(crate) struct PathBody {
    path: String,
    cwd: Option<String>,
    #[serde(default)]
    recursive: Option<bool>,
}

fn resolve(body: &PathBody) -> String {
    if body.path.starts_with('/') {
        body.path.clone()
    } else {
        format!("{}/{}", body.cwd.as_deref().unwrap_or(DEFAULT_CWD).trim_end_matches('/'), body.path)
    }
}

/// `POST …/fs/read` `{"path", "cwd"?}`: the file's bytes, or 404 `file_not_found`.
pub(crate) async fn read(State(st): S, Path(sid): Path<String>, body: Bytes) -> Response {
    let body: PathBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (_, container) = match running(&st, &sid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let path = resolve(&body);
    let out = tokio::process::Command::new("docker")
        .args(["exec", &container, "sh", "-c", "[ -f \"$1\" ] || exit 44; exec cat -- \"$1\"", "sh", &path])
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => ([(header::CONTENT_TYPE, "application/octet-stream")], o.stdout).into_response(),
        Ok(o) if o.status.code() == Some(44) => error(404, "file_not_found", &format!("File {path} not found")),
        Ok(o) => error(400, "bad_request", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => error(500, "internal_server_error", &e.to_string()),
    }
}

/// `POST …/fs/mkdir` `{"path", "cwd"?, "recursive"}`.
pub(crate) async fn mkdir(State(st): S, Path(sid): Path<String>, body: Bytes) -> Response {
    let body: PathBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (_, container) = match running(&st, &sid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let path = resolve(&body);
    let flag = if body.recursive.unwrap_or(true) { "-p" } else { "--" };
    match docker(&["exec", &container, "mkdir", flag, &path]).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) if e.contains("No such file") => error(404, "path_not_found", &e),
        Err(e) => error(400, "bad_request", &e),
    }
}
