//! The edge: per-port hosts (and `E2b-Sandbox-Port`), proxied to the container; WebSocket upgrades
//! pass through as on the real edge.

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Inner;

pub(super) fn edge_error(id: &str, message: &str) -> Response {
    (StatusCode::BAD_GATEWAY, axum::Json(json!({"sandboxId": id, "message": message, "code": 502}))).into_response()
}

pub(super) async fn proxy(st: &Inner, id: &str, port: u16, req: Request) -> Response {
    let Some(s) = st.sandboxes.lock().unwrap().get(id).cloned().filter(|s| !s.paused) else {
        return edge_error(id, "The sandbox was not found");
    };
    if crate::fakes::upgrade::is_upgrade(&req) {
        let Ok(ip) = s.ip.parse::<std::net::IpAddr>() else { return edge_error(id, "the sandbox has no address") };
        return crate::fakes::upgrade::tunnel(req, (ip, port).into(), &["e2b-sandbox-id", "e2b-sandbox-port"]).await;
    }
    let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let url = format!("http://{}:{port}{path}", s.ip);
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    for h in ["host", "e2b-sandbox-id", "e2b-sandbox-port", "connection", "transfer-encoding"] {
        headers.remove(h);
    }
    let body = reqwest::Body::wrap_stream(req.into_body().into_data_stream());
    let resp = st.proxy.request(method, url).headers(headers).body(body).send().await;
    match resp {
        Ok(r) => {
            let mut out = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                if k != "transfer-encoding" && k != "connection" {
                    out = out.header(k, v);
                }
            }
            out.body(Body::from_stream(r.bytes_stream())).unwrap_or_else(|_| edge_error(id, "bad upstream response"))
        }
        Err(e) if e.is_connect() => edge_error(id, &format!("The sandbox is running but port is not open ({port})")),
        Err(e) => edge_error(id, &format!("proxy error: {e}")),
    }
}
