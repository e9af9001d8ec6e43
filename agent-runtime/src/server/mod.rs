//! The runtime's HTTP server: configuration, shared state, the router, and serving over TCP and a
//! Unix socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{Health, Problem, ProblemKind};

mod auth;
mod idle;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod fs;
mod llm_relay;
pub mod processes;
pub mod pty;
mod runtime_log;
mod session_env;
pub mod sessions;

pub use error::{ApiError, ApiJson, ApiQuery, ApiResult};

/// CORS settings; CORS is off unless at least one origin is allowed.
#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// Allowed origins (`*` for any).
    pub allow_origins: Vec<String>,
    /// Allowed methods (default: the common ones).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (default: authorization and content-type).
    pub allow_headers: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: bool,
}

impl CorsConfig {
    /// Refuses what browsers (and the CORS layer) refuse: credentials together with a wildcard origin,
    /// method or header. Checked when the config is read, so a bad flag is an error that says what to
    /// set instead of a panic at start.
    pub fn validate(&self) -> Result<(), String> {
        if !self.allow_credentials {
            return Ok(());
        }
        let star = |v: &[String]| v.iter().any(|o| o.trim() == "*");
        if star(&self.allow_origins) {
            return Err("--cors-allow-origin '*' cannot be combined with --cors-allow-credentials (browsers refuse \
                 credentials for any origin): list the origins you trust, e.g. --cors-allow-origin \
                 https://app.example.com, or drop --cors-allow-credentials"
                .into());
        }
        for (what, flag) in [(&self.allow_methods, "--cors-allow-method"), (&self.allow_headers, "--cors-allow-header")] {
            if star(what) {
                return Err(format!(
                    "{flag} '*' cannot be combined with --cors-allow-credentials: list them one by one, or drop \
                     --cors-allow-credentials"
                ));
            }
        }
        Ok(())
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP address to listen on; `None` listens only on the Unix socket.
    pub addr: Option<SocketAddr>,
    /// Also listen on this Unix socket.
    pub unix_socket: Option<PathBuf>,
    /// The bearer token every route but health requires; `None` (and no `token_sha256`) means no auth
    /// (loopback dev only).
    pub token: Option<String>,
    /// Instead of the token: its SHA-256. A request passes when the SHA-256 of its bearer token equals
    /// this (compared in constant time), so the runtime needs no secret to start.
    pub token_sha256: Option<[u8; 32]>,
    /// Confine every file path to this directory.
    pub root: Option<PathBuf>,
    /// CORS.
    pub cors: CorsConfig,
    /// Process limits at start-up (changeable over the API).
    pub limits: crate::api::process::ProcessLimits,
    /// The file the runtime logs to, served by `GET /v1/runtime/logs` (`None`: logs go to stdout).
    pub log_file: Option<PathBuf>,
    /// Where sessions' journals and installed agents live (`None`: a temporary directory, so nothing
    /// survives a restart).
    pub state_dir: Option<PathBuf>,
    /// The `sbx-agent` executable that helper subcommands (such as the permission MCP server agents
    /// start) run from; `None` means this process's own executable, which is right unless the server
    /// is embedded in another program (tests).
    pub helper_exe: Option<PathBuf>,
    /// Environment every agent session gets (under its own; see [`crate::server_env::SESSION_ENV_PREFIX`]).
    pub session_env: std::collections::BTreeMap<String, String>,
    /// End the server after this long with no request and no managed process (`None`: never).
    pub idle_timeout: Option<std::time::Duration>,
}

impl ServerConfig {
    /// A config for tests: loopback on an ephemeral port with the given token.
    pub fn loopback(token: Option<String>) -> Self {
        Self {
            addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            unix_socket: None,
            token,
            token_sha256: None,
            root: None,
            cors: CorsConfig::default(),
            limits: Default::default(),
            log_file: None,
            state_dir: None,
            helper_exe: None,
            session_env: Default::default(),
            idle_timeout: None,
        }
    }
}

struct Inner {
    config: ServerConfig,
    started: Instant,
    fs: fs::FsRoot,
    processes: Arc<processes::ProcessManager>,
    sessions: sessions::SessionManager,
    relay: llm_relay::Relay,
}

/// State shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Builds the state from a config.
    pub fn new(config: ServerConfig) -> std::io::Result<Self> {
        let fs = fs::FsRoot::new(config.root.clone())?;
        let processes = Arc::new(processes::ProcessManager::new(config.limits.clone(), fs.clone()));
        let sessions = sessions::SessionManager::new(config.state_dir.clone(), config.helper_exe.clone(), config.session_env.clone(), fs.clone())?;
        // ACP agents' terminals run as managed processes.
        sessions.set_processes(Arc::clone(&processes));
        Ok(Self(Arc::new(Inner { config, started: Instant::now(), fs, processes, sessions, relay: Default::default() })))
    }
    /// The config the server started with.
    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }
    /// The file-system root (or none).
    pub fn fs(&self) -> &fs::FsRoot {
        &self.0.fs
    }
    /// The agent sessions.
    pub fn sessions(&self) -> &sessions::SessionManager {
        &self.0.sessions
    }
    /// The managed-process table.
    pub fn processes(&self) -> &processes::ProcessManager {
        &self.0.processes
    }
    /// The LLM relay (keyless sandboxes).
    pub(crate) fn relay(&self) -> &llm_relay::Relay {
        &self.0.relay
    }
    /// How many hosts serve the LLM relay right now.
    pub fn relay_hosts(&self) -> usize {
        self.0.relay.attached()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sbx-agent",
        description = "The sbx in-sandbox runtime API. Every route but /v1/health needs `Authorization: Bearer <token>`. Errors are application/problem+json.",
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Health check: no auth.
#[utoipa::path(get, path = "/v1/health", tag = "health", security(()),
    responses((status = 200, description = "The runtime is up", body = Health)))]
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> ApiJson<Health> {
    ApiJson(Health {
        status: "ok".into(),
        version: crate::VERSION.into(),
        uptime_ms: state.0.started.elapsed().as_millis() as u64,
        pid: std::process::id(),
    })
}

