//! The fake's commands: `docker exec` in the sandbox's container, output kept as text records (what
//! Vercel's NDJSON carries), followed live by the attached run and the logs endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::{docker, error, now_ms, parse, running, Shared, DEFAULT_CWD, S};

/// Where the fake keeps each command's pid inside the container (to kill it on timeout or `kill`).
const PID_DIR: &str = "/tmp/.fake-vercel";

pub(crate) struct Cmd {
    id: String,
    name: String,
    args: Vec<String>,
    cwd: String,
    session_id: String,
    container: String,
    started_at: u64,
    out: Mutex<Out>,
    /// Bumped on every new record and at the end.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Out {
    /// (`stdout` | `stderr`, text)
    records: Vec<(&'static str, String)>,
    exit_code: Option<i32>,
}

impl Cmd {
    fn json(&self) -> Value {
        let exit = self.out.lock().unwrap().exit_code;
        json!({
            "id": self.id, "name": self.name, "args": self.args, "cwd": self.cwd,
            "sessionId": self.session_id, "exitCode": exit, "startedAt": self.started_at,
        })
    }

    fn push(&self, stream: &'static str, text: String) {
        self.out.lock().unwrap().records.push((stream, text));
        self.changed.send_modify(|v| *v += 1);
    }

    fn finish(&self, code: i32) {
        self.out.lock().unwrap().exit_code = Some(code);
        self.changed.send_modify(|v| *v += 1);
    }

    async fn wait(&self) {
        let mut rx = self.changed.subscribe();
        while self.out.lock().unwrap().exit_code.is_none() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    async fn kill(&self, signal: i32) {
        let script = format!("kill -{signal} \"$(cat {PID_DIR}/{})\"", self.id);
        let _ = docker(&["exec", &self.container, "sh", "-c", &script]).await;
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct StartBody {
    command: String,
    args: Vec<String>,
    cwd: Option<String>,
    env: BTreeMap<String, String>,
    sudo: bool,
    wait: bool,
    logs: bool,
    timeout: Option<u64>,
}

/// Reads `pipe` to its end as text records of `stream`: UTF-8 decoded across reads (a character cut
/// by a read waits for the next one); invalid bytes become U+FFFD, as in a text API.
async fn pump(cmd: Arc<Cmd>, stream: &'static str, mut pipe: impl tokio::io::AsyncRead + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        let cut = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => carry.len(),
        };
        let rest = carry.split_off(cut);
        let text = String::from_utf8_lossy(&carry).into_owned();
        carry = rest;
        if !text.is_empty() {
            cmd.push(stream, text);
        }
    }
    if !carry.is_empty() {
        cmd.push(stream, String::from_utf8_lossy(&carry).into_owned());
    }
}

pub(crate) async fn start(State(st): S, Path(sid): Path<String>, Query(q): Query<HashMap<String, String>>, body: Bytes) -> Response {
    let body: StartBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (_, container) = match running(&st, &sid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if body.command.is_empty() {
        return error(400, "bad_request", "`command` is required");
    }
    let id = format!("cmd_{}", &crate::random_token()[..24]);
    let cwd = body.cwd.clone().unwrap_or_else(|| DEFAULT_CWD.into());
    let mut c = tokio::process::Command::new("docker");
    c.args(["exec", "-w", &cwd]);
    for (k, v) in &body.env {
        c.arg("-e").arg(format!("{k}={v}"));
    }
    if body.sudo {
        c.args(["-u", "0"]);
    }
    // The pid goes to a file first, so a timeout or `kill` can reach the process in the container.
    let wrapper = format!("mkdir -p {PID_DIR} && echo $$ > {PID_DIR}/{id} && exec \"$@\"");
    c.args([&container, "sh", "-c", &wrapper, "sh", &body.command]).args(&body.args);
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return error(500, "internal_server_error", &format!("exec: {e}")),
    };
    let (tx, _) = tokio::sync::watch::channel(0u64);
    let cmd = Arc::new(Cmd {
        id: id.clone(),
        name: body.command.clone(),
        args: body.args.clone(),
        cwd,
        session_id: sid.clone(),
        container,
        started_at: now_ms(),
        out: Mutex::default(),
        changed: tx,
    });
    st.commands.lock().unwrap().insert(id.clone(), cmd.clone());
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let runner = cmd.clone();
    let limit = body.timeout.filter(|t| *t > 0).map(Duration::from_millis);
    tokio::spawn(async move {
        let pumps = futures::future::join(pump(runner.clone(), "stdout", stdout), pump(runner.clone(), "stderr", stderr));
        let both = async { futures::future::join(pumps, child.wait()).await.1 };
        tokio::pin!(both);
        let status = match limit {
            None => both.await,
            Some(limit) => match tokio::time::timeout(limit, &mut both).await {
                Ok(s) => s,
                Err(_) => {
                    runner.kill(9).await;
                    both.await
                }
            },
        };
        use std::os::unix::process::ExitStatusExt;
        let code = match status {
            Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
            Err(_) => -1,
        };
        runner.finish(code);
    });
    let attached = body.wait && body.logs || q.get("wait").is_some_and(|w| w == "true") && q.get("logs").is_some_and(|l| l == "true");
    if attached {
        return ndjson(follow(cmd, true));
    }
    Json(json!({"command": cmd.json()})).into_response()
}

/// The records of `cmd` as NDJSON lines, live until it ends: with `framed`, the command record
/// (exit code null) first and the final command record last (the attached run); else only output
/// records (the logs endpoint).
fn follow(cmd: Arc<Cmd>, framed: bool) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let line = |v: Value| Bytes::from(format!("{v}\n"));
        let mut rx_changed = cmd.changed.subscribe();
        if framed {
            let mut first = cmd.json();
            first["exitCode"] = Value::Null;
            if tx.send(line(json!({"command": first}))).await.is_err() {
                return;
            }
        }
        let mut sent = 0;
        loop {
            let (batch, done) = {
                let out = cmd.out.lock().unwrap();
                (out.records[sent..].to_vec(), out.exit_code.is_some())
            };
            sent += batch.len();
            for (stream, data) in batch {
                if tx.send(line(json!({"stream": stream, "data": data}))).await.is_err() {
                    return;
                }
            }
            if done {
                break;
            }
            if rx_changed.changed().await.is_err() {
                break;
            }
        }
        if framed {
            let _ = tx.send(line(json!({"command": cmd.json()}))).await;
        }
    });
    rx
}

