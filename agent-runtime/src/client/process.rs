//! Processes and terminals: `/v1/processes/*` and `/v1/pty`.
//!
//! ```no_run
//! # async fn f(client: sbx_agent::client::Client) -> Result<(), sbx_agent::client::ClientError> {
//! use futures::StreamExt;
//! use sbx_agent::api::process::{CreateProcessRequest, RunRequest};
//! use sbx_agent::client::{FollowOptions, LogEvent};
//!
//! // Run to completion.
//! let out = client.run(&RunRequest::shell("echo hi; exit 3")).await?;
//! assert_eq!(out.exit_code, Some(3));
//!
//! // Start in the background and follow the output (bytes) until it exits.
//! let proc = client.start_process(&CreateProcessRequest::command("make", ["test"])).await?;
//! let mut logs = client.follow_logs(&proc.id, FollowOptions::default()).await?;
//! while let Some(ev) = logs.next().await {
//!     match ev? {
//!         LogEvent::Log(entry) => println!("{} bytes of {:?}", entry.data.len(), entry.stream),
//!         LogEvent::Dropped(gap) => eprintln!("{} bytes were lost", gap.total_bytes()),
//!         LogEvent::Exit(info) => println!("exit code {:?}", info.exit_code),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use reqwest::header::{ACCEPT, CONNECTION, UPGRADE};
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::log_frames::{LogFrame, LogFrameParser};
use super::{Client, ClientError, Result};
use crate::api::process::{
    frame, CreateProcessRequest, LogDropped, LogEntry, LogStreamFilter, LogsQuery, LogsResponse, ProcessInfo,
    ProcessInputRequest, ProcessInputResponse, ProcessLimits, ProcessLimitsUpdate, ProcessList, PtyClientMessage,
    PtyServerMessage, RunRequest, RunResponse, SignalRequest, SignalSpec,
};

/// How many times a followed log reconnects in a row before giving up.
const MAX_RECONNECTS: u32 = 5;

impl Client {
    /// `POST /v1/processes/run`: runs a command to completion.
    pub async fn run(&self, req: &RunRequest) -> Result<RunResponse> {
        self.send_json(self.request(Method::POST, "/v1/processes/run").json(req)).await
    }

    /// `POST /v1/processes`: starts a managed background process.
    pub async fn start_process(&self, req: &CreateProcessRequest) -> Result<ProcessInfo> {
        self.send_json(self.request(Method::POST, "/v1/processes").json(req)).await
    }

    /// `GET /v1/processes`: every managed process, oldest first.
    pub async fn list_processes(&self) -> Result<Vec<ProcessInfo>> {
        let list: ProcessList = self.send_json(self.request(Method::GET, "/v1/processes")).await?;
        Ok(list.processes)
    }

    /// `GET /v1/processes/{id}`.
    pub async fn get_process(&self, id: &str) -> Result<ProcessInfo> {
        self.send_json(self.request(Method::GET, &proc_path(id, ""))).await
    }

    /// `GET /v1/processes/{id}/logs`: the kept log as JSON (`follow` in `query` is ignored; see
    /// [`Client::follow_logs`]).
    pub async fn process_logs(&self, id: &str, query: &LogsQuery) -> Result<LogsResponse> {
        let query = LogsQuery { follow: None, ..query.clone() };
        self.send_json(self.request(Method::GET, &proc_path(id, "/logs")).query(&query)).await
    }

    /// Follows a managed process's log (as binary frames: the bytes as the process wrote them): the
    /// kept entries, then live ones, then one [`LogEvent::Exit`], after which the stream ends. A
    /// broken connection is resumed from the last entry received (`Last-Event-ID`), so nothing is
    /// repeated; output the runtime had to drop arrives as [`LogEvent::Dropped`], never as a silent gap.
    ///
    /// While this is followed (and read), the process never loses output: it waits for the reader.
    ///
    /// Fails right away (404 and so on) when the first connection does.
    pub async fn follow_logs(&self, id: &str, opts: FollowOptions) -> Result<LogFollow> {
        let mut st = FollowState {
            client: self.clone(),
            id: id.to_owned(),
            last_seq: opts.after,
            opts,
            body: None,
            parser: LogFrameParser::new(),
            failures: 0,
            done: false,
        };
        st.body = Some(st.connect().await?);
        Ok(LogFollow { inner: Box::pin(futures::stream::unfold(st, FollowState::step)) })
    }

