//! The toolbox API (`/toolbox/{id}/…`): execute, bulk upload and download, files, home dir.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{docker, find, nest, not_found, Sb, Shared, S};

/// The container of a started sandbox, or the error the real toolbox proxy gives.
#[allow(clippy::result_large_err)] // the error is the response itself, returned as is
fn running(st: &Shared, id: &str) -> Result<Sb, Response> {
    match find(st, id) {
        None => Err(not_found(id)),
        Some(s) if s.state != "started" => Err(nest(
            400,
            &format!("failed to resolve container IP for sandbox {id}: Is the Sandbox started?"),
        )),
        Some(s) => Ok(s),
    }
}

#[derive(Deserialize)]
pub(super) struct ExecuteBody {
    command: String,
    cwd: Option<String>,
    envs: Option<BTreeMap<String, String>>,
    timeout: Option<u64>,
}

pub(super) async fn execute(State(st): S, Path(id): Path<String>, Json(body): Json<ExecuteBody>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut cmd = tokio::process::Command::new("docker");
    cmd.arg("exec");
    if let Some(cwd) = body.cwd.as_deref().filter(|c| !c.is_empty()) {
        cmd.args(["-w", cwd]);
    }
    for (k, v) in body.envs.iter().flatten() {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    if st.config.split_commands {
        let argv = split_command(&body.command);
        if argv.is_empty() {
            return nest(400, "empty command");
        }
        // No shell reads the command; `sh` only folds stderr into stdout (combined output) and then
        // execs the split arguments as they are.
        cmd.args([&s.container, "sh", "-c", "exec 2>&1; exec \"$@\"", "sh"]).args(argv);
    } else {
        // The daemon returns combined output: fold stderr into stdout inside the shell.
        cmd.args([&s.container, "sh", "-c", &format!("exec 2>&1\n{}", body.command)]);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let limit = Duration::from_secs(body.timeout.filter(|t| *t > 0).unwrap_or(10 * 60));
    match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => nest(408, "command execution timeout"),
        Ok(Err(e)) => nest(500, &format!("exec: {e}")),
        Ok(Ok(out)) => {
            let code = out.status.code().unwrap_or(-1);
            // `docker exec` itself failing (e.g. the cwd does not exist) exits 126/127 with its message on stderr.
            let mut result = String::from_utf8_lossy(&out.stdout).into_owned();
            result.push_str(&String::from_utf8_lossy(&out.stderr));
            Json(json!({"exitCode": code, "result": result})).into_response()
        }
    }
}

/// Splits `command` into arguments as Daytona's daemon does when it runs a command without a shell:
/// spaces separate, a `'` or `"` starts a group that the same quote ends (the other quote is kept
/// inside it), and there are no escapes.
fn split_command(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (' ', None) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits a `multipart/form-data` body into (headers, content) parts.
fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<(String, &'a [u8])> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut parts = Vec::new();
    let mut pos = match find_bytes(body, d, 0) {
        Some(p) => p + d.len(),
        None => return parts,
    };
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        let start = pos + 2; // CRLF after the delimiter
        let Some(next) = find_bytes(body, d, start) else { break };
        let part = &body[start.min(next)..next.saturating_sub(2).max(start)];
        if let Some(h) = find_bytes(part, b"\r\n\r\n", 0) {
            parts.push((String::from_utf8_lossy(&part[..h]).into_owned(), &part[h + 4..]));
        }
        pos = next + d.len();
    }
    parts
}

fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// `name="…"` (or `filename="…"`) from part headers.
fn disposition(headers: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=\"");
    let line = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
    let i = line.find(&pat)? + pat.len();
    let j = line[i..].find('"')? + i;
    Some(line[i..j].to_owned())
}

fn boundary_of(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let b = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?;
    Some(b.trim_matches('"').to_owned())
}

