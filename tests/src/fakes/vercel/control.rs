//! The fake's control plane: sandboxes, sessions (with their timeouts) and the routes of exposed ports.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{docker, error, now_ms, parse, Shared, CONTAINER_LABEL, DEFAULT_CWD, S};

#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) requested_at: u64,
    pub(crate) started_at: u64,
    pub(crate) stopped_at: Option<u64>,
    /// Milliseconds from `started_at`.
    pub(crate) timeout: u64,
}

#[derive(Clone)]
pub(crate) struct Sb {
    pub(crate) name: String,
    pub(crate) container: String,
    pub(crate) image: Option<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) ports: Vec<u16>,
    pub(crate) vcpus: u64,
    pub(crate) memory: u64,
    pub(crate) region: String,
    pub(crate) network_policy: Value,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
    pub(crate) session: Session,
    /// Sessions this sandbox had before (they answer 410).
    pub(crate) old_sessions: Vec<String>,
}

/// A loopback listener standing in for a port's public route.
pub(crate) struct RouteProxy {
    url: String,
    subdomain: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RouteProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn session_json(st: &Shared, s: &Sb) -> Value {
    json!({
        "id": s.session.id, "sourceSandboxName": s.name, "projectId": st.config.project_id,
        "status": s.session.status, "cwd": DEFAULT_CWD, "region": s.region, "memory": s.memory, "vcpus": s.vcpus,
        "timeout": s.session.timeout, "networkPolicy": s.network_policy, "requestedAt": s.session.requested_at,
        "startedAt": s.session.started_at, "stoppedAt": s.session.stopped_at,
    })
}

fn sandbox_json(st: &Shared, s: &Sb) -> Value {
    json!({
        "name": s.name, "currentSessionId": s.session.id, "image": s.image, "status": s.session.status,
        "persistent": false, "projectId": st.config.project_id, "cwd": DEFAULT_CWD, "region": s.region,
        "memory": s.memory, "vcpus": s.vcpus, "timeout": s.session.timeout, "networkPolicy": s.network_policy,
        "statusUpdatedAt": s.updated_at, "createdAt": s.created_at, "updatedAt": s.updated_at, "tags": s.tags,
    })
}

fn routes_json(st: &Shared, s: &Sb) -> Value {
    let routes = st.routes.lock().unwrap();
    let list: Vec<Value> = s
        .ports
        .iter()
        .filter_map(|p| routes.get(&(s.name.clone(), *p)).map(|r| json!({"url": r.url, "port": p, "subdomain": r.subdomain})))
        .collect();
    Value::Array(list)
}

fn envelope(st: &Shared, s: &Sb) -> Value {
    json!({"sandbox": sandbox_json(st, s), "session": session_json(st, s), "routes": routes_json(st, s)})
}

fn session_id() -> String {
    format!("sbx_sess_{}", &crate::random_token()[..20])
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CreateBody {
    project_id: String,
    name: Option<String>,
    image: Option<String>,
    ports: Vec<u16>,
    timeout: Option<u64>,
    resources: Option<Resources>,
    env: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    network_policy: Option<Value>,
    region: Option<String>,
    source: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resources {
    vcpus: Option<u64>,
    memory: Option<u64>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 128 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

pub(crate) async fn create(State(st): S, body: Bytes) -> Response {
    let body: CreateBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.project_id != st.config.project_id {
        return error(404, "project_not_found", &format!("Project {} not found", body.project_id));
    }
    if body.source.is_some() {
        return error(400, "bad_request", "the fake does not clone sources");
    }
    if body.ports.len() > 4 {
        return error(400, "bad_request", "At most 4 ports can be exposed");
    }
    let name = body.name.clone().unwrap_or_else(|| format!("sandbox-{}", &crate::random_token()[..12]));
    if !valid_name(&name) {
        return error(400, "bad_request", &format!("invalid sandbox name `{name}`"));
    }
    let image = body.image.clone().unwrap_or_else(|| st.config.image.clone());
    if docker(&["image", "inspect", "--format", "{{.Id}}", &image]).await.is_err() {
        return error(400, "image_not_found", &format!("Image {image} not found (the fake only runs local images)"));
    }
    {
        // Claim the name before the slow part, so two creates of one name cannot both win.
        let mut map = st.sandboxes.lock().unwrap();
        if map.contains_key(&name) {
            return error(409, "sandbox_already_exists", &format!("A sandbox named {name} already exists"));
        }
        let now = now_ms();
        let container = format!("fake-vercel-{}-{name}", st.port);
        let (vcpus, memory) = match &body.resources {
            Some(r) => {
                let v = r.vcpus.unwrap_or(1).max(1);
                (v, r.memory.unwrap_or(v * 2048))
            }
            None => (2, 4096),
        };
        map.insert(
            name.clone(),
            Sb {
                name: name.clone(),
                container,
                image: body.image.clone(),
                tags: body.tags.clone(),
                ports: body.ports.clone(),
                vcpus,
                memory,
                region: body.region.clone().unwrap_or_else(|| "iad1".into()),
                network_policy: body.network_policy.clone().unwrap_or_else(|| json!({"mode": "allow-all"})),
                created_at: now,
                updated_at: now,
                session: Session {
                    id: session_id(),
                    status: "pending",
                    requested_at: now,
                    started_at: now,
                    stopped_at: None,
                    timeout: body.timeout.unwrap_or(5 * 60 * 1000),
                },
                old_sessions: Vec::new(),
            },
        );
    }
    let sb = st.sandboxes.lock().unwrap()[&name].clone();
    let host_cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--init".into(),
        "--name".into(),
        sb.container.clone(),
        "--label".into(),
        format!("{CONTAINER_LABEL}=vercel"),
        "--label".into(),
        format!("{CONTAINER_LABEL}.sandbox={name}"),
        "-w".into(),
        DEFAULT_CWD.into(),
        "--cpus".into(),
        sb.vcpus.min(host_cpus).to_string(),
        "--memory".into(),
        format!("{}m", sb.memory),
    ];
    for (k, v) in &body.env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([image, "sleep".into(), "infinity".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = docker(&argv).await {
        let _ = docker(&["rm", "-f", &sb.container]).await;
        st.sandboxes.lock().unwrap().remove(&name);
        return error(500, "internal_server_error", &format!("failed to start the sandbox: {e}"));
    }
    for port in &sb.ports {
        if let Err(e) = open_route(&st, &name, *port).await {
            return error(500, "internal_server_error", &e);
        }
    }
    let Some(sb) = set_status(&st, &name, "running") else {
        return error(404, "not_found", &format!("Sandbox {name} was deleted while it was created"));
    };
    Json(envelope(&st, &sb)).into_response()
}

fn set_status(st: &Shared, name: &str, status: &'static str) -> Option<Sb> {
    let mut map = st.sandboxes.lock().unwrap();
    let s = map.get_mut(name)?;
    s.session.status = status;
    s.updated_at = now_ms();
    if status == "running" {
        s.session.started_at = s.updated_at;
    }
    if status == "stopped" {
        s.session.stopped_at = Some(s.updated_at);
    }
    Some(s.clone())
}

async fn open_route(st: &Arc<Shared>, name: &str, port: u16) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| format!("route listener: {e}"))?;
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().fallback(proxy).with_state((st.clone(), name.to_owned(), port));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { let _ = rx.await; }).await;
    });
    let subdomain = format!("sb-{}", &crate::random_token()[..12]);
    st.routes.lock().unwrap().insert((name.to_owned(), port), RouteProxy { url, subdomain, shutdown: Some(tx) });
    Ok(())
}

