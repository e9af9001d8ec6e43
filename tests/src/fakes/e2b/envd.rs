//! envd, the in-sandbox daemon: Connect-RPC process start and filesystem calls, `/files` upload
//! and download, `/health`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::edge::edge_error;
use super::{docker, error, header, query_params, rfc3339, str_map, Inner, Sbx};

fn connect_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"code": code, "message": message.into()}))).into_response()
}

/// One Connect envelope: flags, big-endian length, JSON payload.
fn envelope(flags: u8, payload: &Value) -> Bytes {
    let data = serde_json::to_vec(payload).expect("json");
    let mut out = Vec::with_capacity(5 + data.len());
    out.push(flags);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&data);
    Bytes::from(out)
}

/// Relative envd paths are relative to the user's home.
fn abs_path(p: &str) -> String {
    if p.starts_with('/') { p.to_owned() } else { format!("/home/user/{p}") }
}

pub(super) async fn envd(st: &Inner, id: &str, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(s) = st.sandboxes.lock().unwrap().get(id).cloned() else {
        return edge_error(id, "The sandbox was not found");
    };
    if s.paused {
        return edge_error(id, "The sandbox was not found");
    }
    if path == "/health" {
        return StatusCode::NO_CONTENT.into_response();
    }
    if header(req.headers(), "x-access-token").as_deref() != Some(s.envd_token.as_str()) {
        return if path.starts_with("/files") {
            error(401, "invalid access token")
        } else {
            connect_error(401, "unauthenticated", "invalid access token")
        };
    }
    let query = query_params(req.uri().query().unwrap_or(""));
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/process.Process/Start") => process_start(st, &s, req).await,
        (Method::GET, "/files") => {
            let Some(p) = query.iter().find(|(k, _)| k == "path").map(|(_, v)| abs_path(v)) else {
                return error(400, "path is required");
            };
            let (ok, out, err) = docker(&["exec", &s.container, "cat", "--", &p]).await;
            if ok {
                ([("content-type", "application/octet-stream")], out).into_response()
            } else if err.contains("Is a directory") {
                error(400, format!("path '{p}' is a directory"))
            } else {
                error(404, format!("path '{p}' does not exist"))
            }
        }
        (Method::POST, "/files") => {
            st.uploads.fetch_add(1, Ordering::SeqCst);
            files_upload(&s, query, req).await
        }
        (Method::POST, rpc) if rpc.starts_with("/filesystem.Filesystem/") => {
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            filesystem(&s, rpc.trim_start_matches("/filesystem.Filesystem/"), &body).await
        }
        (_, other) => connect_error(404, "unimplemented", format!("{other} is not implemented by the fake envd")),
    }
}