    /// `POST /v1/processes/{id}/input`: writes bytes to stdin (closing it afterwards when `eof`).
    pub async fn write_input(&self, id: &str, data: &[u8], eof: bool) -> Result<ProcessInputResponse> {
        let body = match std::str::from_utf8(data) {
            Ok(text) => ProcessInputRequest { data: text.to_owned(), eof, ..Default::default() },
            Err(_) => ProcessInputRequest {
                data: base64::engine::general_purpose::STANDARD.encode(data),
                base64: true,
                eof,
                ..Default::default()
            },
        };
        self.send_json(self.request(Method::POST, &proc_path(id, "/input")).json(&body)).await
    }

    /// Closes a managed process's stdin (it sees end of file).
    pub async fn close_input(&self, id: &str) -> Result<ProcessInputResponse> {
        self.write_input(id, &[], true).await
    }

    /// `POST /v1/processes/{id}/signal`: signals the process group (`"TERM"`, `"INT"`, `9`, …).
    pub async fn signal_process(&self, id: &str, signal: impl Into<SignalSpec>) -> Result<ProcessInfo> {
        let body = SignalRequest { signal: signal.into() };
        self.send_json(self.request(Method::POST, &proc_path(id, "/signal")).json(&body)).await
    }

    /// `POST /v1/processes/{id}/stop`: SIGTERM to the group, then waits up to `wait` for the exit.
    pub async fn stop_process(&self, id: &str, wait: Option<Duration>) -> Result<ProcessInfo> {
        self.end_process(id, "/stop", wait).await
    }

    /// `POST /v1/processes/{id}/kill`: SIGKILL to the group, then waits up to `wait` (server default 5 s).
    pub async fn kill_process(&self, id: &str, wait: Option<Duration>) -> Result<ProcessInfo> {
        self.end_process(id, "/kill", wait).await
    }

    async fn end_process(&self, id: &str, what: &str, wait: Option<Duration>) -> Result<ProcessInfo> {
        let mut rb = self.request(Method::POST, &proc_path(id, what));
        if let Some(w) = wait {
            rb = rb.query(&[("waitMs", w.as_millis().to_string())]);
        }
        self.send_json(rb).await
    }

    /// `DELETE /v1/processes/{id}`: forgets an exited process; `force` kills a running one first.
    pub async fn remove_process(&self, id: &str, force: bool) -> Result<()> {
        let mut rb = self.request(Method::DELETE, &proc_path(id, ""));
        if force {
            rb = rb.query(&[("force", "true")]);
        }
        self.send(rb).await.map(|_| ())
    }

    /// `GET /v1/processes/config`.
    pub async fn process_config(&self) -> Result<ProcessLimits> {
        self.send_json(self.request(Method::GET, "/v1/processes/config")).await
    }

    /// `PUT /v1/processes/config` with a full ([`ProcessLimits`]) or partial update; returns the new limits.
    pub async fn set_process_config(&self, update: impl Into<ProcessLimitsUpdate>) -> Result<ProcessLimits> {
        let body: ProcessLimitsUpdate = update.into();
        self.send_json(self.request(Method::PUT, "/v1/processes/config").json(&body)).await
    }

    /// `GET /v1/pty`: opens a terminal over a WebSocket (with this client's token, headers, TLS and Unix
    /// socket, since the upgrade goes through the same HTTP client).
    pub async fn pty(&self, opts: &PtyOptions) -> Result<PtySession> {
        let mut query: Vec<(&str, String)> =
            vec![("cols", opts.cols.to_string()), ("rows", opts.rows.to_string())];
        if let Some(c) = &opts.command {
            query.push(("command", c.clone()));
        }
        query.extend(opts.args.iter().map(|a| ("args", a.clone())));
        if let Some(c) = &opts.cwd {
            query.push(("cwd", c.clone()));
        }
        query.extend(opts.env.iter().map(|(k, v)| ("env", format!("{k}={v}"))));
        let key = websocket_key();
        let rb = self
            .request(Method::GET, "/v1/pty")
            .query(&query)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", &key);
        let resp = self.send(rb).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ClientError::Protocol(format!(
                "GET /v1/pty answered {} instead of switching to a WebSocket",
                resp.status()
            )));
        }
        let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let accept = resp.headers().get("sec-websocket-accept").and_then(|v| v.to_str().ok());
        if accept != Some(expected.as_str()) {
            return Err(ClientError::Protocol("the WebSocket handshake's Sec-WebSocket-Accept is wrong".into()));
        }
        let upgraded = resp
            .upgrade()
            .await
            .map_err(|e| ClientError::Transport { url: self.base_url().to_owned(), source: e })?;
        let ws = WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await;
        Ok(PtySession { ws })
    }
}