/// A route: the request goes to the container's port as it came (Vercel's edge adds no auth).
async fn proxy(State((st, name, port)): State<(Arc<Shared>, String, u16)>, req: Request) -> Response {
    let container = match st.sandboxes.lock().unwrap().get(&name) {
        Some(s) if s.session.status == "running" => s.container.clone(),
        Some(_) => return error(502, "sandbox_stopped", "The sandbox is not running"),
        None => return error(404, "not_found", "Sandbox not found"),
    };
    let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &container]).await;
    let Some(ip) = ip.ok().filter(|s| !s.is_empty()) else { return error(502, "bad_gateway", "no address") };
    let (parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = st.http.request(parts.method.clone(), format!("http://{ip}:{port}{pq}"));
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONNECTION {
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
            b.body(Body::from_stream(resp.bytes_stream())).unwrap_or_else(|e| error(502, "bad_gateway", &e.to_string()))
        }
        Err(e) => error(502, "bad_gateway", &format!("the sandbox did not answer on port {port}: {e}")),
    }
}

fn project_ok(st: &Shared, q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_none_or(|p| *p == st.config.project_id)
}

pub(crate) async fn get_one(State(st): S, Path(name): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !project_ok(&st, &q, "projectId") {
        return error(404, "not_found", &format!("Sandbox {name} not found"));
    }
    let Some(sb) = st.sandboxes.lock().unwrap().get(&name).cloned() else {
        return error(404, "not_found", &format!("Sandbox {name} not found"));
    };
    if q.get("resume").map(String::as_str) == Some("true") && sb.session.status == "stopped" {
        // A new session on the same sandbox.
        if let Err(e) = docker(&["start", &sb.container]).await {
            return error(500, "internal_server_error", &format!("failed to resume: {e}"));
        }
        let mut map = st.sandboxes.lock().unwrap();
        let Some(s) = map.get_mut(&name) else { return error(404, "not_found", "deleted meanwhile") };
        let old = std::mem::replace(&mut s.session.id, session_id());
        s.old_sessions.push(old);
        let now = now_ms();
        s.session = Session { id: s.session.id.clone(), status: "running", requested_at: now, started_at: now, stopped_at: None, timeout: s.session.timeout };
        let s = s.clone();
        drop(map);
        let mut env = envelope(&st, &s);
        env["resumed"] = json!(true);
        return Json(env).into_response();
    }
    Json(envelope(&st, &sb)).into_response()
}