async fn write_file(container: &str, path: &str, data: &[u8]) -> Result<(), String> {
    let mut child = tokio::process::Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"", "sh", path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(data).await.map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

pub(super) async fn bulk_upload(State(st): S, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(boundary) = boundary_of(&headers) else { return nest(400, "expected multipart/form-data") };
    let parts = multipart_parts(&body, &boundary);
    let mut paths: HashMap<String, String> = HashMap::new();
    let mut files: Vec<(String, &[u8])> = Vec::new();
    for (h, content) in &parts {
        let Some(name) = disposition(h, "name") else { continue };
        if let Some(idx) = name.strip_suffix(".path") {
            paths.insert(idx.to_owned(), String::from_utf8_lossy(content).into_owned());
        } else if let Some(idx) = name.strip_suffix(".file") {
            files.push((idx.to_owned(), content));
        }
    }
    let mut errors = Vec::new();
    for (idx, content) in files {
        let Some(path) = paths.get(&idx) else {
            errors.push(json!({"path": idx, "error": "missing path field"}));
            continue;
        };
        if let Err(e) = write_file(&s.container, path, content).await {
            errors.push(json!({"path": path, "error": e}));
        }
    }
    if errors.is_empty() {
        Json(json!({})).into_response()
    } else {
        (StatusCode::BAD_REQUEST, Json(json!({"statusCode": 400, "message": "upload failed", "errors": errors}))).into_response()
    }
}

async fn read_file(container: &str, path: &str) -> Result<Vec<u8>, String> {
    let out = tokio::process::Command::new("docker")
        .args(["exec", container, "cat", "--", path])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[derive(Deserialize)]
pub(super) struct DownloadBody {
    paths: Vec<String>,
}

pub(super) async fn bulk_download(State(st): S, Path(id): Path<String>, Json(body): Json<DownloadBody>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let boundary = crate::random_token();
    let mut out: Vec<u8> = Vec::new();
    for path in &body.paths {
        let (name, ctype, bytes) = match read_file(&s.container, path).await {
            Ok(b) => ("file", "application/octet-stream", b),
            Err(e) => {
                let err = json!({"message": format!("file not found: {e}"), "statusCode": 404, "code": "FILE_NOT_FOUND"});
                ("error", "application/json", err.to_string().into_bytes())
            }
        };
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{path}\"\r\nContent-Type: {ctype}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(&bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Response::builder()
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(out))
        .expect("response")
}

pub(super) async fn download(State(st): S, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(path) = q.get("path") else { return nest(400, "path is required") };
    match read_file(&s.container, path).await {
        Ok(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        Err(e) => nest(404, &format!("file not found: {e}")),
    }
}

pub(super) async fn delete_file(State(st): S, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(path) = q.get("path") else { return nest(400, "path is required") };
    match docker(&["exec", &s.container, "rm", "-rf", "--", path]).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => nest(500, &e),
    }
}

pub(super) async fn home_dir(State(st): S, Path(id): Path<String>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dir = docker(&["exec", &s.container, "sh", "-c", "echo $HOME"]).await.unwrap_or_else(|_| "/root".into());
    Json(json!({"dir": dir})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_the_daemon() {
        assert_eq!(split_command("sh -c 'echo \"a b\"'  x"), ["sh", "-c", "echo \"a b\"", "x"]);
        // No escapes: the shell idiom for a quote inside quotes falls apart.
        assert_eq!(split_command(r"echo 'it'\''s'"), ["echo", r"it\s"]);
    }

    #[test]
    fn multipart_round_trip() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n/tmp/a\r\n--XX\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"/tmp/a\"\r\n\r\nhi\r\nthere\r\n--XX--\r\n";
        let parts = multipart_parts(body, "XX");
        assert_eq!(parts.len(), 2);
        assert_eq!(disposition(&parts[0].0, "name").as_deref(), Some("files[0].path"));
        assert_eq!(parts[0].1, b"/tmp/a");
        assert_eq!(parts[1].1, b"hi\r\nthere");
        assert_eq!(disposition(&parts[1].0, "filename").as_deref(), Some("/tmp/a"));
    }
}
