//! The server: binding, shared state, recording each request and routing it to an API.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::recorded::{Api, Recorded};
use super::script::{is_conversation, resolve, Reply};
use super::wire::{json_response, models, not_found};
use super::{anthropic, chat, openai, DEFAULT_TEXT};

/// Decides whether a request is a conversation request (see [`FakeLlm::classify_with`]).
type Classifier = Arc<dyn Fn(&Recorded) -> bool + Send + Sync>;

pub(super) struct Shared {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Reply>,
    classifier: Mutex<Option<Classifier>>,
    requests: Mutex<Vec<Recorded>>,
    ids: AtomicU64,
    pub(super) cancel: CancellationToken,
    log: bool,
}

impl Shared {
    pub(super) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The running fake. Dropping it (or [`FakeLlm::stop`]) shuts it down, ending hung requests.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl FakeLlm {
    /// Starts on `127.0.0.1`, on a free port.
    pub async fn start() -> FakeLlm {
        Self::start_on(IpAddr::from([127, 0, 0, 1])).await
    }

    /// Starts on `ip` (e.g. [`docker_bridge_gateway`], so containers can reach it), on a free port.
    /// Panics when `ip` cannot be bound.
    pub async fn start_on(ip: IpAddr) -> FakeLlm {
        let listener =
            tokio::net::TcpListener::bind((ip, 0)).await.unwrap_or_else(|e| panic!("fake LLM: bind {ip}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(Reply::text(DEFAULT_TEXT)),
            classifier: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            ids: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            log: std::env::var_os("SBX_FAKE_LLM_LOG").is_some_and(|v| !v.is_empty() && v != "0"),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let shutdown = shared.cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            // As a real API's edge: streamed pieces go out at once (no Nagle delay on small writes).
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                eprintln!("fake LLM: server error: {e}");
            }
        });
        FakeLlm { addr, shared, task: Some(task) }
    }

    /// `http://ip:port`: the Anthropic base URL (`ANTHROPIC_BASE_URL`). OpenAI's is this + `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OpenAI base URL: [`FakeLlm::base_url`] + `/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply; conversation requests consume them in order.
    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().unwrap_or_else(|e| e.into_inner()).push_back(reply);
    }

    /// The reply to conversation requests once the script is empty (default: `Text("ok")`).
    /// E.g. `Reply::error(401)` for an agent that must fail however often it retries.
    pub fn set_default(&self, reply: Reply) {
        *self.shared.fallback.lock().unwrap_or_else(|e| e.into_inner()) = reply;
    }

    /// Replaces the conversation/side-request rule (default: [`is_conversation`]) for `/v1/messages`
    /// and `/v1/responses` requests; e.g. `|r| r.body.get("tools").is_some()` for a Claude Code run
    /// with `--tools ""`, whose main requests carry an empty `tools` array.
    pub fn classify_with(&self, f: impl Fn(&Recorded) -> bool + Send + Sync + 'static) {
        *self.shared.classifier.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(f));
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The requests that consumed (or would have consumed) a scripted reply.
    pub fn conversation_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.conversation).collect()
    }

    /// Scripted replies not consumed yet.
    pub fn pending(&self) -> usize {
        self.shared.script.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Shuts the server down: hung and streaming answers end, then it stops listening.
    pub async fn stop(mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take() {
            // Graceful shutdown finishes on its own once hung/streaming answers see the cancel; abort
            // anyway so a dropped fake never outlives its test for long.
            let abort = task.abort_handle();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    abort.abort();
                });
            } else {
                abort.abort();
            }
        }
    }
}

/// The IPv4 gateway of Docker's default `bridge` network, i.e. an address of this host that
/// containers on that network can reach (bind a [`FakeLlm`] there). Tries the network's IPAM
/// gateway, then the address of its bridge interface (`docker0`), then the first host of its subnet;
/// a candidate only counts when this host can bind it. `None` without Docker or with a remote engine.
pub fn docker_bridge_gateway() -> Option<IpAddr> {
    let out = std::process::Command::new("docker").args(["network", "inspect", "bridge"]).output().ok()?;
    let mut candidates: Vec<IpAddr> = Vec::new();
    if out.status.success() {
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let net = v.get(0)?;
        let configs = net.pointer("/IPAM/Config").and_then(Value::as_array).cloned().unwrap_or_default();
        for c in &configs {
            if let Some(ip) = c.get("Gateway").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()) {
                candidates.push(ip);
            }
        }
        let ifname = net
            .pointer("/Options/com.docker.network.bridge.name")
            .and_then(Value::as_str)
            .unwrap_or("docker0")
            .to_string();
        candidates.extend(interface_ipv4(&ifname));
        for c in &configs {
            if let Some(subnet) = c.get("Subnet").and_then(Value::as_str) {
                if let Some(Ok(std::net::IpAddr::V4(base))) = subnet.split('/').next().map(str::parse::<IpAddr>) {
                    let o = base.octets();
                    candidates.push(IpAddr::from([o[0], o[1], o[2], o[3].wrapping_add(1)]));
                }
            }
        }
    } else {
        candidates.extend(interface_ipv4("docker0"));
    }
    candidates.into_iter().filter(IpAddr::is_ipv4).find(|ip| std::net::TcpListener::bind((*ip, 0)).is_ok())
}

