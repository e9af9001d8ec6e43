//! The control plane: REST under `X-API-KEY` (create, list, get, kill, pause, connect, timeout) and
//! the fake's own fault injection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{
    docker, error, fault_response, header, now, query_params, random_id, rfc3339, str_map, take_fault, Fault, Inner,
    Route, Sbx, CONTAINER_LABEL, DEFAULT_TIMEOUT, ENVD_VERSION,
};

pub(super) async fn control(st: &Arc<Inner>, req: Request) -> Response {
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
