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
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

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

struct Fault {
    route: String,
    status: u16,
    retry_after: Option<u64>,
    times: usize,
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
    faults: Mutex<Vec<Fault>>,
    hits: Mutex<HashMap<String, usize>>,
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
            faults: Mutex::default(),
            hits: Mutex::default(),
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
        self.state.faults.lock().unwrap().push(Fault { route: route.to_owned(), status, retry_after, times });
    }

    /// How many requests reached `route` (faulted ones included).
    pub fn hits(&self, route: &str) -> usize {
        self.state.hits.lock().unwrap().get(route).copied().unwrap_or(0)
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InjectBody {
    route: String,
    status: u16,
    retry_after: Option<u64>,
    times: Option<usize>,
}

/// `POST /_fake/fail` (not Daytona's): [`FakeDaytona::fail_times`] for out-of-process clients (the oracle).
async fn inject(State(st): S, Json(b): Json<InjectBody>) -> Response {
    let times = b.times.unwrap_or(1).max(1);
    st.faults.lock().unwrap().push(Fault { route: b.route, status: b.status, retry_after: b.retry_after, times });
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_fake/fail`: forgets every pending fault.
async fn clear_faults(State(st): S) -> Response {
    st.faults.lock().unwrap().clear();
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
    *st.hits.lock().unwrap().entry(route.clone()).or_default() += 1;
    let want = format!("Bearer {}", st.config.api_key);
    if req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return nest(401, "Invalid credentials");
    }
    let fault = {
        let mut faults = st.faults.lock().unwrap();
        match faults.iter().position(|f| f.route == route) {
            Some(i) => {
                let f = &mut faults[i];
                f.times -= 1;
                let out = (f.status, f.retry_after);
                if f.times == 0 {
                    faults.remove(i);
                }
                Some(out)
            }
            None => None,
        }
    };
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateBody {
    name: Option<String>,
    snapshot: Option<String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    public: bool,
    cpu: Option<i64>,
    gpu: Option<i64>,
    memory: Option<i64>,
    disk: Option<i64>,
    auto_stop_interval: Option<i64>,
    auto_archive_interval: Option<i64>,
    auto_delete_interval: Option<i64>,
    build_info: Option<BuildInfo>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BuildInfo {
    dockerfile_content: String,
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

async fn create(State(st): S, body: Bytes) -> Response {
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return nest(400, &format!("invalid body: {e}")),
    };
    let image = if let Some(b) = &body.build_info {
        match b.dockerfile_content.lines().find_map(|l| l.trim().strip_prefix("FROM ")) {
            Some(img) => img.trim().to_owned(),
            None => return nest(400, "buildInfo.dockerfileContent has no FROM line"),
        }
    } else {
        match body.snapshot.as_deref() {
            None | Some("") | Some(SNAPSHOT) => st.config.image.clone(),
            Some(s) if s == st.config.image => st.config.image.clone(),
            Some(s) if st.snapshots.lock().unwrap().contains_key(s) => st.snapshots.lock().unwrap()[s].clone(),
            Some(s) => return nest(404, &format!("Snapshot {s} not found. Did you add it through the Daytona Dashboard?")),
        }
    };
    if docker(&["image", "inspect", "--format", "{{.Id}}", &image]).await.is_err() {
        return nest(400, &format!("Failed to pull image {image} (the fake only runs local images)"));
    }
    let id = uuid_like();
    let name = body.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| id.clone());
    if st.sandboxes.lock().unwrap().values().any(|s| s.name == name) {
        return nest(409, &format!("Sandbox with name {name} already exists"));
    }
    let container = format!("fake-daytona-{id}");
    let (cpu, memory, disk) = (body.cpu.unwrap_or(1), body.memory.unwrap_or(1), body.disk.unwrap_or(3));
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--init".into(),
        "--name".into(),
        container.clone(),
        "--label".into(),
        format!("{CONTAINER_LABEL}=daytona"),
        "--label".into(),
        format!("{CONTAINER_LABEL}.sandbox={id}"),
        "--cpus".into(),
        cpu.to_string(),
        "--memory".into(),
        format!("{memory}g"),
    ];
    for (k, v) in &body.env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([image.clone(), "sleep".into(), "infinity".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = docker(&argv).await {
        let _ = docker(&["rm", "-f", &container]).await;
        return nest(500, &format!("failed to start the sandbox container: {e}"));
    }
    let sb = Sb {
        id: id.clone(),
        name,
        container: container.clone(),
        snapshot: body.snapshot.clone().or_else(|| body.build_info.is_none().then(|| SNAPSHOT.to_owned())),
        env: body.env,
        labels: body.labels,
        public: body.public,
        cpu,
        gpu: body.gpu.unwrap_or(0),
        memory,
        disk,
        auto_stop: body.auto_stop_interval.unwrap_or(15),
        auto_archive: body.auto_archive_interval.unwrap_or(10080),
        auto_delete: body.auto_delete_interval.unwrap_or(-1),
        state: "started",
        ip: container_ip(&container).await,
        created_at: now_rfc3339(),
    };
    let json = sandbox_json(&st, &sb);
    st.sandboxes.lock().unwrap().insert(id, sb);
    Json(json).into_response()
}

fn uuid_like() -> String {
    let h = crate::random_token();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The sandbox with id (or name) `key`.
fn find(st: &Shared, key: &str) -> Option<Sb> {
    let map = st.sandboxes.lock().unwrap();
    map.get(key).cloned().or_else(|| map.values().find(|s| s.name == key).cloned())
}

async fn get_one(State(st): S, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(s) => Json(sandbox_json(&st, &s)).into_response(),
        None => not_found(&id),
    }
}

async fn list(State(st): S, Query(q): Query<HashMap<String, String>>) -> Response {
    let want: BTreeMap<String, String> = match q.get("labels").map(|l| serde_json::from_str(l)) {
        None => BTreeMap::new(),
        Some(Ok(m)) => m,
        Some(Err(e)) => return nest(400, &format!("labels must be a JSON object: {e}")),
    };
    let mut all: Vec<Sb> = st
        .sandboxes
        .lock()
        .unwrap()
        .values()
        .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .cloned()
        .collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100).clamp(1, 200);
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(start).take(limit).map(|s| sandbox_json(&st, s)).collect();
    let next = (start + limit < all.len()).then(|| (start + limit).to_string());
    Json(json!({"items": page, "nextCursor": next})).into_response()
}

fn set_state(st: &Shared, id: &str, state: &'static str, ip: Option<Option<String>>) -> Option<Value> {
    let mut map = st.sandboxes.lock().unwrap();
    let s = map.get_mut(id)?;
    s.state = state;
    if let Some(ip) = ip {
        s.ip = ip;
    }
    let s = s.clone();
    drop(map);
    Some(sandbox_json(st, &s))
}

async fn start(State(st): S, Path(id): Path<String>) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    if s.state != "started" {
        if let Err(e) = docker(&["start", &s.container]).await {
            return nest(500, &format!("failed to start the sandbox: {e}"));
        }
    }
    let ip = container_ip(&s.container).await;
    if s.state != "started" {
        // Preview tokens reset when a sandbox restarts (the URL stays).
        for (key, p) in st.previews.lock().unwrap().iter_mut() {
            if key.0 == s.id {
                p.token = crate::random_token();
            }
        }
    }
    set_state(&st, &s.id, "started", Some(ip)).map(|j| Json(j).into_response()).unwrap_or_else(|| not_found(&id))
}

async fn stop(State(st): S, Path(id): Path<String>) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    if s.state == "started" {
        if let Err(e) = docker(&["stop", "-t", "2", &s.container]).await {
            return nest(500, &format!("failed to stop the sandbox: {e}"));
        }
    }
    let state = if s.state == "archived" { "archived" } else { "stopped" };
    set_state(&st, &s.id, state, Some(None)).map(|j| Json(j).into_response()).unwrap_or_else(|| not_found(&id))
}

async fn archive(State(st): S, Path(id): Path<String>) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    if s.state != "stopped" && s.state != "archived" {
        return nest(409, "Sandbox is not stopped");
    }
    set_state(&st, &s.id, "archived", None).map(|j| Json(j).into_response()).unwrap_or_else(|| not_found(&id))
}

async fn remove(State(st): S, Path(id): Path<String>) -> Response {
    let Some(mut s) = find(&st, &id) else { return not_found(&id) };
    st.previews.lock().unwrap().retain(|(sid, _), _| *sid != s.id);
    let _ = docker(&["rm", "-f", "-v", &s.container]).await;
    st.sandboxes.lock().unwrap().remove(&s.id);
    s.state = "destroying";
    Json(sandbox_json(&st, &s)).into_response()
}

async fn set_interval(State(st): S, Path((id, minutes)): Path<(String, i64)>, path: MatchedPath) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    let mut map = st.sandboxes.lock().unwrap();
    if let Some(s) = map.get_mut(&s.id) {
        match path.as_str().rsplit('/').nth(1) {
            Some("autostop") => s.auto_stop = minutes,
            Some("autoarchive") => s.auto_archive = minutes,
            _ => s.auto_delete = minutes,
        }
    }
    StatusCode::OK.into_response()
}

async fn touch(State(st): S, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(_) => StatusCode::CREATED.into_response(),
        None => not_found(&id),
    }
}

async fn toolbox_url(State(st): S, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(_) => Json(json!({"url": format!("{}/toolbox", st.base_url.lock().unwrap())})).into_response(),
        None => not_found(&id),
    }
}

async fn preview_url(State(st): S, Path((id, port)): Path<(String, u16)>) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    let key = (s.id.clone(), port);
    if let Some(p) = st.previews.lock().unwrap().get(&key) {
        return Json(json!({"sandboxId": s.id, "url": p.url, "token": p.token})).into_response();
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => return nest(500, &format!("preview listener: {e}")),
    };
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let token = crate::random_token();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().fallback(proxy).with_state((st.clone(), s.id.clone(), port));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { let _ = rx.await; }).await;
    });
    let preview = Preview { url: url.clone(), token: token.clone(), shutdown: Some(tx) };
    let mut previews = st.previews.lock().unwrap();
    // A concurrent request may have made one first: keep that one.
    let p = previews.entry(key).or_insert(preview);
    Json(json!({"sandboxId": s.id, "url": p.url, "token": p.token})).into_response()
}

/// The preview proxy: token check, then the request goes to the container's port as it came.
async fn proxy(State((st, id, port)): State<(Arc<Shared>, String, u16)>, req: Request) -> Response {
    let Some(s) = find(&st, &id) else { return nest(404, "Sandbox not found") };
    let token = st.previews.lock().unwrap().get(&(id.clone(), port)).map(|p| p.token.clone());
    let sent = req.headers().get(PREVIEW_TOKEN_HEADER).and_then(|v| v.to_str().ok());
    if !s.public && (sent.is_none() || sent != token.as_deref()) {
        return nest(401, "Unauthorized: missing or invalid preview token");
    }
    let Some(ip) = s.ip.filter(|_| s.state == "started") else {
        return nest(502, &format!("Sandbox {id} is not started"));
    };
    let (parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = st.http.request(parts.method.clone(), format!("http://{ip}:{port}{pq}"));
    for (k, v) in &parts.headers {
        if k != header::HOST && k.as_str() != "x-daytona-preview-token" && k != header::CONNECTION {
            out = out.header(k, v);
        }
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        out = out.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    match out.send().await {
        Ok(resp) => {
            let mut b = Response::builder().status(resp.status().as_u16());
            for (k, v) in resp.headers() {
                if k != header::CONNECTION && k != header::TRANSFER_ENCODING {
                    b = b.header(k, v);
                }
            }
            b.body(Body::from_stream(resp.bytes_stream())).unwrap_or_else(|e| nest(502, &e.to_string()))
        }
        Err(e) => nest(502, &format!("bad gateway: {e}")),
    }
}

/// The container of a started sandbox, or the error the real toolbox proxy gives.
#[allow(clippy::result_large_err)] // the error is the response itself, returned as is
fn running(st: &Shared, id: &str) -> Result<Sb, Response> {
    match find(st, id) {
        None => Err(not_found(id)),
        Some(s) if s.state != "started" => Err(nest(
            400,
            &format!("failed to resolve container IP for sandbox {id}: Is the Sandbox started?"),
        )),
        Some(s) => Ok(s),
    }
}

#[derive(Deserialize)]
struct ExecuteBody {
    command: String,
    cwd: Option<String>,
    envs: Option<BTreeMap<String, String>>,
    timeout: Option<u64>,
}

async fn execute(State(st): S, Path(id): Path<String>, Json(body): Json<ExecuteBody>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut cmd = tokio::process::Command::new("docker");
    cmd.arg("exec");
    if let Some(cwd) = body.cwd.as_deref().filter(|c| !c.is_empty()) {
        cmd.args(["-w", cwd]);
    }
    for (k, v) in body.envs.iter().flatten() {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    if st.config.split_commands {
        let argv = split_command(&body.command);
        if argv.is_empty() {
            return nest(400, "empty command");
        }
        // No shell reads the command; `sh` only folds stderr into stdout (combined output) and then
        // execs the split arguments as they are.
        cmd.args([&s.container, "sh", "-c", "exec 2>&1; exec \"$@\"", "sh"]).args(argv);
    } else {
        // The daemon returns combined output: fold stderr into stdout inside the shell.
        cmd.args([&s.container, "sh", "-c", &format!("exec 2>&1\n{}", body.command)]);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let limit = Duration::from_secs(body.timeout.filter(|t| *t > 0).unwrap_or(10 * 60));
    match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => nest(408, "command execution timeout"),
        Ok(Err(e)) => nest(500, &format!("exec: {e}")),
        Ok(Ok(out)) => {
            let code = out.status.code().unwrap_or(-1);
            // `docker exec` itself failing (e.g. the cwd does not exist) exits 126/127 with its message on stderr.
            let mut result = String::from_utf8_lossy(&out.stdout).into_owned();
            result.push_str(&String::from_utf8_lossy(&out.stderr));
            Json(json!({"exitCode": code, "result": result})).into_response()
        }
    }
}

/// Splits `command` into arguments as Daytona's daemon does when it runs a command without a shell:
/// spaces separate, a `'` or `"` starts a group that the same quote ends (the other quote is kept
/// inside it), and there are no escapes.
fn split_command(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (' ', None) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits a `multipart/form-data` body into (headers, content) parts.
fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<(String, &'a [u8])> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut parts = Vec::new();
    let mut pos = match find_bytes(body, d, 0) {
        Some(p) => p + d.len(),
        None => return parts,
    };
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        let start = pos + 2; // CRLF after the delimiter
        let Some(next) = find_bytes(body, d, start) else { break };
        let part = &body[start.min(next)..next.saturating_sub(2).max(start)];
        if let Some(h) = find_bytes(part, b"\r\n\r\n", 0) {
            parts.push((String::from_utf8_lossy(&part[..h]).into_owned(), &part[h + 4..]));
        }
        pos = next + d.len();
    }
    parts
}

fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// `name="…"` (or `filename="…"`) from part headers.
fn disposition(headers: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=\"");
    let line = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
    let i = line.find(&pat)? + pat.len();
    let j = line[i..].find('"')? + i;
    Some(line[i..j].to_owned())
}

fn boundary_of(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let b = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?;
    Some(b.trim_matches('"').to_owned())
}

async fn write_file(container: &str, path: &str, data: &[u8]) -> Result<(), String> {
    let mut child = tokio::process::Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"", "sh", path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(data).await.map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

async fn bulk_upload(State(st): S, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(boundary) = boundary_of(&headers) else { return nest(400, "expected multipart/form-data") };
    let parts = multipart_parts(&body, &boundary);
    let mut paths: HashMap<String, String> = HashMap::new();
    let mut files: Vec<(String, &[u8])> = Vec::new();
    for (h, content) in &parts {
        let Some(name) = disposition(h, "name") else { continue };
        if let Some(idx) = name.strip_suffix(".path") {
            paths.insert(idx.to_owned(), String::from_utf8_lossy(content).into_owned());
        } else if let Some(idx) = name.strip_suffix(".file") {
            files.push((idx.to_owned(), content));
        }
    }
    let mut errors = Vec::new();
    for (idx, content) in files {
        let Some(path) = paths.get(&idx) else {
            errors.push(json!({"path": idx, "error": "missing path field"}));
            continue;
        };
        if let Err(e) = write_file(&s.container, path, content).await {
            errors.push(json!({"path": path, "error": e}));
        }
    }
    if errors.is_empty() {
        Json(json!({})).into_response()
    } else {
        (StatusCode::BAD_REQUEST, Json(json!({"statusCode": 400, "message": "upload failed", "errors": errors}))).into_response()
    }
}

async fn read_file(container: &str, path: &str) -> Result<Vec<u8>, String> {
    let out = tokio::process::Command::new("docker")
        .args(["exec", container, "cat", "--", path])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[derive(Deserialize)]
struct DownloadBody {
    paths: Vec<String>,
}

async fn bulk_download(State(st): S, Path(id): Path<String>, Json(body): Json<DownloadBody>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let boundary = crate::random_token();
    let mut out: Vec<u8> = Vec::new();
    for path in &body.paths {
        let (name, ctype, bytes) = match read_file(&s.container, path).await {
            Ok(b) => ("file", "application/octet-stream", b),
            Err(e) => {
                let err = json!({"message": format!("file not found: {e}"), "statusCode": 404, "code": "FILE_NOT_FOUND"});
                ("error", "application/json", err.to_string().into_bytes())
            }
        };
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{path}\"\r\nContent-Type: {ctype}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(&bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Response::builder()
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(out))
        .expect("response")
}

async fn download(State(st): S, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(path) = q.get("path") else { return nest(400, "path is required") };
    match read_file(&s.container, path).await {
        Ok(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        Err(e) => nest(404, &format!("file not found: {e}")),
    }
}

async fn delete_file(State(st): S, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(path) = q.get("path") else { return nest(400, "path is required") };
    match docker(&["exec", &s.container, "rm", "-rf", "--", path]).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => nest(500, &e),
    }
}

async fn home_dir(State(st): S, Path(id): Path<String>) -> Response {
    let s = match running(&st, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dir = docker(&["exec", &s.container, "sh", "-c", "echo $HOME"]).await.unwrap_or_else(|_| "/root".into());
    Json(json!({"dir": dir})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_the_daemon() {
        assert_eq!(split_command("sh -c 'echo \"a b\"'  x"), ["sh", "-c", "echo \"a b\"", "x"]);
        // No escapes: the shell idiom for a quote inside quotes falls apart.
        assert_eq!(split_command(r"echo 'it'\''s'"), ["echo", r"it\s"]);
    }

    #[test]
    fn multipart_round_trip() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n/tmp/a\r\n--XX\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"/tmp/a\"\r\n\r\nhi\r\nthere\r\n--XX--\r\n";
        let parts = multipart_parts(body, "XX");
        assert_eq!(parts.len(), 2);
        assert_eq!(disposition(&parts[0].0, "name").as_deref(), Some("files[0].path"));
        assert_eq!(parts[0].1, b"/tmp/a");
        assert_eq!(parts[1].1, b"hi\r\nthere");
        assert_eq!(disposition(&parts[1].0, "filename").as_deref(), Some("/tmp/a"));
    }
}
