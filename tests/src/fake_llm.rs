//! A scripted fake LLM server that the real `claude` (Anthropic Messages API) and `codex` (OpenAI
//! Responses API) binaries can talk to, on loopback or on the Docker bridge gateway.
//!
//! ```ignore
//! let llm = FakeLlm::start().await;
//! llm.push(Reply::tool("Write", json!({"file_path": "/tmp/x", "content": "hi"})));
//! llm.push(Reply::text("done"));
//! // claude: ANTHROPIC_BASE_URL=llm.base_url()   codex: base_url = llm.base_url() + "/v1"
//! ```
//!
//! # Which requests consume the script
//!
//! Only *conversation* requests take the next scripted [`Reply`]; everything else is a *side
//! request* and gets a harmless default text (`"ok"`) without touching the script. The rule
//! ([`is_conversation`], replaceable with [`FakeLlm::classify_with`]): the body offers at least one
//! tool. When the script is empty, conversation requests get the fallback reply ([`FakeLlm::set_default`],
//! `"ok"` unless changed), never a hang, so an agent that makes one request more than expected
//! still finishes.
//!
//! # Observed against the real binaries (Claude Code 2.1.330, codex-cli 0.163.0)
//!
//! Claude Code (`ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`; key sent as `x-api-key`):
//! - Each turn is `POST /v1/messages?beta=true`, `"stream": true`, model `claude-opus-5-5` by default,
//!   with its 12 tools (`Agent`, `Bash`, `Edit`, `Read`, `Write`, `Skill`, `ToolSearch`, ...). The tool
//!   result comes back as a `tool_result` block in the last user message of the next request.
//! - Side requests: `HEAD /api/hello` (a connection pre-warm, answer ignored; not sent with
//!   `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`). Helper queries (session title, tool-use
//!   summaries, ...) use the same streaming pipeline with `"tools": []` and no `thinking`; one was
//!   seen with `CLAUDE_CODE_EMIT_TOOL_USE_SUMMARIES=1`, concurrent with the main turn. The quota probe
//!   (`max_tokens: 1`, "quota") sends no `tools`. In `-p` runs, with or without
//!   `--input-format stream-json`, no other side request was seen. With `--tools ""` the main agent
//!   also sends `"tools": []`: use `classify_with(|r| r.body.get("thinking").is_some())` there.
//! - Retries: *every* API error is retried, 401 included, `CLAUDE_CODE_MAX_RETRIES` times (default
//!   10, clamped to 15; `0` = none), backoff ~0.6 s doubling up to ~32-38 s, `Retry-After` honoured;
//!   each retry prints a `system`/`api_retry` line (`attempt`, `retry_delay_ms`, `error_status`). A
//!   persistent 401 takes ~3 min with the defaults. The failed turn's `result` line still says
//!   `subtype: "success"` but `is_error: true`, `api_error_status`, `terminal_reason: "api_error"`;
//!   the process exits 1.
//! - Timeouts: `API_TIMEOUT_MS` bounds a request that gets no response ([`Reply::Hang`]; result
//!   "Request timed out"). A stream that opened and went silent ([`Reply::Stall`]) is only abandoned by
//!   the idle watchdog, whose timeout has a 5-minute floor (`CLAUDE_STREAM_IDLE_TIMEOUT_MS` below
//!   300000 is raised to it): kill or interrupt instead.
//! - `CLAUDE_CODE_GZIP_REQUEST_BODY_LEVEL` would gzip request bodies (off by default); the fake
//!   decodes `Content-Encoding: gzip` anyway.
//!
//! Codex (`config.toml`: `model_provider = "fake"`, `[model_providers.fake]` with `base_url =
//! <base_url>/v1`, `wire_api = "responses"`, `env_key`; key sent as `Authorization: Bearer`):
//! - Each turn is `POST /v1/responses`, `"stream": true`, with tools `exec_command` (arguments
//!   `cmd` (required), `workdir`, `login`, `shell`, `tty`, `yield_time_ms`, `max_output_tokens`,
//!   `sandbox_permissions`, `justification`, `prefix_rule`), `write_stdin`,
//!   `request_user_input`, `view_image`, `multi_agent_v1` (a `namespace` tool), `get_goal`,
//!   `create_goal`, `update_goal`, `web_search` (no `shell`, no `apply_patch` for an unknown model).
//!   The result comes back as a `function_call_output` item whose `output` is a string
//!   (`"Chunk ID: ..\nWall time: ..\nProcess exited with code 0\n...Output:\n..."`). No other
//!   endpoint was called (no `/v1/models`); an unknown model only yields a warning item.
//! - Retries: a failed stream is retried `stream_max_retries` times (default 5, backoff 0.2 s
//!   doubling, 401 included; `exec --json` prints `error` "Reconnecting... n/N" items), and within
//!   each attempt 429/5xx are retried `request_max_retries` times (default 4). Both are provider
//!   keys; set them to 0 for fast failures. A failed turn prints `turn.failed` and exits 1.
//! - Timeouts: `stream_idle_timeout_ms` (provider key) ends a silent open stream ([`Reply::Stall`]:
//!   "idle timeout waiting for SSE"); a request that never gets response headers ([`Reply::Hang`])
//!   is waited for indefinitely.
//!
//! # Endpoints
//!
//! `POST /v1/messages` (streaming or plain JSON), `POST /v1/messages/count_tokens` (an estimate),
//! `POST /v1/responses` (streaming or plain JSON), `GET /v1/models` (Anthropic or OpenAI shape, by the
//! `anthropic-version` header), `HEAD|GET /api/hello`; anything else is a JSON 404 in the API's error
//! shape. Request handling never panics. `SBX_FAKE_LLM_LOG=1` prints one line per request on stderr.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The default answer to side requests and to conversation requests once the script is empty.
pub const DEFAULT_TEXT: &str = "ok";

