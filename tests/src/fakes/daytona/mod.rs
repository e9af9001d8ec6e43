//! A fake Daytona: the control plane (`/api/sandbox…`), the toolbox API (`/toolbox/{id}/…`) and
//! preview links, backed by one real Docker container per sandbox.
//!
//! ```ignore
//! let fake = FakeDaytona::start().await;                 // 127.0.0.1:<free port>
//! // DAYTONA_API_URL=fake.api_url()  DAYTONA_API_KEY=fake.api_key()
//! fake.fail_next("POST /api/sandbox", 429, Some(1));      // the next create answers 429, Retry-After: 1
//! ```
//!
//! What it speaks is what `shared/providers/daytona.md` records of the official SDK (0.226.1), and
//! `tests/oracle/test_daytona.py` drives it with that SDK:
//! - `POST /api/sandbox` (snapshot name — [`SNAPSHOT`] or one added with [`FakeDaytona::add_snapshot`] — or `buildInfo.dockerfileContent` `FROM <image>`, env, labels,
//!   cpu/memory/disk, auto-stop/archive/delete intervals) → 200 Sandbox, already `started`;
//!   `GET /api/sandbox/{id}`, `GET /api/sandbox?labels=<json>` (`{items, nextCursor}`),
//!   `POST …/stop`, `POST …/start`, `POST …/archive` (409 unless stopped), `DELETE …`,
//!   `POST …/autostop|autoarchive|autodelete/{minutes}`, `GET …/toolbox-proxy-url`,
//!   `GET …/ports/{port}/preview-url`.
//! - Toolbox: `POST /process/execute` (`sh -c`, or with [`FakeConfig::split_commands`] split into
//!   arguments without a shell as the daemon's own parser does; stderr folded into `result` like the
//!   real daemon's combined output), `POST /files/bulk-upload`, `POST /files/bulk-download`, `GET /files/download`,
//!   `GET /user-home-dir`, `GET /work-dir`. On a sandbox that is not started it answers 400
//!   "failed to resolve container IP" as the real proxy does.
//! - Preview links: each (sandbox, port) gets its own loopback listener that checks
//!   `X-Daytona-Preview-Token` (401 without it) and proxies HTTP to the container's bridge address.
//!   A stopped sandbox that starts again gets new preview tokens (same URLs), as Daytona documents.
//! - Every route wants `Authorization: Bearer <api key>` (401 NestJS body otherwise). Errors are NestJS
//!   bodies `{"statusCode", "message", "error"}`. [`FakeDaytona::fail_next`] makes the next request to a
//!   route (its method and pattern, e.g. `"POST /api/sandbox"`) answer a status of our choosing
//!   (429 with `Retry-After`); `POST /_fake/fail` `{"route", "status", "retryAfter"?, "times"?}` does the
//!   same from another process, and `DELETE /_fake/fail` forgets pending faults.
//!
//! Containers are named `fake-daytona-<id>` and labelled `dev.sbx.fake=daytona`; they are removed on
//! delete and when the fake is dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

mod control;
mod preview;
mod toolbox;

use super::faults::{Faults, InjectBody};

use control::{archive, create, get_one, list, remove, set_interval, start, stop, toolbox_url, touch};
use preview::preview_url;
use toolbox::{bulk_download, bulk_upload, delete_file, download, execute, home_dir};

/// The Docker label every container of the fake carries (value `daytona`).
pub const CONTAINER_LABEL: &str = "dev.sbx.fake";
/// The header preview links want.
pub const PREVIEW_TOKEN_HEADER: &str = "X-Daytona-Preview-Token";
/// The snapshot name the fake knows besides its default (maps to the fake's image).
pub const SNAPSHOT: &str = "sbx-base";

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Image of every sandbox (snapshots map to it).
    pub image: String,
    /// The API key it accepts.
    pub api_key: String,
    /// Where to listen.
    pub bind: SocketAddr,
    /// How `POST /process/execute` runs `command`: `false` through `sh -c` (what the docs describe),
    /// `true` split into arguments the way the daemon's own parser does (spaces separate, `'` or `"`
    /// group, no backslash escapes, no shell) and run directly. Env `FAKE_DAYTONA_SPLIT_COMMANDS=1`
    /// sets it for the fake's binary.
    pub split_commands: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            image: std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into()),
            api_key: format!("fake-daytona-{}", crate::random_token()),
            bind: ([127, 0, 0, 1], 0).into(),
            split_commands: false,
        }
    }
}

