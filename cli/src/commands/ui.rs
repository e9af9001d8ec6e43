//! `sbx ui`: a local inspector in the browser. It serves one page on 127.0.0.1 (nothing else is
//! bound), behind a random token given in the URL it prints: the sandboxes on every provider (as
//! `sbx ls` lists them) with status and age, and per sandbox its sessions with their events live, the permission prompts to
//! answer, a file browser with download and upload, processes with their logs, and a terminal.
//!
//! The page talks only to this server, which forwards `/api/sb/NAME/v1/…` to that sandbox's runtime
//! with the runtime's token (the page never sees it) and bridges the terminal's WebSocket to the
//! runtime's PTY. Bytes pass through unchanged. `--read-only` refuses everything but reads, and the
//! terminal.
//!
//! The page (`cli/assets/ui/`) is in the binary, with its one library: term.js from Debian's
//! `libjs-term.js` (MIT; see `cli/assets/ui/vendor/README.md`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use clap::Args;
use futures::{SinkExt as _, StreamExt as _};
use sbx_agent::client::{Client, PtyEvent, PtyOptions};
use serde::Deserialize;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx ui` flags.
#[derive(Args, Debug)]
#[command(after_help = "The URL printed holds a random token: anyone with it can act on your sandboxes while sbx ui runs.\n\n\
Examples:\n  sbx ui --open\n  sbx ui --read-only --port 8080      # for sharing a screen")]
pub struct UiArgs {
    /// The port on 127.0.0.1 (default: any free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Only look: no answers to prompts, no uploads, no terminal, no writes of any kind.
    #[arg(long)]
    pub read_only: bool,
    /// Open the page in the browser ($BROWSER, else xdg-open / open).
    #[arg(long)]
    pub open: bool,
}

const TEMPLATE: &str = include_str!("../../assets/ui/ui.html");
const STYLE: &str = include_str!("../../assets/ui/ui.css");
const SCRIPT: &str = include_str!("../../assets/ui/ui.js");
const TERM_JS: &str = include_str!("../../assets/ui/vendor/term.js");
const COOKIE: &str = "sbx_ui";

struct Ui {
    token: String,
    read_only: bool,
    /// `127.0.0.1:PORT` and `localhost:PORT`: the only Host headers answered (no DNS rebinding).
    hosts: [String; 2],
    page: String,
    clients: Mutex<HashMap<String, Client>>,
    /// `sbx ls`'s rows (the state merged with every reachable provider's own listing), refreshed in
    /// the background; `None` until the first listing is done.
    listed: Mutex<Option<Vec<super::ls::Row>>>,
}

type Shared = Arc<Ui>;

/// Runs `sbx ui` until Ctrl-C.
pub async fn run(ctx: &Ctx, a: UiArgs) -> Result<Exit> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], a.port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", a.port))?;
    let port = listener.local_addr()?.port();
    let token = sbx_providers::bootstrap::fresh_token();
    let config = serde_json::json!({ "readOnly": a.read_only, "version": env!("CARGO_PKG_VERSION") });
    let page = TEMPLATE
        .replacen("/*{{STYLE}}*/", STYLE, 1)
        .replacen("{{CONFIG}}", &crate::run::html::script_json(&config), 1)
        .replacen("/*{{TERM}}*/", &TERM_JS.replace("</script", "<\\/script"), 1)
        .replacen("/*{{SCRIPT}}*/", SCRIPT, 1);
    let ui = Arc::new(Ui {
        token: token.clone(),
        read_only: a.read_only,
        hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
        page,
        clients: Mutex::new(HashMap::new()),
        listed: Mutex::new(None),
    });
    let shared = ui.clone();
    let app = Router::new()
        .route("/", get(index))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/sandboxes", get(sandboxes))
        .route("/api/sb/{name}/pty", get(pty))
        .route("/api/sb/{name}/v1/{*rest}", any(proxy))
        .layer(axum::middleware::from_fn_with_state(ui.clone(), guard))
        .with_state(ui);
    let url = format!("http://127.0.0.1:{port}/?token={token}");
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({ "url": url, "readOnly": a.read_only }));
    } else {
        ctx.out.line(&url);
        ctx.out.note(format!("sbx ui{} on 127.0.0.1:{port}; Ctrl-C stops it", if a.read_only { " (read-only)" } else { "" }));
    }
    if a.open {
        crate::run::open_url(&url)?;
    }
    // The providers' listings take a moment (cloud APIs): refreshed here, beside the server, while the
    // page answers from the state alone until the first one is in.
    let refresh = async {
        loop {
            match super::ls::rows(ctx, None).await {
                Ok(rows) => *shared.listed.lock().unwrap_or_else(|e| e.into_inner()) = Some(rows),
                Err(e) => tracing::info!(error = %e, "listing sandboxes"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(15)).await;
        }
    };
    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    tokio::select! {
        served = serve => served?,
        _ = refresh => {}
    }
    Ok(Exit::Success)
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.into()).into_response()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.to_owned())
}

fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Every request: a Host of ours, and the token (in the cookie, a bearer header, or `?token=` on the
/// page itself, which then sets the cookie).
async fn guard(State(ui): State<Shared>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if !ui.hosts.iter().any(|h| h == host) {
        return plain(StatusCode::FORBIDDEN, "sbx ui answers only on 127.0.0.1 and localhost");
    }
    let query_token = (req.uri().path() == "/")
        .then(|| req.uri().query().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_owned))
        .flatten();
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).map(str::to_owned);
    let given = query_token.clone().or(bearer).or_else(|| cookie_token(req.headers()));
    if !given.is_some_and(|t| same(&t, &ui.token)) {
        return plain(StatusCode::UNAUTHORIZED, "sbx ui: open the URL that `sbx ui` printed (it holds the token)");
    }
    let mut resp = next.run(req).await;
    if query_token.is_some() {
        let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", ui.token);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn index(State(ui): State<Shared>) -> Response {
    let csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:";
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, csp), (header::CACHE_CONTROL, "no-store")],
        ui.page.clone(),
    )
        .into_response()
}

/// The sandboxes: this machine's state (status, age, run), with what the providers' own listings
/// say about each (`state`), and the sandboxes they list that the state does not know (`orphan`:
/// made by sbx elsewhere or by a killed `sbx up`; they have no runtime token here).
async fn sandboxes(State(ui): State<Shared>) -> Response {
    let listed = tokio::task::spawn_blocking(|| crate::state::State::open_default().and_then(|s| s.list())).await;
    let records = match listed {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the state: {e:#}")),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let now = crate::state::now_secs();
    let rows = ui.listed.lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let live = rows.as_ref().and_then(|rows| rows.iter().find(|x| !x.orphan && x.name == r.name)).map(|x| x.state.clone());
            serde_json::json!({
                "name": r.name, "provider": r.provider, "status": r.status, "state": live, "createdAt": r.created_at,
                "ageSecs": now.saturating_sub(r.created_at), "runId": r.run_id, "expiresAt": r.expires_at, "orphan": false,
            })
        })
        .collect();
    for x in rows.iter().flatten().filter(|x| x.orphan) {
        v.push(serde_json::json!({
            "name": x.name, "provider": x.provider, "id": x.id, "status": "orphan", "state": x.state, "createdAt": x.created_at,
            "ageSecs": x.created_at.map(|c| now.saturating_sub(c)), "expiresAt": x.expires_at, "orphan": true,
        }));
    }
    axum::Json(v).into_response()
}

impl Ui {
    /// A client for the sandbox's runtime (made once per sandbox).
    async fn client(&self, name: &str) -> Result<Client, Response> {
        if let Some(c) = self.clients.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(c.clone());
        }
        let owned = name.to_owned();
        let rec = tokio::task::spawn_blocking(move || crate::state::State::open_default().and_then(|s| s.get(&owned)))
            .await
            .map_err(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the state: {e:#}")))?
            .ok_or_else(|| plain(StatusCode::NOT_FOUND, format!("no sandbox `{name}`")))?;
        let (Some(endpoint), Some(token)) = (rec.endpoint.clone(), rec.token.clone()) else {
            return Err(plain(StatusCode::CONFLICT, format!("sandbox `{name}` has no runtime yet ({})", rec.status)));
        };
        crate::redact::register(&token);
        let client =
            sbx_providers::bootstrap::RuntimeHandle { endpoint, token }.client().map_err(|e| plain(StatusCode::BAD_GATEWAY, e.to_string()))?;
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), client.clone());
        Ok(client)
    }
}

/// Request headers passed on to the runtime, and response headers passed back.
const PASS_IN: [header::HeaderName; 4] = [header::CONTENT_TYPE, header::ACCEPT, header::RANGE, header::HeaderName::from_static("last-event-id")];
const PASS_OUT: [header::HeaderName; 5] =
    [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::CONTENT_RANGE, header::CONTENT_DISPOSITION, header::CACHE_CONTROL];

/// `/api/sb/NAME/v1/…` → the runtime's `/v1/…`, bodies streamed both ways.
async fn proxy(State(ui): State<Shared>, Path((name, _)): Path<(String, String)>, req: Request) -> Response {
    if ui.read_only && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return plain(StatusCode::FORBIDDEN, "sbx ui is read-only");
    }
    let client = match ui.client(&name).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // The path as sent (still percent-encoded), from `/v1/` on.
    let uri = req.uri().clone();
    let Some(at) = uri.path().find("/v1/") else { return plain(StatusCode::NOT_FOUND, "not an API path") };
    let mut path = uri.path()[at..].to_owned();
    if let Some(q) = uri.query() {
        path.push('?');
        path.push_str(q);
    }
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else { return plain(StatusCode::METHOD_NOT_ALLOWED, "method") };
    let mut rb = client.request(method, &path);
    for h in &PASS_IN {
        if let Some(v) = req.headers().get(h) {
            rb = rb.header(h.as_str(), v.as_bytes());
        }
    }
    let body = req.into_body().into_data_stream();
    rb = rb.body(reqwest::Body::wrap_stream(body));
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("the runtime of `{name}` did not answer: {e}")),
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for h in &PASS_OUT {
        if let Some(v) = resp.headers().get(h.as_str()) {
            out = out.header(h, v.as_bytes());
        }
    }
    // Server-sent events must not wait in a buffer on the way.
    out = out.header("x-accel-buffering", "no");
    out.body(Body::from_stream(resp.bytes_stream())).unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize)]
struct PtyQuery {
    cols: Option<u16>,
    rows: Option<u16>,
}

/// The terminal: the browser's WebSocket (binary frames: input bytes; text frames: `{"cols","rows"}`)
/// bridged to the runtime's PTY (binary frames: output bytes).
async fn pty(ws: WebSocketUpgrade, State(ui): State<Shared>, Path(name): Path<String>, Query(q): Query<PtyQuery>) -> Response {
    if ui.read_only {
        return plain(StatusCode::FORBIDDEN, "sbx ui is read-only: no terminal");
    }
    let client = match ui.client(&name).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let opts = PtyOptions { cols: q.cols.unwrap_or(100).clamp(10, 500), rows: q.rows.unwrap_or(30).clamp(5, 200), ..Default::default() };
    ws.on_upgrade(move |socket| bridge(socket, client, opts))
}

async fn bridge(socket: WebSocket, client: Client, opts: PtyOptions) {
    let (mut to_page, mut from_page) = socket.split();
    let session = match client.pty(&opts).await {
        Ok(s) => s,
        Err(e) => {
            let _ = to_page.send(Message::Text(format!("\r\n[sbx ui: no terminal: {e}]\r\n").into())).await;
            return;
        }
    };
    let (mut w, mut r) = session.split();
    let down = async {
        while let Some(ev) = r.next_event().await {
            let msg = match ev {
                Ok(PtyEvent::Output(b)) => Message::Binary(b),
                Ok(PtyEvent::Exit { exit_code, signal }) => {
                    let how = exit_code.map(|c| format!("exit {c}")).or(signal).unwrap_or_default();
                    Message::Text(format!("\r\n[process ended: {how}]\r\n").into())
                }
                Ok(PtyEvent::Error(e)) | Err(sbx_agent::client::ClientError::Protocol(e)) => Message::Text(format!("\r\n[sbx ui: {e}]\r\n").into()),
                Err(e) => Message::Text(format!("\r\n[sbx ui: {e}]\r\n").into()),
            };
            if to_page.send(msg).await.is_err() {
                break;
            }
        }
        let _ = to_page.close().await;
    };
    let up = async {
        while let Some(Ok(m)) = from_page.next().await {
            let ok = match m {
                Message::Binary(b) => w.send_input(b).await.is_ok(),
                Message::Text(t) => match serde_json::from_str::<serde_json::Value>(t.as_str()) {
                    Ok(v) => match (v["cols"].as_u64(), v["rows"].as_u64()) {
                        (Some(c), Some(r)) => w.resize(c.clamp(10, 500) as u16, r.clamp(5, 200) as u16).await.is_ok(),
                        _ => true,
                    },
                    Err(_) => true,
                },
                Message::Close(_) => false,
                _ => true,
            };
            if !ok {
                break;
            }
        }
        let _ = w.close().await;
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}