/// One scripted answer to a conversation request.
#[derive(Clone)]
pub enum Reply {
    /// Text streamed as several deltas; stop reason `end_turn` (Anthropic) / status `completed` (OpenAI).
    Text(String),
    /// A tool call. Anthropic: a `tool_use` block whose input arrives as `input_json_delta` pieces,
    /// stop reason `tool_use`. OpenAI: a `function_call` output item with argument deltas (or a
    /// `custom_tool_call` when the request offers `name` as a `custom` tool; `input` is then the raw
    /// string, e.g. an apply_patch body).
    ToolUse { name: String, input: Value },
    /// The real API's error body for `status` (401, 429, 500, ...), with `Retry-After` when given.
    Error { status: u16, retry_after: Option<u32> },
    /// Accept the request and never answer, not even the status line (until the server stops).
    /// Other requests are unaffected. Claude Code gives up after `API_TIMEOUT_MS`; codex 0.163 waits
    /// forever (its `stream_idle_timeout_ms` only starts once headers arrived) — see [`Reply::Stall`].
    Hang,
    /// Answer `200` and open the stream (`message_start` / `response.created`), then go silent
    /// until the server stops: trips the clients' stream idle timeouts.
    Stall,
    /// `text` streamed as `chunks` deltas with `delay_ms` before each.
    SlowText { text: String, chunks: usize, delay_ms: u64 },
    /// Decide when the request arrives (e.g. call a tool by a name read from the request).
    With(Responder),
}

/// A reply computed from the request it answers; see [`Reply::with`].
#[derive(Clone)]
pub struct Responder(Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>);

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Responder(..)")
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Reply::ToolUse { name, input } => {
                f.debug_struct("ToolUse").field("name", name).field("input", input).finish()
            }
            Reply::Error { status, retry_after } => {
                f.debug_struct("Error").field("status", status).field("retry_after", retry_after).finish()
            }
            Reply::Hang => f.write_str("Hang"),
            Reply::Stall => f.write_str("Stall"),
            Reply::SlowText { text, chunks, delay_ms } => f
                .debug_struct("SlowText")
                .field("text", text)
                .field("chunks", chunks)
                .field("delay_ms", delay_ms)
                .finish(),
            Reply::With(r) => f.debug_tuple("With").field(r).finish(),
        }
    }
}

impl Reply {
    /// [`Reply::Text`].
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// [`Reply::ToolUse`].
    pub fn tool(name: impl Into<String>, input: Value) -> Self {
        Reply::ToolUse { name: name.into(), input }
    }

    /// [`Reply::Error`] without `Retry-After`.
    pub fn error(status: u16) -> Self {
        Reply::Error { status, retry_after: None }
    }

    /// [`Reply::With`]: `f` sees the request and picks the reply.
    pub fn with(f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Reply::With(Responder(Arc::new(f)))
    }
}