async fn process_start(st: &Inner, s: &Sbx, req: Request) -> Response {
    let timeout_ms: Option<u64> = header(req.headers(), "connect-timeout-ms").and_then(|t| t.parse().ok()).filter(|t| *t > 0);
    let body = axum::body::to_bytes(req.into_body(), 16 << 20).await.unwrap_or_default();
    if body.len() < 5 {
        return connect_error(400, "invalid_argument", "expected one envelope");
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let Ok(msg) = serde_json::from_slice::<Value>(&body[5..(5 + len).min(body.len())]) else {
        return connect_error(400, "invalid_argument", "bad JSON in the envelope");
    };
    let process = &msg["process"];
    let Some(cmd) = process["cmd"].as_str() else {
        return connect_error(400, "invalid_argument", "process.cmd is required");
    };
    let mut args: Vec<String> = vec!["exec".into()];
    for (k, v) in str_map(&process["envs"]) {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    let cwd = process["cwd"].as_str().map(abs_path).unwrap_or_else(|| "/home/user".into());
    args.extend(["-w".into(), cwd, s.container.clone(), cmd.to_owned()]);
    args.extend(process["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)));
    let mut child = match tokio::process::Command::new("docker")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return connect_error(500, "internal", format!("docker: {e}")),
    };
    let pid = st.pids.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    tokio::spawn(async move {
        let _ = tx.send(envelope(0, &json!({"event": {"start": {"pid": pid}}}))).await;
        let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>, which: &'static str, tx: tokio::sync::mpsc::Sender<Bytes>| async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
                        if tx.send(envelope(0, &json!({"event": {"data": {which: b64}}}))).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        let work = async {
            tokio::join!(pump(Box::new(&mut stdout), "stdout", tx.clone()), pump(Box::new(&mut stderr), "stderr", tx.clone()));
            child.wait().await
        };
        let waited = match timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), work).await.ok(),
            None => Some(work.await),
        };
        match waited {
            Some(Ok(status)) => {
                let code = status.code().unwrap_or(-1);
                let mut end = json!({"exited": true, "status": format!("exit status {code}")});
                if code != 0 {
                    end["exitCode"] = json!(code);
                }
                let _ = tx.send(envelope(0, &json!({"event": {"end": end}}))).await;
                let _ = tx.send(envelope(2, &json!({}))).await;
            }
            Some(Err(e)) => {
                let _ = tx.send(envelope(2, &json!({"error": {"code": "internal", "message": e.to_string()}}))).await;
            }
            None => {
                let _ = child.kill().await;
                let err = json!({"error": {"code": "deadline_exceeded", "message": "context deadline exceeded"}});
                let _ = tx.send(envelope(2, &err)).await;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    Response::builder()
        .status(200)
        .header("content-type", "application/connect+json")
        .body(Body::from_stream(stream))
        .expect("response")
}

/// Writes `data` (a stream) to `path` in the container, making parent directories.
async fn write_file<S>(container: &str, path: &str, mut data: S) -> Result<(), String>
where
    S: futures::Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut child = tokio::process::Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"", "sh", path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("docker: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin");
    while let Some(chunk) = data.next().await {
        let chunk = chunk?;
        stdin.write_all(&chunk).await.map_err(|e| format!("writing {path}: {e}"))?;
    }
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

fn file_entry(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({"name": name, "type": "file", "path": path})
}

async fn files_upload(s: &Sbx, query: Vec<(String, String)>, req: Request) -> Response {
    let qpath = query.iter().find(|(k, _)| k == "path").map(|(_, v)| abs_path(v));
    let ctype = header(req.headers(), "content-type").unwrap_or_default();
    if let Some(boundary) = ctype.strip_prefix("multipart/form-data").and_then(|r| r.split("boundary=").nth(1)) {
        let boundary = boundary.trim_matches('"').to_owned();
        let body = axum::body::to_bytes(req.into_body(), 1 << 30).await.unwrap_or_default();
        let mut written = Vec::new();
        for (filename, data) in multipart_parts(&body, &boundary) {
            let path = filename.map(|f| abs_path(&f)).or_else(|| qpath.clone());
            let Some(path) = path else { return error(400, "no path for a part") };
            let stream = futures::stream::iter([Ok::<_, String>(data)]);
            if let Err(e) = write_file(&s.container, &path, stream).await {
                return error(500, e);
            }
            written.push(file_entry(&path));
        }
        return axum::Json(written).into_response();
    }
    let Some(path) = qpath else { return error(400, "path is required for octet-stream uploads") };
    let stream = req.into_body().into_data_stream().map(|r| r.map_err(|e| e.to_string()));
    match write_file(&s.container, &path, stream).await {
        Ok(()) => axum::Json(vec![file_entry(&path)]).into_response(),
        Err(e) => error(500, e),
    }
}

/// (filename, data) of each part of a multipart body.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(Option<String>, Bytes)> {
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let Some(start) = find(rest, &delim) else { return out };
    rest = &rest[start + delim.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let rest2 = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let Some(head_end) = find(rest2, b"\r\n\r\n") else { break };
        let head = String::from_utf8_lossy(&rest2[..head_end]).into_owned();
        let data_start = &rest2[head_end + 4..];
        let mut end_delim = b"\r\n".to_vec();
        end_delim.extend_from_slice(&delim);
        let Some(data_end) = find(data_start, &end_delim) else { break };
        let filename = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|l| l.split(';'))
            .find_map(|p| p.trim().strip_prefix("filename=").map(|f| f.trim().trim_matches('"').to_owned()));
        out.push((filename, Bytes::copy_from_slice(&data_start[..data_end])));
        rest = &data_start[data_end + end_delim.len()..];
    }
    out
}

/// `stat`-style lines (`%F|%s|%a|%U|%G|%Y|%N`-like from find's `%y|%s|%m|%u|%g|%T@|%p`) → EntryInfo.
fn entry_info(line: &str) -> Option<Value> {
    let mut f = line.splitn(7, '|');
    let (kind, size, mode, owner, group, mtime, path) =
        (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let kind = match kind {
        "d" => "FILE_TYPE_DIRECTORY",
        "l" => "FILE_TYPE_SYMLINK",
        _ => "FILE_TYPE_FILE",
    };
    let mode = u32::from_str_radix(mode, 8).unwrap_or(0);
    let secs = mtime.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some(json!({
        "name": path.rsplit('/').next().unwrap_or(path),
        "type": kind,
        "path": path,
        "size": size,
        "mode": mode,
        "permissions": format!("{mode:o}"),
        "owner": owner,
        "group": group,
        "modifiedTime": rfc3339(secs),
    }))
}

const FIND_FMT: &str = "%y|%s|%m|%u|%g|%T@|%p\\n";

async fn filesystem(s: &Sbx, method: &str, body: &Value) -> Response {
    let path = body["path"].as_str().map(abs_path).unwrap_or_default();
    let stat = |p: String| {
        let c = s.container.clone();
        async move {
            let (ok, out, _) = docker(&["exec", &c, "find", &p, "-maxdepth", "0", "-printf", FIND_FMT]).await;
            if ok { entry_info(String::from_utf8_lossy(&out).lines().next().unwrap_or("")) } else { None }
        }
    };
    match method {
        "Stat" => match stat(path.clone()).await {
            Some(e) => axum::Json(json!({"entry": e})).into_response(),
            None => connect_error(404, "not_found", format!("path '{path}' does not exist")),
        },
        "MakeDir" => {
            if stat(path.clone()).await.is_some() {
                return connect_error(409, "already_exists", format!("path '{path}' already exists"));
            }
            docker(&["exec", &s.container, "mkdir", "-p", &path]).await;
            match stat(path.clone()).await {
                Some(e) => axum::Json(json!({"entry": e})).into_response(),
                None => connect_error(500, "internal", format!("could not create '{path}'")),
            }
        }
        "Remove" => {
            docker(&["exec", &s.container, "rm", "-rf", "--", &path]).await;
            axum::Json(json!({})).into_response()
        }
        "Move" => {
            let (src, dst) = (body["source"].as_str().map(abs_path).unwrap_or_default(), body["destination"].as_str().map(abs_path).unwrap_or_default());
            let (ok, _, err) = docker(&["exec", &s.container, "mv", "--", &src, &dst]).await;
            if !ok {
                return connect_error(404, "not_found", err.trim().to_owned());
            }
            axum::Json(json!({"entry": stat(dst).await})).into_response()
        }
        "ListDir" => {
            let depth = body["depth"].as_u64().unwrap_or(1).max(1).to_string();
            let (ok, out, err) =
                docker(&["exec", &s.container, "find", &path, "-mindepth", "1", "-maxdepth", &depth, "-printf", FIND_FMT]).await;
            if !ok {
                return connect_error(404, "not_found", err.trim().to_owned());
            }
            let entries: Vec<Value> = String::from_utf8_lossy(&out).lines().filter_map(entry_info).collect();
            axum::Json(json!({"entries": entries})).into_response()
        }
        other => connect_error(404, "unimplemented", format!("filesystem.Filesystem/{other} is not implemented by the fake")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_carry_their_filenames() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/home/user/a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX--\r\n";
        let parts = multipart_parts(body, "XX");
        assert_eq!(parts, vec![(Some("/home/user/a.txt".to_owned()), Bytes::from_static(b"hello"))]);
    }
}