/// The OpenAPI document of every route, generated from the handler types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .merge(fs::router())
        .merge(processes::router())
        .merge(pty::router())
        .merge(runtime_log::router())
        .merge(session_env::router())
        .merge(sessions::router())
}

/// `GET /v1/openapi.json`.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This API's OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json")))]
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

/// Builds the full router (auth, CORS, problem rendering) for `state`.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_router().split_for_parts();
    // The relay's routes are outside the OpenAPI document: `/v1/llm/{provider}/...` is each vendor's
    // own API passed through, and `/v1/llm/relay` is a WebSocket of binary frames (api::llm_relay).
    let mut app = routes
        .merge(llm_relay::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth_unless_health))
        .layer(middleware::from_fn(problem_for_bare_errors))
        .with_state(state.clone());
    if let Some(cors) = cors_layer(&state.config().cors) {
        app = app.layer(cors);
    }
    app
}

async fn auth_unless_health(
    state: axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // Agents' model requests carry the relay token, checked by the relay itself (llm_relay.rs).
    if req.uri().path() == "/v1/health" || req.method() == Method::OPTIONS || llm_relay::is_model_request(req.uri().path()) {
        return next.run(req).await;
    }
    auth::require_bearer(state, req, next).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}; see GET /v1/openapi.json for the API",
        req.method(),
        req.uri().path()
    ))
}

/// Errors produced outside our handlers (405 from the router, 413 from body limits) have no body; give
/// them a problem document like every other error.
async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if (status.is_client_error() || status.is_server_error())
        && !resp.headers().contains_key(header::CONTENT_TYPE)
    {
        let kind = ProblemKind::from_status(status.as_u16());
        let mut problem = Problem::new(kind, format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")));
        problem.status = status.as_u16();
        problem.instance = Some(path);
        let mut out = error::problem_response(&problem);
        *out.status_mut() = status;
        if status == StatusCode::METHOD_NOT_ALLOWED {
            if let Some(allow) = resp.headers().get(header::ALLOW) {
                out.headers_mut().insert(header::ALLOW, allow.clone());
            }
        }
        return out;
    }
    resp
}