fn ndjson(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok::<_, std::io::Error>);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response")
}

/// The command `cid` of session `sid`, or Vercel's 404 / 410.
#[allow(clippy::result_large_err)]
fn command(st: &Shared, sid: &str, cid: &str) -> Result<Arc<Cmd>, Response> {
    running(st, sid)?;
    match st.commands.lock().unwrap().get(cid) {
        Some(c) if c.session_id == sid => Ok(c.clone()),
        _ => Err(error(404, "not_found", &format!("Command {cid} not found"))),
    }
}

pub(crate) async fn get_one(State(st): S, Path((sid, cid)): Path<(String, String)>, Query(q): Query<HashMap<String, String>>) -> Response {
    let cmd = match command(&st, &sid, &cid) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if q.get("wait").is_some_and(|w| w == "true") {
        let _ = tokio::time::timeout(st.config.max_wait, cmd.wait()).await;
    }
    Json(json!({"command": cmd.json()})).into_response()
}

pub(crate) async fn logs(State(st): S, Path((sid, cid)): Path<(String, String)>) -> Response {
    match command(&st, &sid, &cid) {
        Ok(cmd) => ndjson(follow(cmd, false)),
        Err(r) => r,
    }
}

pub(crate) async fn list(State(st): S, Path(sid): Path<String>) -> Response {
    if let Err(r) = running(&st, &sid) {
        return r;
    }
    let mut cmds: Vec<Arc<Cmd>> = st.commands.lock().unwrap().values().filter(|c| c.session_id == sid).cloned().collect();
    cmds.sort_by_key(|c| c.started_at);
    Json(json!({"commands": cmds.iter().map(|c| c.json()).collect::<Vec<_>>()})).into_response()
}

#[derive(Deserialize)]
pub(crate) struct KillBody {
    signal: Option<i32>,
}

pub(crate) async fn kill(State(st): S, Path((sid, cid)): Path<(String, String)>, body: Bytes) -> Response {
    let body: KillBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let cmd = match command(&st, &sid, &cid) {
        Ok(c) => c,
        Err(r) => return r,
    };
    cmd.kill(body.signal.unwrap_or(15)).await;
    Json(json!({"command": cmd.json()})).into_response()
}
