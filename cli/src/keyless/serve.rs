//! Serving a keyless sandbox's LLM relay from this host: one WebSocket to its runtime (opened again
//! after it breaks), each request on it handled in its own task, the token renewed while attached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use sbx_agent::api::llm_relay::{error_body, is_credential, is_hop_by_hop, Frame, FrameKind, Header, RequestHead, ResponseHead};
use sbx_agent::client::Client;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::store::{AuditEnd, AuditStart};
use super::upstream::{request_model, UsageScanner};
use crate::output::Output;
use crate::state::{now_secs, State};

/// How long a model request may take to send its head upstream and get one back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A runtime that sends nothing (not even its pings, every 15 s) for this long is gone.
const SILENCE: Duration = Duration::from_secs(45);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What one serving host shares between its requests.
pub struct Relay {
    sandbox: String,
    state: Mutex<State>,
    http: reqwest::Client,
    keys: Mutex<HashMap<String, (String, String)>>,
    /// `sbx attach` prints a line per request; background serving only logs.
    out: Option<Output>,
}

impl Relay {
    /// A relay for `sandbox` with its own connection to the state database at `db`.
    pub fn new(sandbox: &str, db: &Path, out: Option<Output>) -> Result<Arc<Self>> {
        let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true).build().context("HTTP client")?;
        Ok(Arc::new(Self { sandbox: sandbox.to_owned(), state: Mutex::new(State::open(db)?), http, keys: Mutex::new(HashMap::new()), out }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, provider: &str) -> Result<(String, String)> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(provider) {
            return Ok(k.clone());
        }
        let k = super::real_key(provider)?;
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).insert(provider.to_owned(), k.clone());
        Ok(k)
    }

    /// Renews the token (a live one only); logged, never fatal.
    fn renew(&self) {
        if let Err(e) = self.state().renew_relay_token(&self.sandbox, now_secs()) {
            tracing::warn!(error = %e, "could not renew the relay token");
        }
    }
}

/// Serves until the runtime closes the relay or it breaks.
pub async fn serve_once(client: &Client, relay: &Arc<Relay>) -> Result<()> {
    let ws = client.llm_relay().await?;
    relay.renew();
    if let Some(out) = &relay.out {
        out.note(format!("attached: serving the LLM relay of `{}`", relay.sandbox));
    }
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if sink.send(Message::Binary(f.encode().into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let in_flight: Arc<Mutex<HashMap<u64, InFlight>>> = Arc::default();
    let token = relay.state().relay_token(&relay.sandbox)?;
    // Renew well within the lifetime (every half of it, at most a minute apart).
    let every = token.map(|t| Duration::from_secs((t.ttl_secs / 2).clamp(1, 60))).unwrap_or(Duration::from_secs(60));
    let mut renew = tokio::time::interval(every);
    renew.tick().await;
    let result = loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(SILENCE, stream.next()) => m,
            _ = renew.tick() => { relay.renew(); continue; }
        };
        let msg = match msg {
            Err(_) => break Err(anyhow::anyhow!("the runtime sent nothing for {} s", SILENCE.as_secs())),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break Ok(()),
            Ok(Some(Err(e))) => break Err(e.into()),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Binary(b) = msg else { continue };
        let frame = match Frame::decode(b) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a bad relay frame");
                continue;
            }
        };
        let id = frame.id;
        match frame.kind {
            FrameKind::RequestHead => {
                let head: RequestHead = match serde_json::from_slice(&frame.payload) {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = out_tx.send(Frame::new(FrameKind::ResponseError, id, format!("bad request head: {e}").into_bytes()));
                        continue;
                    }
                };
                let (body_tx, body_rx) = mpsc::unbounded_channel();
                let cancel = CancellationToken::new();
                in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(id, InFlight { body: Some(body_tx), cancel: cancel.clone() });
                let (relay, out, flights) = (Arc::clone(relay), out_tx.clone(), Arc::clone(&in_flight));
                tokio::spawn(async move {
                    handle(&relay, id, head, body_rx, &cancel, &out).await;
                    flights.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                });
            }
            FrameKind::RequestBody => {
                if let Some(tx) = in_flight.lock().unwrap_or_else(|e| e.into_inner()).get(&id).and_then(|f| f.body.as_ref()) {
                    let _ = tx.send(frame.payload);
                }
            }
            FrameKind::RequestEnd => {
                if let Some(f) = in_flight.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
                    f.body = None;
                }
            }
            FrameKind::Cancel => {
                if let Some(f) = in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                    f.cancel.cancel();
                }
            }
            other => tracing::debug!(kind = ?other, "ignoring a host-bound frame kind from the runtime"),
        }
    };
    for (_, f) in in_flight.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        f.cancel.cancel();
    }
    drop(out_tx);
    let _ = writer.await;
    result
}

