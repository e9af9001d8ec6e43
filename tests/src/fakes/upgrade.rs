//! HTTP upgrades (WebSockets) through a fake's proxy, as the real providers' proxies pass them: the
//! request head goes to the container as it came (minus the proxy's own headers), the answer's head
//! comes back, and after a `101` both connections are spliced byte for byte.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `req` asks to switch protocols.
pub(crate) fn is_upgrade(req: &Request) -> bool {
    req.headers().contains_key(header::UPGRADE)
}

/// Passes the upgrade request `req` to `upstream`, leaving out the headers named in `drop`; an error
/// is a `502` whose body says why.
pub(crate) async fn tunnel(req: Request, upstream: SocketAddr, drop: &[&str]) -> Response {
    match try_tunnel(req, upstream, drop).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = Response::new(Body::from(format!("fake proxy: upgrade to {upstream} failed: {e}")));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    }
}

async fn try_tunnel(mut req: Request, upstream: SocketAddr, drop: &[&str]) -> std::io::Result<Response> {
    let mut conn = tokio::net::TcpStream::connect(upstream).await?;
    let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let mut head = format!("{} {target} HTTP/1.1\r\nhost: {upstream}\r\n", req.method()).into_bytes();
    for (k, v) in req.headers() {
        if k == header::HOST || drop.iter().any(|d| k.as_str().eq_ignore_ascii_case(d)) {
            continue;
        }
        head.extend_from_slice(k.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    conn.write_all(&head).await?;

    // The answer's head, byte by byte up to the blank line (heads are small; what follows is the
    // upgraded protocol's and must stay on the connection).
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() > 64 << 10 {
            return Err(std::io::Error::other("an answer head over 64 KiB"));
        }
        let b = conn.read_u8().await?;
        answer.push(b);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("a bad status line in {text:?}")))?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::from_u16(status).map_err(std::io::Error::other)?;
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim())) {
                resp.headers_mut().append(k, v);
            }
        }
    }
    if status != 101 {
        // A refusal: its body (if any) is not read; the head says enough for a test.
        return Ok(resp);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut conn).await;
        }
    });
    Ok(resp)
}