/// IPv4 addresses of a network interface, from `ip -4 -o addr show NAME`.
fn interface_ipv4(name: &str) -> Vec<IpAddr> {
    let Ok(out) = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", name]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "inet")
        .filter_map(|w| w[1].split('/').next()?.parse().ok())
        .collect()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &json!({"error": {"message": e.to_string()}}), None),
    };
    let bytes = decode_body(&parts.headers, bytes);
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let path = if path.is_empty() { "/".to_string() } else { path };
    let query = parts.uri.query().map(str::to_string);
    let headers = &parts.headers;
    let anthropic_header = headers.contains_key("anthropic-version");
    let api = if path.starts_with("/v1/messages") || anthropic_header { Api::Anthropic } else { Api::OpenAi };
    let auth = ["x-api-key", "authorization"]
        .iter()
        .any(|h| headers.get(*h).and_then(|v| v.to_str().ok()).is_some_and(|v| !v.trim().is_empty()));
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);

    enum Route {
        Messages,
        CountTokens,
        Responses,
        Chat,
        Models,
        Hello,
        NotFound,
    }
    let route = match (&parts.method, path.as_str()) {
        (&Method::POST, "/v1/messages") => Route::Messages,
        (&Method::POST, "/v1/messages/count_tokens") => Route::CountTokens,
        (&Method::POST, "/v1/responses") => Route::Responses,
        (&Method::POST, "/v1/chat/completions") => Route::Chat,
        (&Method::GET, "/v1/models") => Route::Models,
        (&Method::GET | &Method::HEAD, "/api/hello") => Route::Hello,
        _ => Route::NotFound,
    };
    let mut recorded = Recorded {
        api,
        method: parts.method.to_string(),
        path: path.clone(),
        query,
        auth,
        stream,
        conversation: false,
        headers: header_list(headers),
        body,
    };
    if matches!(route, Route::Messages | Route::Responses | Route::Chat) {
        let classifier = shared.classifier.lock().unwrap_or_else(|e| e.into_inner()).clone();
        recorded.conversation = match classifier {
            Some(f) => f(&recorded),
            None => is_conversation(&recorded),
        };
    }
    let conversation = recorded.conversation;
    shared.requests.lock().unwrap_or_else(|e| e.into_inner()).push(recorded.clone());

    let reply = if conversation {
        let next = shared.script.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let next = next.unwrap_or_else(|| shared.fallback.lock().unwrap_or_else(|e| e.into_inner()).clone());
        resolve(next, &recorded)
    } else {
        Reply::text(DEFAULT_TEXT)
    };
    if shared.log {
        eprintln!(
            "fake LLM: {} {}{} auth={} stream={} conversation={} model={:?} tools={} -> {:?}",
            recorded.method,
            recorded.path,
            recorded.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default(),
            recorded.auth,
            recorded.stream,
            recorded.conversation,
            recorded.model(),
            recorded.tool_names().len(),
            match route {
                Route::Messages | Route::Responses | Route::Chat => format!("{reply:?}"),
                Route::CountTokens => "count_tokens".into(),
                Route::Models => "models".into(),
                Route::Hello => "hello".into(),
                Route::NotFound => "404".into(),
            }
        );
    }

    let input_tokens = (bytes.len() / 4).max(1) as u64;
    match route {
        Route::Messages => anthropic::reply(&shared, &recorded, reply, input_tokens).await,
        Route::Responses => openai::reply(&shared, &recorded, reply, input_tokens).await,
        Route::Chat => chat::reply(&shared, &recorded, reply, input_tokens).await,
        Route::CountTokens => json_response(StatusCode::OK, &json!({"input_tokens": input_tokens}), None),
        Route::Models => models(api),
        // Claude Code pre-warms its connection with `HEAD {base}/api/hello` and ignores the answer.
        Route::Hello => json_response(StatusCode::OK, &json!({"message": "hello"}), None),
        Route::NotFound => not_found(api, &parts.method, &path),
    }
}

/// Undoes `Content-Encoding: gzip`/`deflate` (Claude Code can gzip request bodies, see
/// `CLAUDE_CODE_GZIP_REQUEST_BODY_LEVEL`); anything else is kept as is.
fn decode_body(headers: &HeaderMap, bytes: Bytes) -> Bytes {
    use std::io::Read;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    let mut out = Vec::new();
    let ok = match encoding {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).is_ok(),
        "deflate" => flate2::read::ZlibDecoder::new(&bytes[..]).read_to_end(&mut out).is_ok(),
        _ => false,
    };
    if ok {
        Bytes::from(out)
    } else {
        bytes
    }
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}
