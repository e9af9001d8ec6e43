//! `/v1/pty`: a terminal over WebSocket.
//!
//! `GET /v1/pty?command=…&args=…&cols=80&rows=24&cwd=…&env=NAME=value` (with the usual bearer token)
//! starts the program on a fresh pseudo-terminal, in its own session (so it has a controlling terminal
//! and job control works), and upgrades to a WebSocket:
//!
//! - client → server, **binary** frames: raw input bytes (keystrokes, pastes);
//! - client → server, **text** frames: JSON control messages, `{"type":"resize","cols":N,"rows":N}` or
//!   `{"type":"input","data":"…"}` (see [`PtyClientMessage`]);
//! - server → client, **binary** frames: raw output bytes;
//! - server → client, **text** frames: `{"type":"exit","exitCode":N,"signal":null}` when the program
//!   exits (after its last output), then the server closes the socket; `{"type":"error","message":…}`
//!   for a control message it could not use (the session continues). See [`PtyServerMessage`].
//!
//! When the client closes the socket first, the terminal's session gets SIGHUP (as when a terminal
//! window closes), and SIGKILL if it is still there a few seconds later. A terminal counts towards
//! `maxConcurrentProcesses`.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::processes::os::{exit_parts, signal_group, spawn_error, Spec};
use super::{ApiError, ApiResult, AppState};
use crate::api::process::{PtyClientMessage, PtyQuery, PtyServerMessage};
#[allow(unused_imports)] // referenced by the rustdoc above
use crate::api::Problem;

/// After the program exits, how long output still buffered in the terminal is forwarded.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// After SIGHUP on a client close, how long before SIGKILL.
const HANGUP_GRACE: Duration = Duration::from_secs(3);
/// A deadline that never comes (a disarmed timer).
const FAR_AWAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The frame schemas of the WebSocket protocol, which no route references directly.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(PtyClientMessage, PtyServerMessage)))]
struct PtyDoc;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi as _;
    OpenApiRouter::with_openapi(PtyDoc::openapi()).routes(routes!(pty))
}

/// Open a terminal: upgrade to a WebSocket attached to a program on a fresh PTY.
///
/// Protocol: client→server binary frames are raw input; client→server text frames are JSON control
/// messages `{"type":"resize","cols":N,"rows":N}` or `{"type":"input","data":"…"}`; server→client binary
/// frames are raw output; when the program exits the server sends the text frame
/// `{"type":"exit","exitCode":N,"signal":null}` and closes. `args` and `env` (`NAME=value`) may repeat.
/// The default program is `$SHELL`, else `/bin/sh`; `TERM` defaults to `xterm-256color`.
#[utoipa::path(get, path = "/v1/pty", tag = "pty", params(PtyQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket terminal protocol described above"),
        (status = 400, description = "Not a WebSocket upgrade, a bad query, or the program cannot be started", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "cwd is outside the runtime's root", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "maxConcurrentProcesses are already running", body = Problem, content_type = "application/problem+json"),
    ))]
async fn pty(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("GET /v1/pty must be a WebSocket upgrade request ({e})"))
    })?;
    let q = parse_query(raw.as_deref().unwrap_or(""))?;
    let (cols, rows) = (q.cols.unwrap_or(80), q.rows.unwrap_or(24));
    if cols == 0 || rows == 0 {
        return Err(ApiError::bad_request("`cols` and `rows` must be at least 1"));
    }
    let mut env = std::collections::BTreeMap::new();
    env.insert("TERM".to_owned(), "xterm-256color".to_owned());
    for kv in &q.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(ApiError::bad_request(format!("`env={kv}` must look like NAME=value")));
        };
        env.insert(k.to_owned(), v.to_owned());
    }
    let command = q.command.filter(|c| !c.is_empty()).unwrap_or_else(default_shell);
    let spec = Spec::new(state.fs(), Some(command), q.args, None, q.cwd, env).await?;

    let mgr = state.processes();
    let slot = mgr.reserve()?;
    let (pty, pts) = pty_process::open().map_err(|e| ApiError::internal(format!("cannot open a pty: {e}")))?;
    pty.resize(pty_process::Size::new(rows, cols))
        .map_err(|e| ApiError::internal(format!("cannot size the pty: {e}")))?;
    let cmd = pty_process::Command::from(spec.command()).kill_on_drop(true);
    let child = cmd.spawn(pts).map_err(|e| match e {
        pty_process::Error::Io(io) => spawn_error(&spec.program, &io),
        other => ApiError::internal(format!("cannot start `{}` on a pty: {other}", spec.program)),
    })?;
    let pgid = child.id().ok_or_else(|| ApiError::internal("the terminal's program exited before it had a pid"))?;
    let key = mgr.register_pty(slot, pgid);
    let guard = PtyGuard { state: state.clone(), key, pgid };
    tracing::debug!(pid = pgid, program = %spec.program, "terminal opened");
    Ok(ws.on_upgrade(move |socket| async move {
        session(socket, pty, child, &guard).await;
        drop(guard);
    }))
}

/// Unregisters the terminal and makes sure its session is gone, however the connection ended
/// (including an upgrade that never completed).
struct PtyGuard {
    state: AppState,
    key: u64,
    pgid: u32,
}

impl Drop for PtyGuard {
    fn drop(&mut self) {
        let _ = signal_group(self.pgid, Signal::SIGKILL);
        self.state.processes().unregister_pty(self.key);
    }
}

fn default_shell() -> String {
    std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".to_owned())
}