/// Which API a request spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/messages*`, or anything with an `anthropic-version` header.
    Anthropic,
    /// `/v1/responses`, `/v1/chat/completions`, and other `/v1/*` requests without `anthropic-version`.
    OpenAi,
}

/// A request the fake saw (recorded on arrival, before it is answered).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The API it spoke.
    pub api: Api,
    /// HTTP method.
    pub method: String,
    /// Path without the query, e.g. `/v1/messages`.
    pub path: String,
    /// The query string, e.g. `beta=true`.
    pub query: Option<String>,
    /// Whether a non-empty `x-api-key` or `Authorization` header was present.
    pub auth: bool,
    /// Whether the body asked for a streamed answer (`"stream": true`).
    pub stream: bool,
    /// Whether this request took a reply from the script (see the module docs).
    pub conversation: bool,
    /// The request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when empty, a JSON string holding the raw text when not JSON).
    pub body: Value,
}

/// A tool result found in a request: Anthropic `tool_result` or OpenAI `function_call_output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// `tool_use_id` (Anthropic) or `call_id` (OpenAI).
    pub id: String,
    /// The result text (text blocks joined with newlines).
    pub content: String,
    /// Anthropic `is_error`; OpenAI `success == false` when the output carries that field.
    pub is_error: bool,
}

impl Recorded {
    /// A header's value (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `model` field of the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Names of the tools offered in the request (`tools[].name`; a tool without a name, like
    /// OpenAI's `local_shell` or `web_search`, by its `type`).
    pub fn tool_names(&self) -> Vec<String> {
        tools_of(&self.body)
            .iter()
            .filter_map(|t| t.get("name").or_else(|| t.get("type")).and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    /// The tool definition named `name`, when offered.
    pub fn tool(&self, name: &str) -> Option<&Value> {
        tools_of(&self.body).iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The last `tool_result` block in an Anthropic request's messages.
    pub fn last_tool_result(&self) -> Option<ToolResult> {
        let messages = self.body.get("messages")?.as_array()?;
        messages.iter().rev().find_map(|m| {
            let blocks = m.get("content")?.as_array()?;
            blocks.iter().rev().find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")).map(|b| {
                ToolResult {
                    id: str_field(b, "tool_use_id"),
                    content: flatten_text(b.get("content").unwrap_or(&Value::Null)),
                    is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                }
            })
        })
    }

    /// The last `function_call_output` (or `custom_tool_call_output`) item in an OpenAI request's input.
    pub fn function_call_output(&self) -> Option<ToolResult> {
        let input = self.body.get("input")?.as_array()?;
        input
            .iter()
            .rev()
            .find(|i| {
                matches!(
                    i.get("type").and_then(Value::as_str),
                    Some("function_call_output" | "custom_tool_call_output")
                )
            })
            .map(|i| {
                let output = i.get("output").unwrap_or(&Value::Null);
                ToolResult {
                    id: str_field(i, "call_id"),
                    content: flatten_text(output),
                    is_error: output.get("success").and_then(Value::as_bool) == Some(false),
                }
            })
    }

    /// The text of the last user message (Anthropic `messages`, OpenAI `input`), if any.
    pub fn last_user_text(&self) -> Option<String> {
        let list = self.body.get("messages").or_else(|| self.body.get("input"))?.as_array()?;
        list.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")).map(|m| {
            match m.get("content") {
                Some(Value::Array(blocks)) => blocks
                    .iter()
                    .filter(|b| matches!(b.get("type").and_then(Value::as_str), Some("text" | "input_text")))
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some(c) => flatten_text(c),
                None => String::new(),
            }
        })
    }
}

