//! A fake Vercel Sandbox API: the current SDK's routes (`POST /api/v3/sandboxes`, the rest under
//! `/api/v2/sandboxes/…`), backed by one real Docker container per sandbox.
//!
//! ```ignore
//! let fake = FakeVercel::start().await;            // 127.0.0.1:<free port>
//! // SBX_VERCEL_API_URL=fake.api_url()  VERCEL_TOKEN=fake.token()  VERCEL_TEAM_ID=…  VERCEL_PROJECT_ID=…  (fake.env())
//! fake.fail_next("POST /api/v3/sandboxes", 429, Some(1));   // the next create answers 429, Retry-After: 1
//! ```
//!
//! What it speaks is what `shared/providers/vercel.md` records of the official SDK (`vercel-sandbox`
//! 0.10.0), and `tests/oracle/test_vercel.py` drives it with that SDK:
//! - Control plane ([`control`]): create (`projectId`, `name`, `image`, `ports`, `timeout` ms,
//!   `resources {vcpus, memory}`, `env`, `tags`, `networkPolicy`) → the envelope
//!   `{sandbox, session, routes}`, already `running`; get (`resume=true` starts a stopped sandbox
//!   again in a new session), list (`project`, one `tags=key:value`, `namePrefix`, `limit`, `cursor`),
//!   delete, session get/stop/extend-timeout. Each session ends by itself when its timeout runs out
//!   (a reaper stops the container), as Vercel's do.
//! - Commands ([`cmd`]): start detached (`{command}`) or attached (`?wait=true&logs=true`: NDJSON
//!   command record, output records, final command record), get (`?wait=true` long-polls until it
//!   exits), logs (NDJSON replayed from the start, following until the end), kill, list. Output is
//!   text (JSON strings), as Vercel's is; the command's `timeout` SIGKILLs it (exit 137).
//! - Files ([`fs`]): write (a gzip tar unpacked under `x-cwd`, chunked bodies welcome), read (raw
//!   bytes; 404 `file_not_found`), mkdir.
//! - Routes ([`control`]): each exposed port gets a loopback listener (its `url`) that proxies HTTP to
//!   the container's port, as Vercel's public `*.vercel.run` routes do.
//! - Every request wants `Authorization: Bearer <token>` and `teamId=<team>` (403 `forbidden`
//!   otherwise, the body Vercel sends for a bad token); the project must match. Errors are
//!   `{"error": {"code", "message"}}`. A session that is stopped answers 410 `sandbox_stopped`.
//!   [`FakeVercel::fail_next`] makes the next request to a route (method and pattern) answer a status
//!   of our choosing; `POST /_fake/fail` `{"route", "status", "retryAfter"?, "times"?}` does the same
//!   from another process.
//!
//! Containers are named `fake-vercel-<port>-<name>` and labelled `dev.sbx.fake=vercel`; they are
//! removed on delete and when the fake is dropped.

mod cmd;
mod control;
mod fs;

use super::faults::{Faults, InjectBody};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

/// The Docker label every container of the fake carries (value `vercel`).
pub const CONTAINER_LABEL: &str = "dev.sbx.fake";
/// A sandbox's default working directory, as on Vercel.
pub const DEFAULT_CWD: &str = "/vercel/sandbox";

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Image of every sandbox that names none.
    pub image: String,
    /// The token it accepts.
    pub token: String,
    /// The team id it wants in `teamId`.
    pub team_id: String,
    /// The project sandboxes belong to.
    pub project_id: String,
    /// Where to listen.
    pub bind: SocketAddr,
    /// The longest `GET …/cmd/{id}?wait=true` holds a request before it answers with the command still
    /// running (`exitCode: null`), as a proxy's own limit would.
    pub max_wait: std::time::Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            image: std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into()),
            token: format!("fake-vercel-{}", crate::random_token()),
            team_id: format!("team_{}", &crate::random_token()[..12]),
            project_id: format!("prj_{}", &crate::random_token()[..12]),
            bind: ([127, 0, 0, 1], 0).into(),
            max_wait: std::time::Duration::from_secs(60),
        }
    }
}

