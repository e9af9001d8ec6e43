//! The LLM relay of keyless sandboxes (docs/keyless.md), runtime side.
//!
//! - `GET /v1/llm/relay` (runtime bearer token): a host attaches with a WebSocket and serves model
//!   requests over it until it goes away. Several hosts may attach; the newest serves new requests and an
//!   older one takes over when it leaves.
//! - `/v1/llm[/s/{session}]/{anthropic|openai}/...` (the relay token, not the runtime token): an
//!   agent's model request. The token is compared in constant time with the one the host pushed in the
//!   session environment; the request then waits (bounded) for an attached host, goes to it as frames,
//!   and the answer streams back to the agent frame by frame, never buffered whole.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use futures::{SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::AppState;
use crate::api::llm_relay::{
    error_body, is_credential, is_hop_by_hop, Frame, FrameKind, Header, RequestHead, ResponseHead, DEFAULT_WAIT_MS, PROVIDERS, RELAY_PATH,
    RELAY_TOKEN_ENV, RELAY_WAIT_ENV,
};

/// How often the runtime pings an attached host, so a host that vanished without closing (a laptop that
/// slept, a cut network) is noticed and its requests fail instead of hanging.
const PING_EVERY: Duration = Duration::from_secs(15);

type HeadResult = Result<ResponseHead, String>;
type BodyChunk = Result<Bytes, std::io::Error>;

struct Pending {
    head: Option<oneshot::Sender<HeadResult>>,
    body: mpsc::UnboundedSender<BodyChunk>,
}

/// One attached host.
struct HostConn {
    id: u64,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, Pending>>,
}

impl HostConn {
    fn send(&self, frame: Frame) -> bool {
        self.out.send(frame.encode()).is_ok()
    }

    fn take(&self, id: u64) -> Option<Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id)
    }

    /// Fails every request still in flight (the host went away).
    fn fail_all(&self, why: &str) {
        let all: Vec<Pending> = self.pending.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, p)| p).collect();
        for p in all {
            match p.head {
                Some(h) => {
                    let _ = h.send(Err(why.to_owned()));
                }
                None => {
                    let _ = p.body.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_owned())));
                }
            }
        }
    }
}

/// The hosts attached to this runtime.
pub(crate) struct Relay {
    hosts: Mutex<Vec<Arc<HostConn>>>,
    /// Bumped whenever a host attaches, so waiting requests wake up.
    attached: watch::Sender<u64>,
    ids: AtomicU64,
}

impl Default for Relay {
    fn default() -> Self {
        Self { hosts: Mutex::new(Vec::new()), attached: watch::channel(0).0, ids: AtomicU64::new(0) }
    }
}

impl Relay {
    fn newest(&self) -> Option<Arc<HostConn>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().find(|h| !h.out.is_closed()).cloned()
    }

    /// The newest attached host, waiting up to `wait` for one.
    async fn host(&self, wait: Duration) -> Option<Arc<HostConn>> {
        let mut rx = self.attached.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(h) = self.newest() {
                return Some(h);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return None;
            }
        }
    }

    /// How many hosts are attached.
    pub(crate) fn attached(&self) -> usize {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|h| !h.out.is_closed()).count()
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(RELAY_PATH, get(attach)).route("/v1/llm/{*rest}", any(forward))
}

/// Whether `path` is an agent's model request (relay-token auth) rather than a runtime route.
pub(crate) fn is_model_request(path: &str) -> bool {
    path.starts_with(crate::api::llm_relay::LLM_PREFIX) && path != RELAY_PATH
}

async fn attach(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 << 20).on_upgrade(move |socket| serve_host(state, socket))
}