/// `/v1/processes/{id}{suffix}` with the id percent-encoded.
fn proc_path(id: &str, suffix: &str) -> String {
    format!("/v1/processes/{}{suffix}", super::encode_segment(id))
}

/// A fresh `Sec-WebSocket-Key` (16 unpredictable-enough bytes; it only guards against caching proxies).
pub(super) fn websocket_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Options of [`Client::follow_logs`].
#[derive(Debug, Clone, Default)]
pub struct FollowOptions {
    /// Which streams (default both).
    pub stream: LogStreamFilter,
    /// Start with only the last N kept entries instead of all of them.
    pub tail: Option<usize>,
    /// Start after this seq (resume a follow that ended, e.g. in an earlier CLI invocation).
    pub after: Option<u64>,
}

/// An event of a followed log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// Output.
    Log(LogEntry),
    /// Output was dropped here (nobody was following while the runtime's log was full).
    Dropped(LogDropped),
    /// The process exited and its output is complete; the stream ends after this.
    Exit(ProcessInfo),
}

/// The stream [`Client::follow_logs`] returns.
pub struct LogFollow {
    inner: Pin<Box<dyn Stream<Item = Result<LogEvent>> + Send>>,
}

impl std::fmt::Debug for LogFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollow").finish_non_exhaustive()
    }
}

impl Stream for LogFollow {
    type Item = Result<LogEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct FollowState {
    client: Client,
    id: String,
    opts: FollowOptions,
    last_seq: Option<u64>,
    body: Option<ByteStream>,
    parser: LogFrameParser,
    failures: u32,
    done: bool,
}

impl FollowState {
    /// A future for a new connection (owning what it needs, so the follower stays `Send`).
    fn connect(&self) -> impl std::future::Future<Output = Result<ByteStream>> + Send + 'static {
        let (client, path, stream, tail, last_seq) =
            (self.client.clone(), proc_path(&self.id, "/logs"), self.opts.stream, self.opts.tail, self.last_seq);
        Self::connect_to(client, path, stream, tail, last_seq)
    }

    async fn connect_to(
        client: Client,
        path: String,
        stream: LogStreamFilter,
        tail: Option<usize>,
        last_seq: Option<u64>,
    ) -> Result<ByteStream> {
        let mut query: Vec<(&str, String)> =
            vec![("follow", "true".into()), ("stream", stream.as_str().into())];
        let mut rb = client.request(Method::GET, &path).header(ACCEPT, frame::MEDIA_TYPE);
        match last_seq {
            Some(seq) => rb = rb.header("Last-Event-ID", seq.to_string()),
            None => {
                if let Some(t) = tail {
                    query.push(("tail", t.to_string()));
                }
            }
        }
        let resp = client.send(rb.query(&query)).await?;
        Ok(Box::pin(resp.bytes_stream()))
    }