/// Parses the query by hand: `args` and `env` repeat, which the urlencoded deserializer cannot express.
fn parse_query(raw: &str) -> Result<PtyQuery, ApiError> {
    let mut q = PtyQuery::default();
    let num = |k: &str, v: &str| {
        v.parse::<u16>().map_err(|_| ApiError::bad_request(format!("`{k}` must be a number from 1 to 65535, not `{v}`")))
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "command" => q.command = Some(v.into_owned()),
            "args" | "arg" | "args[]" => q.args.push(v.into_owned()),
            "cols" => q.cols = Some(num("cols", &v)?),
            "rows" => q.rows = Some(num("rows", &v)?),
            "cwd" => q.cwd = Some(v.into_owned()),
            "env" => q.env.push(v.into_owned()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; /v1/pty takes command, args, cols, rows, cwd, env"
                )))
            }
        }
    }
    Ok(q)
}

/// What the WebSocket reader asks of the PTY writer, in order.
enum ToPty {
    Input(Vec<u8>),
    Resize(u16, u16),
}

async fn session(socket: WebSocket, pty: pty_process::Pty, mut child: tokio::process::Child, guard: &PtyGuard) {
    let (mut pty_out, mut pty_in) = pty.into_split();
    let (mut sink, mut stream) = socket.split();

    // Input goes through its own task so that a program not reading its input never stalls output.
    let (tx, mut rx) = mpsc::unbounded_channel::<ToPty>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                ToPty::Input(bytes) => {
                    if pty_in.write_all(&bytes).await.is_err() {
                        break;
                    }
                    let _ = pty_in.flush().await;
                }
                ToPty::Resize(cols, rows) => {
                    let _ = pty_in.resize(pty_process::Size::new(rows, cols));
                }
            }
        }
    });

    let mut buf = vec![0u8; 16 * 1024];
    let mut pty_open = true;
    let mut client_open = true;
    let mut status = None;
    // After the exit: end of the output drain. After a client close: when to escalate to SIGKILL.
    let timer = tokio::time::sleep(FAR_AWAY);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            r = pty_out.read(&mut buf), if pty_open => match r {
                // EIO is how a pty says "every program on this terminal has closed it".
                Ok(0) | Err(_) => pty_open = false,
                Ok(n) => {
                    if client_open && sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        client_open = false;
                        hang_up(guard.pgid, timer.as_mut());
                    }
                }
            },
            msg = stream.next(), if client_open => match msg {
                Some(Ok(Message::Binary(b))) => { let _ = tx.send(ToPty::Input(b.to_vec())); }
                Some(Ok(Message::Text(t))) => {
                    if let Some(reply) = control(t.as_str(), &tx) {
                        let _ = send_json(&mut sink, &reply).await;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    client_open = false;
                    hang_up(guard.pgid, timer.as_mut());
                }
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                timer.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            },
            _ = &mut timer, if status.is_some() || !client_open => {
                if status.is_some() {
                    break;
                }
                // Hung up and still there: it ignores SIGHUP.
                let _ = signal_group(guard.pgid, Signal::SIGKILL);
                timer.as_mut().reset(tokio::time::Instant::now() + FAR_AWAY);
            },
        }
        if status.is_some() && (!pty_open || !client_open) {
            break;
        }
    }
    drop(tx);
    writer.abort();
    let (exit_code, signal) = match status {
        Some(Ok(s)) => exit_parts(s),
        _ => (None, None),
    };
    tracing::debug!(pid = guard.pgid, ?exit_code, ?signal, "terminal closed");
    if client_open {
        let _ = send_json(&mut sink, &PtyServerMessage::Exit { exit_code, signal: signal.clone() }).await;
        let reason = match (exit_code, status.as_ref().and_then(|s| s.as_ref().ok()).and_then(|s| s.signal())) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".to_owned(),
        };
        let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: reason.into() }))).await;
        let _ = sink.close().await;
    }
}

/// The client went away: hang up the terminal's session like a closed terminal window would, and
/// arm `timer` to escalate to SIGKILL if it does not go.
fn hang_up(pgid: u32, timer: std::pin::Pin<&mut tokio::time::Sleep>) {
    let _ = signal_group(pgid, Signal::SIGHUP);
    let _ = signal_group(pgid, Signal::SIGCONT);
    timer.reset(tokio::time::Instant::now() + HANGUP_GRACE);
}

/// Handles one text frame; returns a message for the client when it could not be used.
fn control(text: &str, tx: &mpsc::UnboundedSender<ToPty>) -> Option<PtyServerMessage> {
    match serde_json::from_str::<PtyClientMessage>(text) {
        Ok(PtyClientMessage::Input { data }) => {
            let _ = tx.send(ToPty::Input(data.into_bytes()));
            None
        }
        Ok(PtyClientMessage::Resize { cols, rows }) if cols > 0 && rows > 0 => {
            let _ = tx.send(ToPty::Resize(cols, rows));
            None
        }
        Ok(PtyClientMessage::Resize { .. }) => {
            Some(PtyServerMessage::Error { message: "resize needs cols and rows of at least 1".into() })
        }
        Err(e) => Some(PtyServerMessage::Error {
            message: format!(
                "bad control message ({e}); expected {{\"type\":\"resize\",\"cols\":N,\"rows\":N}} or {{\"type\":\"input\",\"data\":\"…\"}}"
            ),
        }),
    }
}

async fn send_json<S>(sink: &mut S, msg: &PtyServerMessage) -> Result<(), axum::Error>
where
    S: futures::Sink<Message, Error = axum::Error> + Unpin,
{
    let text = serde_json::to_string(msg).unwrap_or_default();
    sink.send(Message::Text(text.into())).await
}