async fn serve_host(state: AppState, socket: WebSocket) {
    let relay = state.relay();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let conn = Arc::new(HostConn { id: relay.ids.fetch_add(1, Ordering::Relaxed), out: out_tx, pending: Mutex::new(HashMap::new()) });
    relay.hosts.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&conn));
    relay.attached.send_modify(|n| *n += 1);
    tracing::info!(host = conn.id, "a host attached to the LLM relay");
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                frame = out_rx.recv() => match frame {
                    Some(f) => if sink.send(Message::Binary(f.into())).await.is_err() { break },
                    None => break,
                },
                _ = ping.tick() => if sink.send(Message::Ping(Bytes::new())).await.is_err() { break },
            }
        }
        let _ = sink.close().await;
    });
    // A host that answers nothing (not even pongs, which tungstenite sends by itself) for three ping
    // periods is gone.
    while let Ok(Some(msg)) = tokio::time::timeout(PING_EVERY * 3, stream.next()).await {
        match msg {
            Ok(Message::Binary(b)) => match Frame::decode(b) {
                Ok(f) => on_host_frame(&conn, f),
                Err(e) => tracing::warn!(error = %e, "ignoring a bad frame from the relay host"),
            },
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    relay.hosts.lock().unwrap_or_else(|e| e.into_inner()).retain(|h| h.id != conn.id);
    conn.fail_all("the sbx host serving this sandbox's LLM relay went away mid-request");
    writer.abort();
    tracing::info!(host = conn.id, "a host left the LLM relay");
}

fn on_host_frame(conn: &HostConn, f: Frame) {
    match f.kind {
        FrameKind::ResponseHead => {
            let head: HeadResult = serde_json::from_slice(&f.payload).map_err(|e| format!("bad response head from the host: {e}"));
            let mut pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = pending.get_mut(&f.id).and_then(|p| p.head.take()) {
                let _ = h.send(head);
            }
        }
        FrameKind::ResponseBody => {
            let pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = pending.get(&f.id) {
                let _ = p.body.send(Ok(f.payload));
            }
        }
        FrameKind::ResponseEnd => {
            // Dropping the body sender ends the agent's response.
            conn.take(f.id);
        }
        FrameKind::ResponseError => {
            let why = String::from_utf8_lossy(&f.payload).into_owned();
            if let Some(p) = conn.take(f.id) {
                match p.head {
                    Some(h) => {
                        let _ = h.send(Err(why));
                    }
                    None => {
                        let _ = p.body.send(Err(std::io::Error::other(why)));
                    }
                }
            }
        }
        other => tracing::debug!(kind = ?other, "ignoring a runtime-bound frame kind from the relay host"),
    }
}

/// `…/s/{session}/{provider}/{rest}` or `…/{provider}/{rest}` after `/v1/llm/`.
fn split_target(rest: &str) -> Option<(Option<String>, &'static str, String)> {
    let (session, rest) = match rest.strip_prefix("s/") {
        Some(r) => {
            let (s, r) = r.split_once('/')?;
            (Some(s.to_owned()), r)
        }
        None => (None, rest),
    };
    let (provider, path) = rest.split_once('/').unwrap_or((rest, ""));
    let provider = PROVIDERS.into_iter().find(|p| *p == provider)?;
    Some((session, provider, format!("/{path}")))
}

fn llm_error(provider: &str, status: StatusCode, message: String) -> Response {
    tracing::info!(status = status.as_u16(), %message, "LLM relay refused a request");
    (status, [(header::CONTENT_TYPE, "application/json")], error_body(provider, status.as_u16(), &message)).into_response()
}

/// The key the agent presented: `x-api-key` (Anthropic) or `Authorization: Bearer` (OpenAI, and Claude
/// Code with `ANTHROPIC_AUTH_TOKEN`).
fn presented_token(headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")).map(|t| t.trim().to_owned())
}

async fn forward(State(state): State<AppState>, Path(rest): Path<String>, req: Request) -> Response {
    let Some((session, provider, path)) = split_target(&rest) else {
        return llm_error(
            "anthropic",
            StatusCode::NOT_FOUND,
            format!("no LLM relay route /v1/llm/{rest}: use /v1/llm/anthropic/... or /v1/llm/openai/..."),
        );
    };
    let env = state.sessions().session_env();
    let Some(expected) = env.get(RELAY_TOKEN_ENV).filter(|t| !t.is_empty()) else {
        return llm_error(
            provider,
            StatusCode::UNAUTHORIZED,
            "this sandbox has no LLM relay token: it was not made keyless (sbx up --keyless), or its runtime restarted and no \
             sbx host has attached since (sbx attach NAME)"
                .into(),
        );
    };
    let token = presented_token(req.headers()).unwrap_or_default();
    if !super::auth::token_matches(token.as_bytes(), expected.as_bytes()) {
        return llm_error(
            provider,
            StatusCode::UNAUTHORIZED,
            "the LLM relay token is wrong: agents in a keyless sandbox get theirs from sbx (a new session picks up the current one)".into(),
        );
    }
    let wait = env.get(RELAY_WAIT_ENV).and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_WAIT_MS);
    let Some(host) = state.relay().host(Duration::from_millis(wait)).await else {
        return llm_error(
            provider,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no sbx host is attached to relay this sandbox's LLM requests (waited {:.1} s). Keyless sandboxes reach their \
                 model only through the host: run `sbx attach <sandbox>` (or a `sbx session`, `sbx prompt`, `sbx run` on it)",
                wait as f64 / 1000.0
            ),
        );
    };
    let id = state.relay().ids.fetch_add(1, Ordering::Relaxed);
    let path = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let headers = req
        .headers()
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n.as_str()) && !is_credential(n.as_str()))
        .map(|(n, v)| Header { name: n.as_str().to_owned(), value: v.as_bytes().to_vec() })
        .collect();
    let head = RequestHead { provider: provider.to_owned(), method: req.method().to_string(), path, headers, session, token };
    let (head_tx, head_rx) = oneshot::channel();
    let (body_tx, body_rx) = mpsc::unbounded_channel();
    host.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Pending { head: Some(head_tx), body: body_tx });
    // From here on, an agent that goes away (this future or the response stream dropped) cancels the
    // upstream request.
    let guard = CancelGuard { host: Arc::clone(&host), id, done: false };
    if !host.send(Frame::json(FrameKind::RequestHead, id, &head)) {
        return llm_error(provider, StatusCode::BAD_GATEWAY, "the sbx host left the LLM relay just now; try again".into());
    }
    let pump_host = Arc::clone(&host);
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) if b.is_empty() => {}
                Ok(b) => {
                    if !pump_host.send(Frame::new(FrameKind::RequestBody, id, b)) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the agent's request body broke off");
                    pump_host.send(Frame::empty(FrameKind::Cancel, id));
                    return;
                }
            }
        }
        pump_host.send(Frame::empty(FrameKind::RequestEnd, id));
    });
    let head = match head_rx.await {
        Ok(Ok(h)) => h,
        Ok(Err(why)) => return llm_error(provider, StatusCode::BAD_GATEWAY, why),
        Err(_) => return llm_error(provider, StatusCode::BAD_GATEWAY, "the sbx host dropped the request".into()),
    };
    let mut resp = Response::new(Body::from_stream(ResponseStream { rx: body_rx, guard }));
    *resp.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for h in head.headers {
        if is_hop_by_hop(&h.name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(&h.value)) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// Tells the host to stop a request whose agent went away before its answer ended.
struct CancelGuard {
    host: Arc<HostConn>,
    id: u64,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done && self.host.take(self.id).is_some() {
            self.host.send(Frame::empty(FrameKind::Cancel, self.id));
        }
    }
}

/// The answer's body: chunks as the host sends them.
struct ResponseStream {
    rx: mpsc::UnboundedReceiver<BodyChunk>,
    guard: CancelGuard,
}

impl Stream for ResponseStream {
    type Item = BodyChunk;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyChunk>> {
        let item = self.rx.poll_recv(cx);
        if let Poll::Ready(None) = item {
            self.guard.done = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_provider_and_the_session() {
        assert_eq!(split_target("anthropic/v1/messages"), Some((None, "anthropic", "/v1/messages".into())));
        assert_eq!(split_target("s/ses_1/openai/v1/responses"), Some((Some("ses_1".into()), "openai", "/v1/responses".into())));
        assert_eq!(split_target("anthropic"), Some((None, "anthropic", "/".into())));
        assert_eq!(split_target("gemini/v1"), None);
        assert!(is_model_request("/v1/llm/anthropic/v1/messages"));
        assert!(!is_model_request("/v1/llm/relay"));
    }
}