/// A running fake Daytona. Dropping it removes every container it made.
pub struct FakeDaytona {
    state: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Preview {
    url: String,
    token: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Preview {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Clone)]
struct Sb {
    id: String,
    name: String,
    container: String,
    snapshot: Option<String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    public: bool,
    cpu: i64,
    gpu: i64,
    memory: i64,
    disk: i64,
    auto_stop: i64,
    auto_archive: i64,
    auto_delete: i64,
    state: &'static str,
    ip: Option<String>,
    created_at: String,
}

struct Shared {
    config: FakeConfig,
    base_url: Mutex<String>,
    sandboxes: Mutex<HashMap<String, Sb>>,
    /// Snapshot name → local Docker image, besides [`SNAPSHOT`] and the default.
    snapshots: Mutex<HashMap<String, String>>,
    previews: Mutex<HashMap<(String, u16), Preview>>,
    faults: Faults,
    http: reqwest::Client,
}

impl FakeDaytona {
    /// Starts on loopback with the default config.
    pub async fn start() -> Self {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts with `config`.
    pub async fn start_with(config: FakeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind(config.bind).await.expect("fake daytona: bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Shared {
            config,
            base_url: Mutex::new(format!("http://{addr}")),
            sandboxes: Mutex::default(),
            snapshots: Mutex::default(),
            previews: Mutex::default(),
            faults: Faults::default(),
            http: reqwest::Client::builder().no_proxy().build().expect("reqwest"),
        });
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { let _ = rx.await; }).await;
        });
        Self { state, addr, shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:<port>/api` — what `DAYTONA_API_URL` should be.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The API key it accepts.
    pub fn api_key(&self) -> &str {
        &self.state.config.api_key
    }

    /// The environment that points `sbx` (and the official SDK) at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("DAYTONA_API_URL".into(), self.api_url()), ("DAYTONA_API_KEY".into(), self.api_key().into())]
    }

    /// The image sandboxes run.
    pub fn image(&self) -> &str {
        &self.state.config.image
    }

    /// Makes snapshot `name` available, backed by the local Docker image `image`.
    pub fn add_snapshot(&self, name: &str, image: &str) {
        self.state.snapshots.lock().unwrap().insert(name.to_owned(), image.to_owned());
    }

    /// Makes the next request to `route` (`"<METHOD> <pattern>"`, e.g. `"POST /api/sandbox"` or
    /// `"POST /toolbox/{id}/process/execute"`) answer `status` with the real error body, and a
    /// `Retry-After` header when given.
    pub fn fail_next(&self, route: &str, status: u16, retry_after: Option<u64>) {
        self.fail_times(route, status, retry_after, 1);
    }

    /// Like [`Self::fail_next`] for the next `times` requests.
    pub fn fail_times(&self, route: &str, status: u16, retry_after: Option<u64>, times: usize) {
        self.state.faults.push(route, status, retry_after, times);
    }

    /// How many requests reached `route` (faulted ones included).
    pub fn hits(&self, route: &str) -> usize {
        self.state.faults.hits(route)
    }

    /// Ids of the sandboxes that exist.
    pub fn sandbox_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.sandboxes.lock().unwrap().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The Docker container behind sandbox `id`.
    pub fn container_of(&self, id: &str) -> Option<String> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.container.clone())
    }

    /// Stops serving and removes every container.
    pub fn shutdown(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.state.previews.lock().unwrap().clear();
        let containers: Vec<String> = self.state.sandboxes.lock().unwrap().drain().map(|(_, s)| s.container).collect();
        if !containers.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for FakeDaytona {
    fn drop(&mut self) {
        self.cleanup();
    }
}

type S = State<Arc<Shared>>;

fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/sandbox", post(create).get(list))
        .route("/api/sandbox/{id}", get(get_one).delete(remove))
        .route("/api/sandbox/{id}/start", post(start))
        .route("/api/sandbox/{id}/stop", post(stop))
        .route("/api/sandbox/{id}/archive", post(archive))
        .route("/api/sandbox/{id}/autostop/{m}", post(set_interval))
        .route("/api/sandbox/{id}/autoarchive/{m}", post(set_interval))
        .route("/api/sandbox/{id}/autodelete/{m}", post(set_interval))
        .route("/api/sandbox/{id}/last-activity", post(touch))
        .route("/api/sandbox/{id}/toolbox-proxy-url", get(toolbox_url))
        .route("/api/sandbox/{id}/ports/{port}/preview-url", get(preview_url))
        .route("/_fake/fail", post(inject).delete(clear_faults))
        .route("/toolbox/{id}/process/execute", post(execute))
        .route("/toolbox/{id}/files/bulk-upload", post(bulk_upload))
        .route("/toolbox/{id}/files/bulk-download", post(bulk_download))
        .route("/toolbox/{id}/files/download", get(download))
        .route("/toolbox/{id}/user-home-dir", get(home_dir))
        .route("/toolbox/{id}/work-dir", get(home_dir))
        .route("/toolbox/{id}/files", delete(delete_file))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        // Uploads carry whole runtime binaries (the fake buffers bodies; the real one streams).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// `POST /_fake/fail` (not Daytona's): [`FakeDaytona::fail_times`] for out-of-process clients (the oracle).
async fn inject(State(st): S, Json(b): Json<InjectBody>) -> Response {
    st.faults.inject(b);
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_fake/fail`: forgets every pending fault.
async fn clear_faults(State(st): S) -> Response {
    st.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// A NestJS error response.
fn nest(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"statusCode": status, "message": message, "error": code.canonical_reason().unwrap_or("Error")});
    (code, Json(body)).into_response()
}

