//! A fake E2B: the control plane (REST, `X-API-KEY`) and the envd data plane (Connect-RPC
//! `process.Process/Start`, a few `filesystem.Filesystem` calls, `/files`, `/health`), backed by one
//! real Docker container per sandbox. The API facts it follows are in `shared/providers/e2b.md`; the
//! official Python SDK checks it (`tests/oracle/test_e2b.py`).
//!
//! ```ignore
//! let fake = FakeE2b::start().await;            // 127.0.0.1:<free port>
//! // E2B_API_KEY=fake.api_key() E2B_API_URL=fake.url() E2B_SANDBOX_URL=fake.url() (see `env()`)
//! fake.fail_next(Route::Create, 429, Some(1));  // the next create answers 429 with Retry-After: 1
//! ```
//!
//! # One port for everything: how requests are told apart
//!
//! 1. `Host: {port}-{sandboxID}.{domain}` (what the SDK's `get_host(port)` returns, sent to the
//!    fake's own address): proxied to that port of the sandbox's container.
//! 2. An `E2b-Sandbox-Id` header (what the SDK sends to `E2B_SANDBOX_URL`): with `E2b-Sandbox-Port:
//!    49983` (or none) it is envd, served by the fake itself; with any other port it is proxied to
//!    that port of the container, like E2B's shared edge `sandbox.{domain}` does.
//! 3. Everything else is the control plane.
//!
//! Ports are reached at the container's address on the Docker bridge (the host can route to it on
//! Linux), so any port works without publishing it in advance. WebSocket upgrades are not proxied.
//!
//! # Faithful where it matters
//!
//! Error bodies are E2B's (`{"code": 404, "message": ...}` on the control plane, Connect's
//! `{"code": "not_found", ...}` on envd, `{"sandboxId", "message": "The sandbox was not found",
//! "code": 502}` from the edge). Create honours `Idempotency-Key` (a retried create returns the same
//! sandbox), `timeout` is a TTL from now that a reaper enforces (kill, or pause with `autoPause`),
//! pause of a paused sandbox is 409, connect is 200 (running) or 201 (resumed). Faults:
//! [`FakeE2b::fail_next`] (answer before doing anything) and [`FakeE2b::fail_next_after`] (do the
//! work, then answer with the error — a create that times out on the way back).
//!
//! Every container is labelled `dev.sbx.fake=e2b` and removed on kill, on expiry and when the fake is
//! dropped. `SBX_FAKE_E2B_LOG=1` prints one line per request. `POST /_fake/faults` (JSON `route`,
//! `status`, `retryAfter`, `after`, `times`; or `{"clear": true}`) injects faults into a running
//! `fake-e2b` binary.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// The envd port.
pub const ENVD_PORT: u16 = 49983;
/// The envd version the fake reports (≥ 0.5.7: octet-stream uploads; ≥ 0.4.0: default user in envd).
pub const ENVD_VERSION: &str = "0.5.8";
/// The label on every container the fake makes.
pub const CONTAINER_LABEL: &str = "dev.sbx.fake=e2b";
/// The API key [`FakeE2b::start`] accepts.
pub const DEFAULT_API_KEY: &str = "e2b_fake_test_key";
/// The domain the fake reports (`get_host` answers `{port}-{id}.{domain}`).
pub const DEFAULT_DOMAIN: &str = "e2b.fake";
/// Server default and the SDK's default sandbox timeout (seconds).
const DEFAULT_TIMEOUT: u64 = 300;

/// A control-plane route a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v2/sandboxes` (and `POST /sandboxes`).
    Create,
    /// `GET /sandboxes/{id}`.
    Get,
    /// `GET /v2/sandboxes` (and `GET /sandboxes`).
    List,
    /// `DELETE /sandboxes/{id}`.
    Kill,
    /// `POST /sandboxes/{id}/pause`.
    Pause,
    /// `POST /v2/sandboxes/{id}/connect` (and the older connect/resume).
    Connect,
    /// `POST /sandboxes/{id}/timeout`.
    Timeout,
    /// Any envd request.
    Envd,
}

#[derive(Debug, Clone)]
struct Fault {
    route: Route,
    status: u16,
    retry_after: Option<u64>,
    /// Do the work first, then answer with the error.
    after: bool,
}

#[derive(Debug, Clone)]
struct Sbx {
    id: String,
    container: String,
    ip: String,
    template: String,
    metadata: BTreeMap<String, String>,
    started_at: u64,
    end_at: u64,
    paused: bool,
    auto_pause: bool,
    envd_token: String,
}