    async fn step(mut self) -> Option<(Result<LogEvent>, Self)> {
        loop {
            if self.done {
                return None;
            }
            match self.parser.next_frame() {
                Ok(Some(LogFrame::Entry(entry))) => {
                    self.last_seq = Some(entry.seq);
                    self.failures = 0;
                    return Some((Ok(LogEvent::Log(entry)), self));
                }
                Ok(Some(LogFrame::Dropped(gap))) => {
                    // Resume after the gap, not before it: what is gone cannot come back.
                    self.last_seq = Some(gap.through_seq);
                    return Some((Ok(LogEvent::Dropped(gap)), self));
                }
                Ok(Some(LogFrame::Exit(info))) => {
                    self.done = true;
                    return Some((Ok(LogEvent::Exit(info)), self));
                }
                Ok(Some(LogFrame::Other(_))) => continue,
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
            let Some(body) = self.body.as_mut() else {
                // The connection broke or ended before the exit event: resume after the last entry.
                if self.failures >= MAX_RECONNECTS {
                    self.done = true;
                    let msg = format!("the log stream of {} kept breaking; gave up after {MAX_RECONNECTS} reconnects", self.id);
                    return Some((Err(ClientError::Protocol(msg)), self));
                }
                tokio::time::sleep(Duration::from_millis(100 << self.failures)).await;
                self.failures += 1;
                match self.connect().await {
                    Ok(b) => {
                        self.parser = LogFrameParser::new();
                        self.body = Some(b);
                    }
                    Err(ClientError::Transport { .. }) => {}
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            };
            match body.next().await {
                Some(Ok(bytes)) => self.parser.feed(&bytes),
                Some(Err(_)) | None => self.body = None,
            }
        }
    }
}

/// Options of [`Client::pty`].
#[derive(Debug, Clone)]
pub struct PtyOptions {
    /// The program (default: the sandbox's `$SHELL`, else `/bin/sh`).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Columns (default 80).
    pub cols: u16,
    /// Rows (default 24).
    pub rows: u16,
    /// Working directory.
    pub cwd: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Default for PtyOptions {
    fn default() -> Self {
        Self { command: None, args: Vec::new(), cols: 80, rows: 24, cwd: None, env: Vec::new() }
    }
}

impl PtyOptions {
    /// A terminal running `command` with `args`.
    pub fn command<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { command: Some(command.into()), args: args.into_iter().map(Into::into).collect(), ..Self::default() }
    }
    /// With this size.
    pub fn size(mut self, cols: u16, rows: u16) -> Self {
        self.cols = cols;
        self.rows = rows;
        self
    }
}

/// What the terminal sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Output bytes.
    Output(Bytes),
    /// The program exited (the socket closes next).
    Exit {
        /// Its exit code; `None` when killed by a signal.
        exit_code: Option<i32>,
        /// The signal that killed it.
        signal: Option<String>,
    },
    /// The server could not use a control message.
    Error(String),
}

type Ws = WebSocketStream<reqwest::Upgraded>;

/// An open terminal. Use it directly, or [`PtySession::split`] it to read and write from two tasks.
#[derive(Debug)]
pub struct PtySession {
    ws: Ws,
}

/// The writing half of a [`PtySession`].
#[derive(Debug)]
pub struct PtyWriter {
    sink: SplitSink<Ws, Message>,
}

/// The reading half of a [`PtySession`].
#[derive(Debug)]
pub struct PtyReader {
    stream: SplitStream<Ws>,
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> ClientError {
    ClientError::Protocol(format!("terminal connection: {e}"))
}

fn resize_message(cols: u16, rows: u16) -> Message {
    Message::text(serde_json::to_string(&PtyClientMessage::Resize { cols, rows }).unwrap_or_default())
}

/// The next terminal event from raw frames; `None` once the socket is closed.
async fn next_pty_event<S>(stream: &mut S) -> Option<Result<PtyEvent>>
where
    S: Stream<Item = std::result::Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Binary(b)) => return Some(Ok(PtyEvent::Output(b))),
            Ok(Message::Text(t)) => {
                return Some(match serde_json::from_str::<PtyServerMessage>(t.as_str()) {
                    Ok(PtyServerMessage::Exit { exit_code, signal }) => Ok(PtyEvent::Exit { exit_code, signal }),
                    Ok(PtyServerMessage::Error { message }) => Ok(PtyEvent::Error(message)),
                    Err(e) => Err(ClientError::Protocol(format!("bad terminal message `{t}`: {e}"))),
                })
            }
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => return None,
            Err(e) => return Some(Err(ws_error(e))),
        }
    }
}

impl PtySession {
    /// Sends keystrokes or pasted bytes.
    pub async fn send_input(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.ws.send(Message::Binary(data.into())).await.map_err(ws_error)
    }
    /// Changes the terminal size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        self.ws.send(resize_message(cols, rows)).await.map_err(ws_error)
    }
    /// The next output, exit or error; `None` when the connection is closed.
    pub async fn next_event(&mut self) -> Option<Result<PtyEvent>> {
        next_pty_event(&mut self.ws).await
    }
    /// Closes the connection (the server hangs up the terminal).
    pub async fn close(&mut self) -> Result<()> {
        self.ws.close(None).await.map_err(ws_error)
    }
    /// Splits into halves that can live in separate tasks (e.g. stdin → terminal and terminal → stdout).
    pub fn split(self) -> (PtyWriter, PtyReader) {
        let (sink, stream) = self.ws.split();
        (PtyWriter { sink }, PtyReader { stream })
    }
    /// The raw WebSocket, for callers that want the frames themselves.
    pub fn into_inner(self) -> WebSocketStream<reqwest::Upgraded> {
        self.ws
    }
}

impl PtyWriter {
    /// Sends keystrokes or pasted bytes.
    pub async fn send_input(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.sink.send(Message::Binary(data.into())).await.map_err(ws_error)
    }
    /// Changes the terminal size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        self.sink.send(resize_message(cols, rows)).await.map_err(ws_error)
    }
    /// Closes the connection (the server hangs up the terminal).
    pub async fn close(&mut self) -> Result<()> {
        self.sink.close().await.map_err(ws_error)
    }
}

impl PtyReader {
    /// The next output, exit or error; `None` when the connection is closed.
    pub async fn next_event(&mut self) -> Option<Result<PtyEvent>> {
        next_pty_event(&mut self.stream).await
    }
}
