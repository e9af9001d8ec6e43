//! The control plane: `/api/sandbox…` (create, get, list, start, stop, archive, delete, intervals).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{container_ip, docker, find, nest, not_found, sandbox_json, Sb, Shared, CONTAINER_LABEL, S, SNAPSHOT};

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

pub(super) async fn create(State(st): S, body: Bytes) -> Response {
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

pub(super) async fn get_one(State(st): S, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(s) => Json(sandbox_json(&st, &s)).into_response(),
        None => not_found(&id),
    }
}

pub(super) async fn list(State(st): S, Query(q): Query<HashMap<String, String>>) -> Response {
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

pub(super) async fn start(State(st): S, Path(id): Path<String>) -> Response {
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

pub(super) async fn stop(State(st): S, Path(id): Path<String>) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    if s.state == "started" {
        if let Err(e) = docker(&["stop", "-t", "2", &s.container]).await {
            return nest(500, &format!("failed to stop the sandbox: {e}"));
        }
    }
    let state = if s.state == "archived" { "archived" } else { "stopped" };
    set_state(&st, &s.id, state, Some(None)).map(|j| Json(j).into_response()).unwrap_or_else(|| not_found(&id))
}

pub(super) async fn archive(State(st): S, Path(id): Path<String>) -> Response {
    let Some(s) = find(&st, &id) else { return not_found(&id) };
    if s.state != "stopped" && s.state != "archived" {
        return nest(409, "Sandbox is not stopped");
    }
    set_state(&st, &s.id, "archived", None).map(|j| Json(j).into_response()).unwrap_or_else(|| not_found(&id))
}

pub(super) async fn remove(State(st): S, Path(id): Path<String>) -> Response {
    let Some(mut s) = find(&st, &id) else { return not_found(&id) };
    st.previews.lock().unwrap().retain(|(sid, _), _| *sid != s.id);
    let _ = docker(&["rm", "-f", "-v", &s.container]).await;
    st.sandboxes.lock().unwrap().remove(&s.id);
    s.state = "destroying";
    Json(sandbox_json(&st, &s)).into_response()
}

pub(super) async fn set_interval(State(st): S, Path((id, minutes)): Path<(String, i64)>, path: MatchedPath) -> Response {
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

pub(super) async fn touch(State(st): S, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(_) => StatusCode::CREATED.into_response(),
        None => not_found(&id),
    }
}

pub(super) async fn toolbox_url(State(st): S, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(_) => Json(json!({"url": format!("{}/toolbox", st.base_url.lock().unwrap())})).into_response(),
        None => not_found(&id),
    }
}