fn not_found(id: &str) -> Response {
    nest(404, &format!("Sandbox with ID or name {id} not found"))
}

/// Auth, fault injection and hit counting, before every route.
async fn gate(State(st): S, path: MatchedPath, req: Request, next: Next) -> Response {
    let route = format!("{} {}", req.method(), path.as_str());
    st.faults.count(&route);
    let want = format!("Bearer {}", st.config.api_key);
    if req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return nest(401, "Invalid credentials");
    }
    let fault = st.faults.take(&route);
    if let Some((status, retry_after)) = fault {
        let message = match status {
            429 => "ThrottlerException: Too Many Requests",
            500 => "Internal server error",
            401 => "Invalid credentials",
            409 => "Conflict",
            _ => "Injected fault",
        };
        let mut resp = nest(status, message);
        if let Some(s) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return resp;
    }
    next.run(req).await
}

fn sandbox_json(st: &Shared, s: &Sb) -> Value {
    json!({
        "id": s.id, "organizationId": "fake-org", "name": s.name, "user": "root",
        "env": s.env, "labels": s.labels, "public": s.public, "networkBlockAll": false, "kvm": false,
        "target": "us", "cpu": s.cpu, "gpu": s.gpu, "memory": s.memory, "disk": s.disk,
        "state": s.state, "desiredState": s.state, "snapshot": s.snapshot,
        "autoStopInterval": s.auto_stop, "autoArchiveInterval": s.auto_archive, "autoDeleteInterval": s.auto_delete,
        "toolboxProxyUrl": format!("{}/toolbox", st.base_url.lock().unwrap()),
        "createdAt": s.created_at, "updatedAt": s.created_at, "volumes": [],
    })
}

async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

async fn container_ip(container: &str) -> Option<String> {
    docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container])
        .await
        .ok()
        .filter(|s| !s.is_empty())
}

/// The sandbox with id (or name) `key`.
fn find(st: &Shared, key: &str) -> Option<Sb> {
    let map = st.sandboxes.lock().unwrap();
    map.get(key).cloned().or_else(|| map.values().find(|s| s.name == key).cloned())
}
