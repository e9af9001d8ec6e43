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
//! Linux), so any port works without publishing it in advance. WebSocket upgrades pass through
//! (`fakes::upgrade`), as on the real edge.
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

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

mod control;
mod edge;
mod envd;

use control::control;
use edge::proxy;
use envd::envd;

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

/// A JSON object's values as strings (metadata, env vars).
fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect())
        .unwrap_or_default()
}

/// The pairs of a URL query string.
fn query_params(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_a_port_and_a_sandbox() {
        assert_eq!(parse_host("8000-iabc.e2b.fake", "e2b.fake"), Some((8000, "iabc".into())));
        assert_eq!(parse_host("8000-iabc.e2b.fake:1234", "e2b.fake"), Some((8000, "iabc".into())));
        assert_eq!(parse_host("127.0.0.1:1234", "e2b.fake"), None);
    }
}