fn tools_of(body: &Value) -> &[Value] {
    body.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// A string as is; text blocks (`{"type":"text"|"output_text"|"input_text","text":..}`) joined by
/// newlines; an object with an `output`/`content` field by that field; anything else as JSON.
fn flatten_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i.get("text") {
                Some(Value::String(t)) => t.clone(),
                _ => flatten_text(i),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Object(o) => match o.get("output").or_else(|| o.get("content")) {
            Some(inner) => flatten_text(inner),
            None => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// Decides whether a request is a conversation request (see [`FakeLlm::classify_with`]).
type Classifier = Arc<dyn Fn(&Recorded) -> bool + Send + Sync>;

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Reply>,
    classifier: Mutex<Option<Classifier>>,
    requests: Mutex<Vec<Recorded>>,
    ids: AtomicU64,
    cancel: CancellationToken,
    log: bool,
}

impl Shared {
    fn next_id(&self) -> u64 {
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

// ---- request handling ------------------------------------------------------------------------

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
        Models,
        Hello,
        NotFound,
    }
    let route = match (&parts.method, path.as_str()) {
        (&Method::POST, "/v1/messages") => Route::Messages,
        (&Method::POST, "/v1/messages/count_tokens") => Route::CountTokens,
        (&Method::POST, "/v1/responses") => Route::Responses,
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
    if matches!(route, Route::Messages | Route::Responses) {
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
                Route::Messages | Route::Responses => format!("{reply:?}"),
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

/// The default rule: a `/v1/messages` or `/v1/responses` request is a conversation request when
/// its body offers at least one tool. Observed: Claude Code 2.1.330's main agent sends its 12 tools
/// (`Agent`, `Bash`, `Edit`, `Read`, `Write`, ...) on every turn; its helper queries go through the
/// same streaming pipeline but with `"tools": []` (seen: `tool_use_summary_generation` with
/// `CLAUDE_CODE_EMIT_TOOL_USE_SUMMARIES=1`, concurrent with the main turn) or without `tools` (the
/// non-streaming `max_tokens: 1` "quota" probe). Codex 0.163 sends its tools on every turn.
pub fn is_conversation(req: &Recorded) -> bool {
    !tools_of(&req.body).is_empty()
}

/// Resolves [`Reply::With`] (a responder may itself answer `With`; bounded).
fn resolve(mut reply: Reply, req: &Recorded) -> Reply {
    for _ in 0..8 {
        match reply {
            Reply::With(Responder(f)) => reply = f(req),
            other => return other,
        }
    }
    Reply::text(DEFAULT_TEXT)
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

fn json_response(status: StatusCode, body: &Value, retry_after: Option<u32>) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

fn models(api: Api) -> Response {
    let body = match api {
        Api::Anthropic => json!({
            "data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                      "created_at": "2025-09-29T00:00:00Z"}],
            "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5",
        }),
        Api::OpenAi => json!({
            "object": "list",
            "data": [{"id": "gpt-test", "object": "model", "created": 1_700_000_000, "owned_by": "fake"}],
        }),
    };
    json_response(StatusCode::OK, &body, None)
}

fn not_found(api: Api, method: &Method, path: &str) -> Response {
    let message = format!("fake LLM: no route for {method} {path}");
    let body = match api {
        Api::Anthropic => json!({"type": "error", "error": {"type": "not_found_error", "message": message}}),
        Api::OpenAi => {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "unknown_url"}})
        }
    };
    json_response(StatusCode::NOT_FOUND, &body, None)
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// One server-sent event, sent after `delay`.
struct Event {
    name: String,
    data: Value,
    delay: Duration,
}

fn ev(name: &str, data: Value) -> Event {
    Event { name: name.to_string(), data, delay: Duration::ZERO }
}

/// Streams `events` as `event: NAME\ndata: JSON\n\n`, honouring delays; ends early when the
/// client goes away or the server stops.
fn sse_response(shared: &Shared, events: Vec<Event>, extra: &[(&'static str, String)]) -> Response {
    sse_response_then(shared, events, extra, false)
}

/// [`sse_response`], and with `hold` the stream then stays open, silent, until the server stops.
fn sse_response_then(shared: &Shared, events: Vec<Event>, extra: &[(&'static str, String)], hold: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let cancel = shared.cancel.clone();
    tokio::spawn(async move {
        for e in events {
            if !e.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(e.delay) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            let chunk = format!("event: {}\ndata: {}\n\n", e.name, e.data);
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
        if hold {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tx.closed() => {}
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    resp
}

/// Waits until the server stops, then answers 503 (the client normally gives up first).
async fn hang(shared: &Shared) -> Response {
    shared.cancel.cancelled().await;
    json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": {"message": "fake LLM stopped"}}), None)
}

/// `text` in `n` pieces on char boundaries (none for an empty text).
fn split_chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn output_tokens(text: &str) -> u64 {
    (text.len() / 4).max(1) as u64
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The Anthropic Messages API (`POST /v1/messages`).
mod anthropic {
    use super::*;

    const TEXT_CHUNKS: usize = 3;

    pub(super) async fn reply(shared: &Shared, req: &Recorded, reply: Reply, input_tokens: u64) -> Response {
        let model = req.model().unwrap_or("claude-sonnet-4-5").to_string();
        let id = format!("msg_fake{:020}", shared.next_id());
        let request_id = format!("req_fake{:020}", shared.next_id());
        let (text, chunks, delay) = match reply {
            Reply::Error { status, retry_after } => return error(status, retry_after, &request_id),
            Reply::Hang => return hang(shared).await,
            Reply::Stall => {
                let events = vec![message_start(&id, &model, input_tokens), ev("ping", json!({"type": "ping"}))];
                let events = if req.stream { events } else { Vec::new() };
                return sse_response_then(shared, events, &[("request-id", request_id)], true);
            }
            Reply::ToolUse { name, input } => {
                let tool_id = format!("toolu_fake{:016}", shared.next_id());
                return tool_use(shared, req.stream, &id, &request_id, &model, input_tokens, &tool_id, &name, &input);
            }
            Reply::Text(t) => (t, TEXT_CHUNKS, Duration::ZERO),
            Reply::SlowText { text, chunks, delay_ms } => (text, chunks, Duration::from_millis(delay_ms)),
            Reply::With(_) => (DEFAULT_TEXT.to_string(), TEXT_CHUNKS, Duration::ZERO),
        };
        let out = output_tokens(&text);
        if !req.stream {
            let pieces = split_chunks(&text, chunks).len() as u32;
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay * pieces) => {}
                    _ = shared.cancel.cancelled() => {}
                }
            }
            let content = json!([{"type": "text", "text": text}]);
            return message_json(&id, &request_id, &model, content, "end_turn", input_tokens, out);
        }
        let mut events = vec![message_start(&id, &model, input_tokens), ev("ping", json!({"type": "ping"}))];
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in split_chunks(&text, chunks) {
            let mut e = ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            );
            e.delay = delay;
            events.push(e);
        }
        events.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        events.extend(message_end("end_turn", out));
        sse_response(shared, events, &[("request-id", request_id)])
    }

    #[allow(clippy::too_many_arguments)]
    fn tool_use(
        shared: &Shared,
        stream: bool,
        id: &str,
        request_id: &str,
        model: &str,
        input_tokens: u64,
        tool_id: &str,
        name: &str,
        input: &Value,
    ) -> Response {
        let json_text = input.to_string();
        let out = output_tokens(&json_text) + 10;
        if !stream {
            let content = json!([{"type": "tool_use", "id": tool_id, "name": name, "input": input}]);
            return message_json(id, request_id, model, content, "tool_use", input_tokens, out);
        }
        let mut events = vec![message_start(id, model, input_tokens), ev("ping", json!({"type": "ping"}))];
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
        ));
        // The real API opens with an empty partial_json, then the JSON text in pieces.
        let pieces = std::iter::once(String::new()).chain(split_chunks(&json_text, 3));
        for piece in pieces {
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        events.extend(message_end("tool_use", out));
        sse_response(shared, events, &[("request-id", request_id.to_string())])
    }

    fn usage(input_tokens: u64, output_tokens: u64) -> Value {
        json!({
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }

    fn message_start(id: &str, model: &str, input_tokens: u64) -> Event {
        ev(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage(input_tokens, 1),
            }}),
        )
    }

    fn message_end(stop_reason: &str, output_tokens: u64) -> Vec<Event> {
        vec![
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                       "usage": {"output_tokens": output_tokens}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ]
    }

    #[allow(clippy::too_many_arguments)]
    fn message_json(
        id: &str,
        request_id: &str,
        model: &str,
        content: Value,
        stop_reason: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Response {
        let body = json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": null, "usage": usage(input_tokens, output_tokens),
        });
        let mut resp = json_response(StatusCode::OK, &body, None);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("request-id", v);
        }
        resp
    }

    /// The real API's error bodies (docs.anthropic.com "Errors").
    pub(super) fn error(status: u16, retry_after: Option<u32>, request_id: &str) -> Response {
        let (kind, message) = match status {
            400 => ("invalid_request_error", "There was an issue with the format or content of your request."),
            401 => ("authentication_error", "invalid x-api-key"),
            403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
            404 => ("not_found_error", "The requested resource could not be found."),
            413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
            429 => ("rate_limit_error", "This request would exceed the rate limit for your organization."),
            529 => ("overloaded_error", "Overloaded"),
            _ => ("api_error", "Internal server error"),
        };
        let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id});
        let mut resp = json_response(status_of(status), &body, retry_after);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("request-id", v);
        }
        resp
    }
}

/// The OpenAI Responses API (`POST /v1/responses`).
mod openai {
    use super::*;

    const TEXT_CHUNKS: usize = 3;

    /// Numbers events (`sequence_number`) as the real API does.
    struct Seq(u64);

    impl Seq {
        fn ev(&mut self, name: &str, mut data: Value) -> Event {
            if let Some(o) = data.as_object_mut() {
                o.insert("type".into(), json!(name));
                o.insert("sequence_number".into(), json!(self.0));
            }
            self.0 += 1;
            ev(name, data)
        }
    }

    pub(super) async fn reply(shared: &Shared, req: &Recorded, reply: Reply, input_tokens: u64) -> Response {
        let model = req.model().unwrap_or("gpt-test").to_string();
        let resp_id = format!("resp_fake{:020}", shared.next_id());
        let request_id = format!("req_fake{:020}", shared.next_id());
        let (item, events_mid, out, delay) = match reply {
            Reply::Error { status, retry_after } => return error(status, retry_after, &request_id),
            Reply::Hang => return hang(shared).await,
            Reply::Stall => {
                let created = json!({"id": resp_id, "object": "response", "created_at": now_secs(),
                                     "status": "in_progress", "model": model, "output": []});
                let mut seq = Seq(0);
                let events = vec![
                    seq.ev("response.created", json!({"response": created.clone()})),
                    seq.ev("response.in_progress", json!({"response": created})),
                ];
                let events = if req.stream { events } else { Vec::new() };
                return sse_response_then(shared, events, &[("x-request-id", request_id)], true);
            }
            Reply::ToolUse { name, input } => {
                let custom = req.tool(&name).and_then(|t| t.get("type")).and_then(Value::as_str) == Some("custom");
                let call_id = format!("call_fake{:016}", shared.next_id());
                if custom {
                    let text = match &input {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let item_id = format!("ctc_fake{:016}", shared.next_id());
                    let item = json!({"id": item_id, "type": "custom_tool_call", "status": "completed",
                                      "call_id": call_id, "name": name, "input": text});
                    let mut mid = vec![(
                        "response.output_item.added",
                        json!({"output_index": 0, "item": {"id": item_id, "type": "custom_tool_call",
                               "status": "in_progress", "call_id": call_id, "name": name, "input": ""}}),
                    )];
                    for piece in split_chunks(&text, 3) {
                        mid.push((
                            "response.custom_tool_call_input.delta",
                            json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                        ));
                    }
                    mid.push((
                        "response.custom_tool_call_input.done",
                        json!({"item_id": item_id, "output_index": 0, "input": text}),
                    ));
                    (item, mid, output_tokens(&text) + 10, Duration::ZERO)
                } else {
                    let args = match &input {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let item_id = format!("fc_fake{:016}", shared.next_id());
                    let item = json!({"id": item_id, "type": "function_call", "status": "completed",
                                      "arguments": args, "call_id": call_id, "name": name});
                    let mut mid = vec![(
                        "response.output_item.added",
                        json!({"output_index": 0, "item": {"id": item_id, "type": "function_call",
                               "status": "in_progress", "arguments": "", "call_id": call_id, "name": name}}),
                    )];
                    for piece in split_chunks(&args, 3) {
                        mid.push((
                            "response.function_call_arguments.delta",
                            json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                        ));
                    }
                    mid.push((
                        "response.function_call_arguments.done",
                        json!({"item_id": item_id, "output_index": 0, "arguments": args}),
                    ));
                    (item, mid, output_tokens(&args) + 10, Duration::ZERO)
                }
            }
            Reply::Text(t) => text_item(shared, t, TEXT_CHUNKS, Duration::ZERO),
            Reply::SlowText { text, chunks, delay_ms } => {
                text_item(shared, text, chunks, Duration::from_millis(delay_ms))
            }
            Reply::With(_) => text_item(shared, DEFAULT_TEXT.to_string(), TEXT_CHUNKS, Duration::ZERO),
        };
        let usage = json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + out,
        });
        let created_at = now_secs();
        let response = |status: &str, output: Value, usage: Value| {
            json!({
                "id": resp_id, "object": "response", "created_at": created_at, "status": status,
                "error": null, "incomplete_details": null, "model": model, "output": output,
                "parallel_tool_calls": true, "tool_choice": "auto", "usage": usage,
            })
        };
        let extra = [("x-request-id", request_id.clone())];
        if !req.stream {
            if !delay.is_zero() {
                let deltas = events_mid.iter().filter(|(n, _)| n.ends_with(".delta")).count() as u32;
                tokio::select! {
                    _ = tokio::time::sleep(delay * deltas) => {}
                    _ = shared.cancel.cancelled() => {}
                }
            }
            let mut resp = json_response(StatusCode::OK, &response("completed", json!([item]), usage), None);
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            return resp;
        }
        let mut seq = Seq(0);
        let mut events = vec![
            seq.ev("response.created", json!({"response": response("in_progress", json!([]), Value::Null)})),
            seq.ev("response.in_progress", json!({"response": response("in_progress", json!([]), Value::Null)})),
        ];
        for (name, data) in events_mid {
            let mut e = seq.ev(name, data);
            if name.ends_with(".delta") {
                e.delay = delay;
            }
            events.push(e);
        }
        events.push(seq.ev("response.output_item.done", json!({"output_index": 0, "item": item.clone()})));
        events.push(seq.ev("response.completed", json!({"response": response("completed", json!([item]), usage)})));
        sse_response(shared, events, &extra)
    }

    /// A `message` output item with its events between `output_item.added` and `output_item.done`.
    #[allow(clippy::type_complexity)]
    fn text_item(
        shared: &Shared,
        text: String,
        chunks: usize,
        delay: Duration,
    ) -> (Value, Vec<(&'static str, Value)>, u64, Duration) {
        let item_id = format!("msg_fake{:020}", shared.next_id());
        let part = |t: &str| json!({"type": "output_text", "annotations": [], "logprobs": [], "text": t});
        let item = json!({"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                          "content": [part(&text)]});
        let mut mid = vec![
            (
                "response.output_item.added",
                json!({"output_index": 0, "item": {"id": item_id, "type": "message", "status": "in_progress",
                       "role": "assistant", "content": []}}),
            ),
            (
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part("")}),
            ),
        ];
        for piece in split_chunks(&text, chunks) {
            mid.push((
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
            ));
        }
        mid.push((
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        ));
        mid.push((
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part(&text)}),
        ));
        let out = output_tokens(&text);
        (item, mid, out, delay)
    }

    /// The real API's error bodies (`{"error": {message, type, param, code}}`).
    pub(super) fn error(status: u16, retry_after: Option<u32>, request_id: &str) -> Response {
        let (kind, code, message) = match status {
            400 => ("invalid_request_error", Value::Null, "Invalid request."),
            401 => (
                "invalid_request_error",
                json!("invalid_api_key"),
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            ),
            403 => ("invalid_request_error", json!("unsupported_country_region_territory"), "Forbidden."),
            404 => ("invalid_request_error", json!("model_not_found"), "The model does not exist or you do not have access to it."),
            429 => (
                "requests",
                json!("rate_limit_exceeded"),
                "Rate limit reached for requests. Please try again in 1s.",
            ),
            503 => ("server_error", Value::Null, "The engine is currently overloaded, please try again later."),
            _ => ("server_error", Value::Null, "The server had an error while processing your request. Sorry about that!"),
        };
        let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
        let mut resp = json_response(status_of(status), &body, retry_after);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_on_char_boundaries() {
        assert_eq!(split_chunks("héllo!", 3), vec!["hé", "ll", "o!"]);
        assert_eq!(split_chunks("ab", 5), vec!["a", "b"]);
        assert!(split_chunks("", 3).is_empty());
    }
}

/// A `CODEX_HOME` whose `config.toml` points codex at `llm` (model provider `fake`, key from the
/// `FAKE_KEY` variable), with `extra_provider_lines` added to the provider's table.
pub fn codex_home(llm: &FakeLlm, extra_provider_lines: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "model = \"gpt-test\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{}\"\nenv_key = \"FAKE_KEY\"\nwire_api = \"responses\"\n{extra_provider_lines}\n",
        llm.openai_base_url()
    );
    std::fs::write(dir.path().join("config.toml"), config).expect("write config.toml");
    dir
}
