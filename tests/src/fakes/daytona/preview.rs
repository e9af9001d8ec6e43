//! Preview links: one loopback listener per (sandbox, port) that checks the preview token and
//! proxies to the container.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use super::{find, nest, not_found, Preview, Shared, PREVIEW_TOKEN_HEADER, S};

pub(super) async fn preview_url(State(st): S, Path((id, port)): Path<(String, u16)>) -> Response {
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
    if crate::fakes::upgrade::is_upgrade(&req) {
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else { return nest(502, "the sandbox has no address") };
        return crate::fakes::upgrade::tunnel(req, (ip, port).into(), &["x-daytona-preview-token"]).await;
    }
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