pub(crate) async fn list(State(st): S, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("project") != Some(&st.config.project_id) {
        return error(400, "bad_request", "`project` is required and must be a project of the team");
    }
    let tag = q.get("tags").map(|t| t.split_once(':').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap_or((t.clone(), String::new())));
    let prefix = q.get("namePrefix").cloned().unwrap_or_default();
    let mut all: Vec<Sb> = st
        .sandboxes
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.name.starts_with(&prefix))
        .filter(|s| tag.as_ref().is_none_or(|(k, v)| s.tags.get(k) == Some(v)))
        .cloned()
        .collect();
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.name.cmp(&b.name)));
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50).clamp(1, 100);
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(start).take(limit).map(|s| sandbox_json(&st, s)).collect();
    let next = (start + limit < all.len()).then(|| (start + limit).to_string());
    let prev = (start > 0).then(|| start.saturating_sub(limit).to_string());
    Json(json!({"sandboxes": page, "pagination": {"count": all.len(), "next": next, "prev": prev}})).into_response()
}

pub(crate) async fn remove(State(st): S, Path(name): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !project_ok(&st, &q, "projectId") {
        return error(404, "not_found", &format!("Sandbox {name} not found"));
    }
    let Some(mut sb) = st.sandboxes.lock().unwrap().remove(&name) else {
        return error(404, "not_found", &format!("Sandbox {name} not found"));
    };
    st.routes.lock().unwrap().retain(|(n, _), _| *n != name);
    let _ = docker(&["rm", "-f", "-v", &sb.container]).await;
    sb.session.status = "stopped";
    Json(json!({"sandbox": sandbox_json(&st, &sb)})).into_response()
}

fn find_session(st: &Shared, sid: &str) -> Option<Sb> {
    st.sandboxes.lock().unwrap().values().find(|s| s.session.id == sid).cloned()
}

pub(crate) async fn get_session(State(st): S, Path(sid): Path<String>) -> Response {
    match find_session(&st, &sid) {
        Some(s) => Json(json!({"session": session_json(&st, &s)})).into_response(),
        None => error(404, "not_found", &format!("Session {sid} not found")),
    }
}

/// Stops a session's container; the sandbox stays (and `resume=true` starts it again).
async fn stop_session(st: &Shared, name: &str) -> Option<Sb> {
    let sb = st.sandboxes.lock().unwrap().get(name).cloned()?;
    if sb.session.status == "running" {
        set_status(st, name, "stopping");
        let _ = docker(&["stop", "-t", "1", &sb.container]).await;
    }
    set_status(st, name, "stopped")
}

pub(crate) async fn stop(State(st): S, Path(sid): Path<String>) -> Response {
    let Some(sb) = find_session(&st, &sid) else { return error(404, "not_found", &format!("Session {sid} not found")) };
    match stop_session(&st, &sb.name).await {
        Some(s) => Json(json!({"session": session_json(&st, &s), "sandbox": sandbox_json(&st, &s)})).into_response(),
        None => error(404, "not_found", &format!("Session {sid} not found")),
    }
}

#[derive(Deserialize)]
pub(crate) struct ExtendBody {
    duration: u64,
}

pub(crate) async fn extend(State(st): S, Path(sid): Path<String>, body: Bytes) -> Response {
    let body: ExtendBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut map = st.sandboxes.lock().unwrap();
    let Some(s) = map.values_mut().find(|s| s.session.id == sid) else {
        return error(404, "not_found", &format!("Session {sid} not found"));
    };
    if s.session.status != "running" {
        return error(410, "sandbox_stopped", &format!("Session {sid} is stopped"));
    }
    s.session.timeout += body.duration;
    let s = s.clone();
    drop(map);
    Json(json!({"session": session_json(&st, &s)})).into_response()
}

/// Ends sessions whose timeout ran out, as Vercel does (every 200 ms, while the fake lives).
pub(crate) fn spawn_reaper(st: Weak<Shared>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(st) = st.upgrade() else { return };
            let now = now_ms();
            let due: Vec<String> = st
                .sandboxes
                .lock()
                .unwrap()
                .values()
                .filter(|s| s.session.status == "running" && now >= s.session.started_at + s.session.timeout)
                .map(|s| s.name.clone())
                .collect();
            for name in due {
                stop_session(&st, &name).await;
            }
        }
    });
}