/// Serves, and attaches again after the connection breaks (the runtime restarted, the network
/// blinked), until `stop`.
pub async fn serve_forever(client: Client, relay: Arc<Relay>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        let r = tokio::select! {
            r = serve_once(&client, &relay) => r,
            _ = stop.cancelled() => return,
        };
        match (&r, &relay.out) {
            (Err(e), Some(out)) => out.note(format!("LLM relay of `{}`: {e:#}; attaching again", relay.sandbox)),
            (Err(e), None) => tracing::info!(error = %format!("{e:#}"), "LLM relay connection ended; attaching again"),
            (Ok(()), Some(out)) => out.note(format!("LLM relay of `{}`: the runtime closed it; attaching again", relay.sandbox)),
            (Ok(()), None) => tracing::info!("LLM relay closed by the runtime; attaching again"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(250);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

struct InFlight {
    body: Option<mpsc::UnboundedSender<Bytes>>,
    cancel: CancellationToken,
}

/// Answers a request with an error the agent reads (its vendor's error shape).
fn refuse(out: &mpsc::UnboundedSender<Frame>, id: u64, provider: &str, status: u16, message: &str) {
    let head = ResponseHead { status, headers: vec![Header { name: "content-type".into(), value: b"application/json".to_vec() }] };
    let _ = out.send(Frame::json(FrameKind::ResponseHead, id, &head));
    let _ = out.send(Frame::new(FrameKind::ResponseBody, id, error_body(provider, status, message)));
    let _ = out.send(Frame::empty(FrameKind::ResponseEnd, id));
}

/// Token and limits: the audit row of an admitted request, or the refusal (already recorded).
fn admit(relay: &Relay, head: &RequestHead, started_ms: u64) -> Result<i64, (u16, String)> {
    let state = relay.state();
    let start = |admitted| AuditStart {
        sandbox: &relay.sandbox,
        session: head.session.as_deref(),
        provider: &head.provider,
        method: &head.method,
        path: &head.path,
        started_ms,
        admitted,
    };
    let refused = |status: u16, message: String| {
        if let Ok(row) = state.audit_start(&start(false)) {
            let _ = state.audit_finish(row, &AuditEnd { status, error: Some(message.clone()), ..Default::default() });
        }
        Err((status, message))
    };
    let token = match state.relay_token(&relay.sandbox) {
        Ok(t) => t,
        Err(e) => return refused(500, format!("sbx could not read its state: {e:#}")),
    };
    if let Some(why) = super::refusal(token.as_ref(), &head.token, started_ms / 1000) {
        return refused(401, why);
    }
    let Some(token) = token else { return refused(401, "no relay token".into()) };
    if let Some(rpm) = token.rpm {
        let recent = state.admitted_since(&relay.sandbox, started_ms.saturating_sub(60_000)).unwrap_or(0);
        if recent >= u64::from(rpm) {
            return refused(
                429,
                format!(
                    "sbx rate limit: sandbox `{}` may make {rpm} model requests per minute and made {recent} in the last minute; \
                     wait, or make it with a higher --keyless-rpm",
                    relay.sandbox
                ),
            );
        }
    }
    if let Some(max) = token.max_tokens {
        let used = state.tokens_used(&relay.sandbox).unwrap_or(0);
        if used >= max {
            return refused(429, format!("sbx token budget: sandbox `{}` has used {used} of its {max} tokens (--keyless-max-tokens)", relay.sandbox));
        }
    }
    state.audit_start(&start(true)).map_err(|e| (500, format!("sbx could not write its audit record: {e:#}")))
}

async fn handle(
    relay: &Relay,
    id: u64,
    head: RequestHead,
    body_rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: &CancellationToken,
    out: &mpsc::UnboundedSender<Frame>,
) {
    let started = Instant::now();
    let row = match admit(relay, &head, now_ms()) {
        Ok(row) => row,
        Err((status, message)) => {
            report(relay, &head, status, None, None, None, started, Some(&message));
            refuse(out, id, &head.provider, status, &message);
            return;
        }
    };
    let mut end = AuditEnd::default();
    forward(relay, id, &head, body_rx, cancel, out, started, &mut end).await;
    end.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = relay.state().audit_finish(row, &end) {
        tracing::warn!(error = %e, "could not finish the audit record");
    }
    report(relay, &head, end.status, end.model.as_deref(), end.input_tokens, end.output_tokens, started, end.error.as_deref());
}

#[allow(clippy::too_many_arguments)]
fn report(
    relay: &Relay,
    head: &RequestHead,
    status: u16,
    model: Option<&str>,
    input: Option<u64>,
    output: Option<u64>,
    started: Instant,
    error: Option<&str>,
) {
    let ms = started.elapsed().as_millis();
    let path = head.path.split('?').next().unwrap_or("");
    let tokens = match (input, output) {
        (None, None) => String::new(),
        (i, o) => format!(" {}→{} tokens", i.unwrap_or(0), o.unwrap_or(0)),
    };
    let line = format!(
        "{} {} {} {status}{tokens} {ms} ms{}{}",
        head.method,
        path,
        model.unwrap_or("-"),
        head.session.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
        error.map(|e| format!(": {e}")).unwrap_or_default()
    );
    match &relay.out {
        Some(out) => out.note(line),
        None => tracing::info!(sandbox = %relay.sandbox, "{line}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    relay: &Relay,
    id: u64,
    head: &RequestHead,
    body_rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: &CancellationToken,
    out: &mpsc::UnboundedSender<Frame>,
    started: Instant,
    end: &mut AuditEnd,
) {
    let fail = |end: &mut AuditEnd, status: u16, message: String| {
        refuse(out, id, &head.provider, status, &message);
        end.status = status;
        end.error = Some(message);
    };
    let (var, key) = match relay.key(&head.provider) {
        Ok(k) => k,
        Err(e) => return fail(end, 502, format!("sbx has no key to relay with: {e:#}")),
    };
    let url = format!("{}{}", super::upstream_url(&head.provider), head.path);
    let Ok(method) = reqwest::Method::from_bytes(head.method.as_bytes()) else {
        return fail(end, 400, format!("bad method `{}`", head.method));
    };
    let mut rb = relay.http.request(method, &url);
    let mut beta: Option<Vec<u8>> = None;
    for h in &head.headers {
        // The upstream's answer is read for usage on the way: ask for it uncompressed.
        if is_hop_by_hop(&h.name) || is_credential(&h.name) || h.name.eq_ignore_ascii_case("accept-encoding") {
            continue;
        }
        if h.name.eq_ignore_ascii_case("anthropic-beta") {
            beta = Some(h.value.clone());
            continue;
        }
        rb = rb.header(h.name.as_str(), h.value.as_slice());
    }
    rb = match (head.provider.as_str(), var.as_str()) {
        // A subscription login's OAuth token is a bearer token that Anthropic accepts with this beta flag.
        ("anthropic", "CLAUDE_CODE_OAUTH_TOKEN") => {
            let mut b = beta.take().unwrap_or_default();
            if !b.windows(5).any(|w| w == b"oauth") {
                if !b.is_empty() {
                    b.push(b',');
                }
                b.extend_from_slice(b"oauth-2025-04-20");
            }
            rb.bearer_auth(&key).header("anthropic-beta", b)
        }
        ("anthropic", _) => rb.header("x-api-key", &key),
        _ => rb.bearer_auth(&key),
    };
    if let Some(b) = beta {
        rb = rb.header("anthropic-beta", b);
    }
    // The request body goes up as the agent sends it; a copy of its start names the model.
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let copy = Arc::clone(&seen);
    let body = tokio_stream::wrappers::UnboundedReceiverStream::new(body_rx).map(move |b: Bytes| {
        let mut c = copy.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() < (1 << 20) {
            c.extend_from_slice(&b);
        }
        Ok::<_, std::io::Error>(b)
    });
    let rb = rb.body(reqwest::Body::wrap_stream(body));
    let resp = tokio::select! {
        r = rb.send() => r,
        _ = cancel.cancelled() => {
            end.status = 499;
            end.error = Some("the agent went away before the answer started".into());
            return;
        }
    };
    end.model = request_model(&seen.lock().unwrap_or_else(|e| e.into_inner()));
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return fail(end, 502, format!("sbx could not reach the model API at {url}: {}", chain(&e))),
    };
    end.status = resp.status().as_u16();
    end.latency_ms = Some(started.elapsed().as_millis() as u64);
    let headers = resp
        .headers()
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n.as_str()))
        .map(|(n, v)| Header { name: n.as_str().to_owned(), value: v.as_bytes().to_vec() })
        .collect();
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let _ = out.send(Frame::json(FrameKind::ResponseHead, id, &ResponseHead { status: end.status, headers }));
    let mut usage = UsageScanner::new(&content_type);
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c,
            _ = cancel.cancelled() => {
                end.error = Some("the agent went away mid-answer".into());
                break;
            }
        };
        match chunk {
            Ok(Some(b)) => {
                usage.feed(&b);
                if out.send(Frame::new(FrameKind::ResponseBody, id, b)).is_err() {
                    end.error = Some("the relay connection closed mid-answer".into());
                    break;
                }
            }
            Ok(None) => {
                let _ = out.send(Frame::empty(FrameKind::ResponseEnd, id));
                break;
            }
            Err(e) => {
                let why = format!("the model API's answer broke off: {}", chain(&e));
                let _ = out.send(Frame::new(FrameKind::ResponseError, id, why.clone().into_bytes()));
                end.error = Some(why);
                break;
            }
        }
    }
    usage.finish();
    end.input_tokens = usage.input_tokens;
    end.output_tokens = usage.output_tokens;
    if usage.model.is_some() {
        end.model = usage.model;
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// The relays a command serves while it runs (`sbx session`, `sbx prompt`, `sbx run`): one per
/// keyless sandbox it talks to, stopped when the command ends.
#[derive(Default)]
pub struct Attachments {
    db: Option<PathBuf>,
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Attachments {
    /// Serving relays, with their own connections to the state database at `db`.
    pub fn new(db: &Path) -> Self {
        Self { db: Some(db.to_path_buf()), running: Mutex::new(HashMap::new()) }
    }

    /// Whether `sandbox`'s relay is served by this process.
    pub fn serves(&self, sandbox: &str) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).contains_key(sandbox)
    }

    /// Starts serving `sandbox`'s relay in the background unless it is served already.
    pub fn ensure(&self, sandbox: &str, client: &Client) -> Result<()> {
        let Some(db) = &self.db else { return Ok(()) };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(sandbox) {
            return Ok(());
        }
        let relay = Relay::new(sandbox, db, None)?;
        let stop = CancellationToken::new();
        tokio::spawn(serve_forever(client.clone(), relay, stop.clone()));
        running.insert(sandbox.to_owned(), stop);
        Ok(())
    }
}

impl Drop for Attachments {
    fn drop(&mut self) {
        for (_, stop) in self.running.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            stop.cancel();
        }
    }
}