/// A running fake Vercel. Dropping it removes every container it made.
pub struct FakeVercel {
    state: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub(crate) struct Shared {
    config: FakeConfig,
    /// The fake's own port (container names carry it, so two fakes never collide).
    port: u16,
    sandboxes: Mutex<HashMap<String, control::Sb>>,
    commands: Mutex<HashMap<String, Arc<cmd::Cmd>>>,
    routes: Mutex<HashMap<(String, u16), control::RouteProxy>>,
    faults: Faults,
    http: reqwest::Client,
}

impl FakeVercel {
    /// Starts on loopback with the default config.
    pub async fn start() -> Self {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts with `config`.
    pub async fn start_with(config: FakeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind(config.bind).await.expect("fake vercel: bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Shared {
            config,
            port: addr.port(),
            sandboxes: Mutex::default(),
            commands: Mutex::default(),
            routes: Mutex::default(),
            faults: Faults::default(),
            http: reqwest::Client::builder().no_proxy().build().expect("reqwest"),
        });
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { let _ = rx.await; }).await;
        });
        control::spawn_reaper(Arc::downgrade(&state));
        Self { state, addr, shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:<port>/api` — the base URL (the SDK's `base_url`, sbx's `SBX_VERCEL_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.state.config.token
    }

    /// The team id it wants.
    pub fn team_id(&self) -> &str {
        &self.state.config.team_id
    }

    /// The project id sandboxes belong to.
    pub fn project_id(&self) -> &str {
        &self.state.config.project_id
    }

    /// The environment that points sbx at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SBX_VERCEL_API_URL".into(), self.api_url()),
            ("VERCEL_TOKEN".into(), self.token().into()),
            ("VERCEL_TEAM_ID".into(), self.team_id().into()),
            ("VERCEL_PROJECT_ID".into(), self.project_id().into()),
        ]
    }

    /// Makes the next request to `route` (`"<METHOD> <pattern>"`, e.g. `"POST /api/v3/sandboxes"`)
    /// answer `status` with a Vercel error body, and a `Retry-After` header when given.
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

    /// Names of the sandboxes that exist.
    pub fn sandbox_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.sandboxes.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    /// The Docker container behind sandbox `name`.
    pub fn container_of(&self, name: &str) -> Option<String> {
        self.state.sandboxes.lock().unwrap().get(name).map(|s| s.container.clone())
    }

    /// The session timeout (ms) and status of sandbox `name`'s current session.
    pub fn session_of(&self, name: &str) -> Option<(u64, String)> {
        self.state.sandboxes.lock().unwrap().get(name).map(|s| (s.session.timeout, s.session.status.to_owned()))
    }

    /// Stops serving and removes every container.
    pub fn shutdown(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.state.routes.lock().unwrap().clear();
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

impl Drop for FakeVercel {
    fn drop(&mut self) {
        self.cleanup();
    }
}

pub(crate) type S = State<Arc<Shared>>;

fn router(state: Arc<Shared>) -> Router {
    const SES: &str = "/api/v2/sandboxes/sessions/{sid}";
    Router::new()
        .route("/api/v3/sandboxes", post(control::create))
        .route("/api/v2/sandboxes", get(control::list))
        .route("/api/v2/sandboxes/{name}", get(control::get_one).delete(control::remove))
        .route(SES, get(control::get_session))
        .route(&format!("{SES}/stop"), post(control::stop))
        .route(&format!("{SES}/extend-timeout"), post(control::extend))
        .route(&format!("{SES}/cmd"), post(cmd::start).get(cmd::list))
        .route(&format!("{SES}/cmd/{{cid}}"), get(cmd::get_one))
        .route(&format!("{SES}/cmd/{{cid}}/logs"), get(cmd::logs))
        .route(&format!("{SES}/cmd/{{cid}}/kill"), post(cmd::kill))
        .route(&format!("{SES}/fs/write"), post(fs::write))
        .route(&format!("{SES}/fs/read"), post(fs::read))
        .route(&format!("{SES}/fs/mkdir"), post(fs::mkdir))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .route("/_fake/fail", post(inject).delete(clear_faults))
        // Uploads carry whole runtime binaries (the fake buffers bodies; the real one streams).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// A Vercel error response.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (s, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// `POST /_fake/fail` (not Vercel's): [`FakeVercel::fail_times`] for out-of-process clients (the oracle).
async fn inject(State(st): S, Json(b): Json<InjectBody>) -> Response {
    st.faults.inject(b);
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /_fake/fail`: forgets every pending fault.
async fn clear_faults(State(st): S) -> Response {
    st.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// Hit counting, auth (token and team), then fault injection, before every route.
async fn gate(State(st): S, path: MatchedPath, Query(q): Query<HashMap<String, String>>, req: Request, next: Next) -> Response {
    let route = format!("{} {}", req.method(), path.as_str());
    st.faults.count(&route);
    if std::env::var("SBX_FAKE_VERCEL_LOG").is_ok_and(|v| v == "1") {
        eprintln!("fake-vercel: {} {}", req.method(), req.uri());
    }
    let want = format!("Bearer {}", st.config.token);
    if req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        let body = json!({"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": true}});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    if q.get("teamId") != Some(&st.config.team_id) {
        return error(403, "forbidden", "You don't have permission to access this team");
    }
    let fault = st.faults.take(&route);
    if let Some((status, retry_after)) = fault {
        let (code, message) = match status {
            429 => ("rate_limited", "Too many requests, slow down"),
            500 => ("internal_server_error", "An unexpected internal error occurred"),
            _ => ("injected_fault", "Injected fault"),
        };
        let mut resp = error(status, code, message);
        if let Some(s) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return resp;
    }
    next.run(req).await
}

/// Runs `docker args…`: stdout (trimmed) on success, stderr on failure.
pub(crate) async fn docker(args: &[&str]) -> Result<String, String> {
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

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The running session `sid` and its sandbox's container: 404 for an unknown session, 410
/// `sandbox_stopped` for one that ended.
#[allow(clippy::result_large_err)] // the error is the response itself, returned as is
pub(crate) fn running(st: &Shared, sid: &str) -> Result<(String, String), Response> {
    let map = st.sandboxes.lock().unwrap();
    let Some(sb) = map.values().find(|s| s.session.id == sid || s.old_sessions.iter().any(|o| o == sid)) else {
        return Err(error(404, "not_found", &format!("Session {sid} not found")));
    };
    if sb.session.id != sid || sb.session.status != "running" {
        return Err(error(410, "sandbox_stopped", &format!("Session {sid} is stopped")));
    }
    Ok((sb.name.clone(), sb.container.clone()))
}

/// A JSON body, or Vercel's 400.
#[allow(clippy::result_large_err)]
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| error(400, "bad_request", &format!("invalid request body: {e}")))
}