fn cors_layer(cors: &CorsConfig) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if cors.allow_origins.is_empty() {
        return None;
    }
    let mut layer = CorsLayer::new();
    layer = if cors.allow_origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let origins: Vec<HeaderValue> =
            cors.allow_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        layer.allow_origin(origins)
    };
    let methods: Vec<Method> = if cors.allow_methods.is_empty() {
        vec![Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH]
    } else {
        cors.allow_methods.iter().filter_map(|m| m.parse().ok()).collect()
    };
    let headers: Vec<HeaderName> = if cors.allow_headers.is_empty() {
        vec![header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE, HeaderName::from_static("last-event-id")]
    } else {
        cors.allow_headers.iter().filter_map(|h| h.parse().ok()).collect()
    };
    layer = layer.allow_methods(methods).allow_headers(headers);
    if cors.allow_credentials {
        layer = layer.allow_credentials(true);
    }
    Some(layer)
}

/// A server that is listening; dropping it does not stop it, call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The bound TCP address, if any.
    pub addr: Option<SocketAddr>,
    /// The Unix socket path, if any.
    pub unix_socket: Option<PathBuf>,
    /// The state (tests use it to inspect processes).
    pub state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    activity: Arc<idle::Activity>,
}

impl RunningServer {
    /// Base URL of the TCP listener.
    pub fn base_url(&self) -> Option<String> {
        self.addr.map(|a| format!("http://{a}"))
    }
    /// Stops accepting, lets in-flight requests finish, and kills managed processes.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Kill processes first: a log follow stays in flight until its process exits, so waiting for
        // in-flight responses before killing would wait for every followed process to end by itself.
        self.state.sessions().shutdown_all().await;
        self.state.processes().kill_all().await;
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(p) = &self.unix_socket {
            let _ = std::fs::remove_file(p);
        }
    }
    /// Waits until the server stops (after SIGTERM/SIGINT when [`serve`] installed the handler).
    pub async fn wait(self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
        self.shutdown().await;
    }
}

/// Binds the listeners and starts serving in the background.
pub async fn start(config: ServerConfig) -> std::io::Result<RunningServer> {
    config.cors.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let state = AppState::new(config.clone())?;
    let recovered = state.sessions().recover().await?;
    if recovered > 0 {
        tracing::info!(sessions = recovered, "reopened sessions from their journals");
    }
    let activity = idle::Activity::new();
    let mut app = router(state.clone());
    if config.idle_timeout.is_some() {
        app = app.layer(middleware::from_fn_with_state(activity.clone(), idle::track));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut addr = None;
    if let Some(a) = config.addr {
        let listener = tokio::net::TcpListener::bind(a).await?;
        let bound = listener.local_addr()?;
        addr = Some(bound);
        // Agents reach the LLM relay on this listener, over loopback.
        let ip = match bound.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        state.sessions().set_relay_root(format!("http://{}", SocketAddr::new(ip, bound.port())));
        let app = app.clone();
        let mut rx = rx.clone();
        // Streams (exec output, session events, relayed model answers) are many small writes: without
        // TCP_NODELAY each waits on the peer's delayed ACK (measured: +80 ms per relayed answer).
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
        }));
    }
    if let Some(path) = &config.unix_socket {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // A stale socket from a previous run would make bind fail.
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
        }));
    }
    if tasks.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "nothing to listen on: give a TCP address or --unix PATH",
        ));
    }
    Ok(RunningServer { addr, unix_socket: config.unix_socket.clone(), state, shutdown: tx, tasks, activity })
}

/// Starts the server and stops it cleanly on SIGTERM or SIGINT.
pub async fn serve(config: ServerConfig) -> std::io::Result<()> {
    let idle_timeout = config.idle_timeout;
    let server = start(config).await?;
    if let Some(limit) = idle_timeout {
        let (tx, activity, state) = (server.shutdown.clone(), server.activity.clone(), server.state.clone());
        tokio::spawn(async move {
            idle::idle(activity, state, limit).await;
            runtime_log::shutting_down();
            let _ = tx.send(true);
        });
    }
    let tx = server.shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        runtime_log::shutting_down();
        let _ = tx.send(true);
    });
    server.wait().await;
    Ok(())
}

/// The path of this executable, for starting it again (`daemon start`) or naming it to others (the
/// claude permission helper). When the file was replaced after this process started (a second
/// `sbx up` on an SSH host renames the same build into place), the kernel reports the old path with
/// ` (deleted)`: the same path now holds the same build (the name carries its hash), so that is used.
pub fn own_exe() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.exists() {
        return Ok(exe);
    }
    let replaced = exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")).map(std::path::PathBuf::from);
    Ok(replaced.filter(|p| p.exists()).unwrap_or(exe))
}