struct Inner {
    api_key: String,
    /// The port the fake listens on (part of container names, so two fakes never share names).
    port: u16,
    domain: String,
    /// Template name → Docker image.
    templates: Mutex<HashMap<String, String>>,
    sandboxes: Mutex<BTreeMap<String, Sbx>>,
    /// Idempotency-Key → sandbox id.
    idempotency: Mutex<HashMap<String, String>>,
    faults: Mutex<Vec<Fault>>,
    creates: AtomicUsize,
    uploads: AtomicUsize,
    pids: AtomicU32,
    log: bool,
    proxy: reqwest::Client,
}

/// A running fake E2B (stops and removes its containers when dropped).
pub struct FakeE2b {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: Option<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeE2b {
    /// Starts on `127.0.0.1:<free port>`, templates `base` and `sbx` mapped to `$SBX_BASE_IMAGE`
    /// (default `sbx-base:latest`), API key [`DEFAULT_API_KEY`].
    pub async fn start() -> FakeE2b {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), DEFAULT_API_KEY).await
    }

    /// Starts on `addr` accepting `api_key`.
    pub async fn start_on(addr: SocketAddr, api_key: &str) -> FakeE2b {
        let image = std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into());
        let templates = HashMap::from([("base".to_owned(), image.clone()), ("sbx".to_owned(), image)]);
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind fake e2b");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            api_key: api_key.to_owned(),
            port: addr.port(),
            domain: DEFAULT_DOMAIN.into(),
            templates: Mutex::new(templates),
            sandboxes: Mutex::default(),
            idempotency: Mutex::default(),
            faults: Mutex::default(),
            creates: AtomicUsize::new(0),
            uploads: AtomicUsize::new(0),
            pids: AtomicU32::new(100),
            log: std::env::var("SBX_FAKE_E2B_LOG").as_deref() == Ok("1"),
            proxy: reqwest::Client::builder().no_proxy().build().expect("reqwest client"),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                eprintln!("fake e2b: {e}");
            }
        });
        let reaper = tokio::spawn(reap(inner.clone()));
        FakeE2b { addr, inner, task: Some(task), reaper: Some(reaper), shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:<port>`: both the API URL and the sandbox (envd) URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API key it accepts.
    pub fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// The domain in its sandbox responses.
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// The env that points the official SDK (and sbx) at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("E2B_API_KEY".into(), self.api_key().into()),
            ("E2B_API_URL".into(), self.url()),
            ("E2B_SANDBOX_URL".into(), self.url()),
            ("E2B_DOMAIN".into(), self.domain().into()),
        ]
    }

    /// Makes template `name` start containers of `image`.
    pub fn add_template(&self, name: &str, image: &str) {
        self.inner.templates.lock().unwrap().insert(name.into(), image.into());
    }

    /// The next request to `route` answers `status` (with `Retry-After` when given) without doing anything.
    pub fn fail_next(&self, route: Route, status: u16, retry_after: Option<u64>) {
        self.inner.faults.lock().unwrap().push(Fault { route, status, retry_after, after: false });
    }

    /// The next request to `route` does its work, then answers `status` (the caller cannot tell it worked).
    pub fn fail_next_after(&self, route: Route, status: u16) {
        self.inner.faults.lock().unwrap().push(Fault { route, status, retry_after: None, after: true });
    }

    /// How many containers creates have started so far.
    pub fn creates(&self) -> usize {
        self.inner.creates.load(Ordering::SeqCst)
    }

    /// How many `POST /files` requests envd has served.
    pub fn uploads(&self) -> usize {
        self.inner.uploads.load(Ordering::SeqCst)
    }

    /// Ids of the sandboxes that exist (running or paused).
    pub fn sandbox_ids(&self) -> Vec<String> {
        self.inner.sandboxes.lock().unwrap().keys().cloned().collect()
    }

    /// The Docker container behind sandbox `id`.
    pub fn container(&self, id: &str) -> Option<String> {
        self.inner.sandboxes.lock().unwrap().get(id).map(|s| s.container.clone())
    }

    /// Unix seconds at which sandbox `id` times out.
    pub fn end_at(&self, id: &str) -> Option<u64> {
        self.inner.sandboxes.lock().unwrap().get(id).map(|s| s.end_at)
    }

    /// The container name prefix of this fake's sandboxes (`fake-e2b-<port>-`).
    pub fn container_prefix(&self) -> String {
        format!("fake-e2b-{}-", self.addr.port())
    }

    /// Stops serving and removes every container.
    pub async fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(t) = self.reaper.take() {
            t.abort();
        }
        let containers: Vec<String> =
            std::mem::take(&mut *self.inner.sandboxes.lock().unwrap()).into_values().map(|s| s.container).collect();
        if !containers.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f", "-v"]).args(&containers).output();
        }
    }
}

impl Drop for FakeE2b {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn rfc3339(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn random_id() -> String {
    // E2B ids are 20 lowercase alphanumerics starting with a letter.
    format!("i{}", &crate::random_token()[..19])
}

/// Kills (or pauses, with `autoPause`) sandboxes whose timeout has passed.
async fn reap(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let expired: Vec<Sbx> =
            inner.sandboxes.lock().unwrap().values().filter(|s| !s.paused && s.end_at <= now()).cloned().collect();
        for s in expired {
            if s.auto_pause {
                if docker(&["pause", &s.container]).await.0 {
                    if let Some(x) = inner.sandboxes.lock().unwrap().get_mut(&s.id) {
                        x.paused = true;
                    }
                }
            } else {
                inner.sandboxes.lock().unwrap().remove(&s.id);
                docker(&["rm", "-f", "-v", &s.container]).await;
            }
        }
    }
}

/// Runs the docker CLI: (success, stdout, stderr).
async fn docker(args: &[&str]) -> (bool, Vec<u8>, String) {
    match tokio::process::Command::new("docker").args(args).kill_on_drop(true).output().await {
        Ok(o) => (o.status.success(), o.stdout, String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => (false, Vec::new(), format!("docker: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------------
// Dispatch

async fn handle(State(st): State<Arc<Inner>>, req: Request) -> Response {
    if st.log {
        eprintln!("fake e2b: {} {} host={:?} sandbox={:?}", req.method(), req.uri(), req.headers().get("host"),
            req.headers().get("e2b-sandbox-id"));
    }
    let host = header(req.headers(), "host").unwrap_or_default();
    if let Some((port, id)) = parse_host(&host, &st.domain) {
        return proxy(&st, &id, port, req).await;
    }
    if let Some(id) = header(req.headers(), "e2b-sandbox-id") {
        let port = header(req.headers(), "e2b-sandbox-port").and_then(|p| p.parse().ok()).unwrap_or(ENVD_PORT);
        if port != ENVD_PORT {
            return proxy(&st, &id, port, req).await;
        }
        if let Some(f) = take_fault(&st, Route::Envd) {
            return fault_response(&f);
        }
        return envd(&st, &id, req).await;
    }
    control(&st, req).await
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// `{port}-{id}.{domain}[:port]` → (port, id).
fn parse_host(host: &str, domain: &str) -> Option<(u16, String)> {
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let first = host.strip_suffix(domain)?.strip_suffix('.')?;
    let (port, id) = first.split_once('-')?;
    Some((port.parse().ok()?, id.to_owned()))
}

fn take_fault(st: &Inner, route: Route) -> Option<Fault> {
    let mut faults = st.faults.lock().unwrap();
    let i = faults.iter().position(|f| f.route == route)?;
    Some(faults.remove(i))
}

fn error(status: u16, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"code": status.as_u16(), "message": message.into()}))).into_response()
}

fn fault_response(f: &Fault) -> Response {
    let message = match f.status {
        401 => "Invalid API key".to_owned(),
        404 => "not found".to_owned(),
        409 => "conflict".to_owned(),
        429 => "Rate limit exceeded, please try again later.".to_owned(),
        503 => "Service is busy, please try again later.".to_owned(),
        s => format!("injected fault ({s})"),
    };
    let mut r = error(f.status, message);
    if let Some(s) = f.retry_after {
        r.headers_mut().insert("retry-after", s.to_string().parse().expect("header"));
    }
    r
}

// ---------------------------------------------------------------------------------------------------
// Control plane

async fn control(st: &Arc<Inner>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if method == Method::GET && path == "/health" {
        return StatusCode::OK.into_response();
    }
    if method == Method::POST && path == "/_fake/faults" {
        return add_fault(st, req).await;
    }
    match header(req.headers(), "x-api-key") {
        None => return error(401, "authorization header is missing"),
        Some(k) if k != st.api_key => return error(401, "Invalid API key"),
        Some(_) => {}
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let json_body: Value = if body.is_empty() { json!({}) } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, format!("request body has an error: {e}")),
        }
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (route, id) = match (&method, parts.as_slice()) {
        (&Method::POST, ["v2", "sandboxes"]) | (&Method::POST, ["sandboxes"]) => (Route::Create, None),
        (&Method::GET, ["v2", "sandboxes"]) | (&Method::GET, ["sandboxes"]) => (Route::List, None),
        (&Method::GET, ["sandboxes", id]) => (Route::Get, Some(*id)),
        (&Method::DELETE, ["sandboxes", id]) => (Route::Kill, Some(*id)),
        (&Method::POST, ["sandboxes", id, "pause"]) => (Route::Pause, Some(*id)),
        (&Method::POST, ["v2", "sandboxes", id, "connect"])
        | (&Method::POST, ["sandboxes", id, "connect"])
        | (&Method::POST, ["sandboxes", id, "resume"]) => (Route::Connect, Some(*id)),
        (&Method::POST, ["sandboxes", id, "timeout"]) | (&Method::POST, ["sandboxes", id, "refreshes"]) => {
            (Route::Timeout, Some(*id))
        }
        _ => return error(404, format!("no route for {method} {path}")),
    };
    let fault = take_fault(st, route);
    if let Some(f) = fault.as_ref().filter(|f| !f.after) {
        return fault_response(f);
    }
    let legacy_v1 = !path.starts_with("/v2");
    let resp = match route {
        Route::Create => create(st, &headers, &json_body).await,
        Route::List => list(st, &query, legacy_v1),
        Route::Get => get(st, id.unwrap_or_default()),
        Route::Kill => kill(st, id.unwrap_or_default()).await,
        Route::Pause => pause(st, id.unwrap_or_default()).await,
        Route::Connect => connect(st, id.unwrap_or_default(), &json_body, path.ends_with("/resume")).await,
        Route::Timeout => set_timeout(st, id.unwrap_or_default(), &json_body, path.ends_with("/refreshes")),
        Route::Envd => unreachable!("envd is dispatched before"),
    };
    match fault {
        Some(f) => fault_response(&f),
        None => resp,
    }
}

/// `POST /_fake/faults` `{"route": "create", "status": 429, "retryAfter": 1, "after": false}`: the
/// binary's way to [`FakeE2b::fail_next`] (for the oracle); not part of E2B's API.
async fn add_fault(st: &Inner, req: Request) -> Response {
    let body = axum::body::to_bytes(req.into_body(), 1 << 16).await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v["clear"].as_bool() == Some(true) {
        st.faults.lock().unwrap().clear();
        return StatusCode::NO_CONTENT.into_response();
    }
    let route = match v["route"].as_str() {
        Some("create") => Route::Create,
        Some("get") => Route::Get,
        Some("list") => Route::List,
        Some("kill") => Route::Kill,
        Some("pause") => Route::Pause,
        Some("connect") => Route::Connect,
        Some("timeout") => Route::Timeout,
        Some("envd") => Route::Envd,
        other => return error(400, format!("unknown route {other:?}")),
    };
    let Some(status) = v["status"].as_u64().and_then(|s| u16::try_from(s).ok()) else {
        return error(400, "status is required");
    };
    let times = v["times"].as_u64().unwrap_or(1);
    let after = v["after"].as_bool().unwrap_or(false);
    for _ in 0..times {
        st.faults.lock().unwrap().push(Fault { route, status, retry_after: v["retryAfter"].as_u64(), after });
    }
    StatusCode::NO_CONTENT.into_response()
}

fn sandbox_json(st: &Inner, s: &Sbx) -> Value {
    json!({
        "templateID": s.template,
        "sandboxID": s.id,
        "clientID": "fakeclient",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": s.envd_token,
        "trafficAccessToken": null,
        "domain": st.domain,
    })
}

fn detail_json(s: &Sbx, with_token: bool) -> Value {
    let mut v = json!({
        "templateID": s.template,
        "sandboxID": s.id,
        "clientID": "fakeclient",
        "startedAt": rfc3339(s.started_at),
        "endAt": rfc3339(s.end_at),
        "envdVersion": ENVD_VERSION,
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 10240,
        "state": if s.paused { "paused" } else { "running" },
        "metadata": s.metadata,
    });
    if with_token {
        v["envdAccessToken"] = json!(s.envd_token);
    }
    v
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect())
        .unwrap_or_default()
}

async fn create(st: &Arc<Inner>, headers: &HeaderMap, body: &Value) -> Response {
    let Some(template) = body.get("templateID").and_then(Value::as_str).map(str::to_owned) else {
        return error(400, "request body has an error: doesn't match schema: property \"templateID\" is missing");
    };
    let key = header(headers, "idempotency-key");
    if let Some(k) = &key {
        let existing = st.idempotency.lock().unwrap().get(k).cloned();
        if let Some(s) = existing.and_then(|id| st.sandboxes.lock().unwrap().get(&id).cloned()) {
            return (StatusCode::CREATED, axum::Json(sandbox_json(st, &s))).into_response();
        }
    }
    let Some(image) = st.templates.lock().unwrap().get(&template).cloned() else {
        return error(404, format!("template '{template}' not found"));
    };
    let timeout = body.get("timeout").and_then(Value::as_u64).unwrap_or(DEFAULT_TIMEOUT);
    let metadata = str_map(&body["metadata"]);
    let env = str_map(&body["envVars"]);
    let id = random_id();
    let container = format!("fake-e2b-{}-{id}", st.port);
    let mut args: Vec<String> = vec![
        "run".into(), "-d".into(), "--init".into(), "--name".into(), container.clone(),
        "--label".into(), CONTAINER_LABEL.into(), "--label".into(), format!("dev.sbx.fake.e2b-sandbox={id}"),
        "--entrypoint".into(), "sh".into(),
    ];
    for (k, v) in &env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([image, "-c".into(), "mkdir -p /home/user; exec sleep infinity".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = docker(&argv).await;
    if !ok {
        docker(&["rm", "-f", "-v", &container]).await;
        return error(500, format!("failed to start the sandbox: {}", err.trim()));
    }
    st.creates.fetch_add(1, Ordering::SeqCst);
    let (ok, out, err) =
        docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", &container]).await;
    let ip = String::from_utf8_lossy(&out).split_whitespace().next().unwrap_or_default().to_owned();
    if !ok || ip.is_empty() {
        docker(&["rm", "-f", "-v", &container]).await;
        return error(500, format!("sandbox has no address: {}", err.trim()));
    }
    let started = now();
    let s = Sbx {
        id: id.clone(),
        container,
        ip,
        template,
        metadata,
        started_at: started,
        end_at: started + timeout,
        paused: false,
        auto_pause: body.get("autoPause").and_then(Value::as_bool).unwrap_or(false),
        envd_token: crate::random_token(),
    };
    st.sandboxes.lock().unwrap().insert(id.clone(), s.clone());
    if let Some(k) = key {
        st.idempotency.lock().unwrap().insert(k, id);
    }
    (StatusCode::CREATED, axum::Json(sandbox_json(st, &s))).into_response()
}

fn query_params(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn list(st: &Inner, query: &str, legacy: bool) -> Response {
    let params = query_params(query);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let wanted: Vec<(String, String)> = param("metadata").map(|m| query_params(&m)).unwrap_or_default();
    let states: Vec<String> = if legacy {
        vec!["running".into()]
    } else {
        param("state").map(|s| s.split(',').map(str::to_owned).collect()).unwrap_or_else(|| vec!["running".into(), "paused".into()])
    };
    let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100).max(1);
    let offset: usize = param("nextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let mut all: Vec<Sbx> = st
        .sandboxes
        .lock()
        .unwrap()
        .values()
        .filter(|s| wanted.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
        .filter(|s| states.iter().any(|w| w == if s.paused { "paused" } else { "running" }))
        .cloned()
        .collect();
    all.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    if legacy {
        let items: Vec<Value> = all.iter().map(|s| detail_json(s, false)).collect();
        return axum::Json(items).into_response();
    }
    let page: Vec<Value> = all.iter().skip(offset).take(limit).map(|s| detail_json(s, false)).collect();
    let mut r = axum::Json(page).into_response();
    if offset + limit < all.len() {
        r.headers_mut().insert("x-next-token", (offset + limit).to_string().parse().expect("header"));
    }
    r
}

fn not_found(id: &str) -> Response {
    error(404, format!("sandbox \"{id}\" doesn't exist or you don't have access to it"))
}

fn get(st: &Inner, id: &str) -> Response {
    match st.sandboxes.lock().unwrap().get(id) {
        Some(s) => {
            let mut d = detail_json(s, true);
            d["domain"] = json!(st.domain);
            axum::Json(d).into_response()
        }
        None => not_found(id),
    }
}

async fn kill(st: &Inner, id: &str) -> Response {
    let Some(s) = st.sandboxes.lock().unwrap().remove(id) else { return not_found(id) };
    docker(&["rm", "-f", "-v", &s.container]).await;
    StatusCode::NO_CONTENT.into_response()
}

async fn pause(st: &Inner, id: &str) -> Response {
    let Some(s) = st.sandboxes.lock().unwrap().get(id).cloned() else { return not_found(id) };
    if s.paused {
        return error(409, format!("sandbox \"{id}\" is already paused"));
    }
    let (ok, _, err) = docker(&["pause", &s.container]).await;
    if !ok {
        return error(500, format!("pausing the sandbox failed: {}", err.trim()));
    }
    if let Some(x) = st.sandboxes.lock().unwrap().get_mut(id) {
        x.paused = true;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn connect(st: &Inner, id: &str, body: &Value, legacy_resume: bool) -> Response {
    let timeout = body.get("timeout").and_then(Value::as_u64);
    if legacy_resume && timeout.is_none() {
        return error(400, "request body has an error: value is required but missing");
    }
    let Some(s) = st.sandboxes.lock().unwrap().get(id).cloned() else {
        return error(404, format!("Paused sandbox {id} not found"));
    };
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    if s.paused {
        let (ok, _, err) = docker(&["unpause", &s.container]).await;
        if !ok {
            return error(500, format!("resuming the sandbox failed: {}", err.trim()));
        }
    }
    let mut sandboxes = st.sandboxes.lock().unwrap();
    let Some(x) = sandboxes.get_mut(id) else { return not_found(id) };
    let status = if x.paused { StatusCode::CREATED } else { StatusCode::OK };
    if x.paused {
        x.end_at = now() + timeout;
        x.paused = false;
    } else {
        // A running sandbox's timeout is only ever extended.
        x.end_at = x.end_at.max(now() + timeout);
    }
    (status, axum::Json(sandbox_json(st, x))).into_response()
}

fn set_timeout(st: &Inner, id: &str, body: &Value, refresh: bool) -> Response {
    let key = if refresh { "duration" } else { "timeout" };
    let Some(t) = body.get(key).and_then(Value::as_u64) else {
        return error(400, format!("request body has an error: property \"{key}\" is missing"));
    };
    let mut sandboxes = st.sandboxes.lock().unwrap();
    let Some(x) = sandboxes.get_mut(id) else { return not_found(id) };
    x.end_at = now() + t;
    StatusCode::NO_CONTENT.into_response()
}

// ---------------------------------------------------------------------------------------------------
// The edge: per-port hosts, proxied to the container

fn edge_error(id: &str, message: &str) -> Response {
    (StatusCode::BAD_GATEWAY, axum::Json(json!({"sandboxId": id, "message": message, "code": 502}))).into_response()
}

async fn proxy(st: &Inner, id: &str, port: u16, req: Request) -> Response {
    let Some(s) = st.sandboxes.lock().unwrap().get(id).cloned().filter(|s| !s.paused) else {
        return edge_error(id, "The sandbox was not found");
    };
    let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let url = format!("http://{}:{port}{path}", s.ip);
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    for h in ["host", "e2b-sandbox-id", "e2b-sandbox-port", "connection", "transfer-encoding"] {
        headers.remove(h);
    }
    let body = reqwest::Body::wrap_stream(req.into_body().into_data_stream());
    let resp = st.proxy.request(method, url).headers(headers).body(body).send().await;
    match resp {
        Ok(r) => {
            let mut out = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                if k != "transfer-encoding" && k != "connection" {
                    out = out.header(k, v);
                }
            }
            out.body(Body::from_stream(r.bytes_stream())).unwrap_or_else(|_| edge_error(id, "bad upstream response"))
        }
        Err(e) if e.is_connect() => edge_error(id, &format!("The sandbox is running but port is not open ({port})")),
        Err(e) => edge_error(id, &format!("proxy error: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------------
// envd

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

async fn envd(st: &Inner, id: &str, req: Request) -> Response {
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
    fn hosts_name_a_port_and_a_sandbox() {
        assert_eq!(parse_host("8000-iabc.e2b.fake", "e2b.fake"), Some((8000, "iabc".into())));
        assert_eq!(parse_host("8000-iabc.e2b.fake:1234", "e2b.fake"), Some((8000, "iabc".into())));
        assert_eq!(parse_host("127.0.0.1:1234", "e2b.fake"), None);
    }

    #[test]
    fn multipart_parts_carry_their_filenames() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/home/user/a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX--\r\n";
        let parts = multipart_parts(body, "XX");
        assert_eq!(parts, vec![(Some("/home/user/a.txt".to_owned()), Bytes::from_static(b"hello"))]);
    }
}
