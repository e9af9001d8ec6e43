//! Tests of the shared HTTP helper: the policy's arithmetic, and the send loop against a loopback
//! server that answers from a script (one canned answer per connection).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn backoff_grows_with_jitter_and_a_cap() {
    let p = RetryPolicy::default();
    for attempt in 0..12 {
        let d = p.backoff(attempt);
        let full = p.base_delay.saturating_mul(1 << attempt).min(p.max_delay);
        assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} vs {full:?}");
    }
    // Far past the cap, and past the shift's range, it stays within the cap.
    assert!(p.backoff(u32::MAX) <= p.max_delay);
}

#[test]
fn retry_after_wins_and_is_capped() {
    let p = RetryPolicy { max_delay: Duration::from_secs(5), max_retry_after: Duration::from_secs(30), ..Default::default() };
    // Longer than any backoff and still honoured: the server knows best.
    assert_eq!(p.wait(0, Some(Duration::from_secs(20))), Some(Duration::from_secs(20)));
    assert_eq!(p.wait(3, Some(Duration::ZERO)), Some(Duration::ZERO));
    // Longer than the policy will wait: no wait at all (the caller gives up with RateLimited).
    assert_eq!(p.wait(0, Some(Duration::from_secs(31))), None);
    let d = p.wait(2, None).expect("backoff");
    assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1), "{d:?}");
}

fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, v.parse().expect("header value"));
    }
    Reply { status: StatusCode::from_u16(status).expect("status"), headers: h, body: Bytes::from(body.to_owned()) }
}

fn http(url_hint: &'static str) -> Http {
    Http {
        client: reqwest::Client::new(),
        provider: "acme",
        key_env: "ACME_API_KEY",
        reach_hint: url_hint,
        timeout: Duration::from_secs(5),
        retry: RetryPolicy { attempts: 3, base_delay: Duration::from_millis(1), ..Default::default() },
    }
}

#[test]
fn messages_request_ids_and_retry_after_are_read_from_the_answer() {
    assert_eq!(reply(404, &[], r#"{"statusCode":404,"message":"nope","error":"Not Found"}"#).message(), "nope");
    assert_eq!(reply(400, &[], r#"{"message":["a","b"]}"#).message(), "a; b");
    assert_eq!(reply(500, &[], " plain text \n").message(), "plain text");
    let vercel = r#"{"error":{"code":"sandbox_stopped","message":"The sandbox is stopped"}}"#;
    assert_eq!(reply(410, &[], vercel).message(), "The sandbox is stopped (sandbox_stopped)");
    assert_eq!(reply(500, &[("X-Request-Id", "req-1")], "").request_id().as_deref(), Some("req-1"));
    assert_eq!(reply(500, &[("x-amzn-requestid", "a-2")], "").request_id().as_deref(), Some("a-2"));
    assert_eq!(reply(500, &[("x-request-id", " ")], "").request_id(), None);
    assert_eq!(reply(429, &[("retry-after", "3")], "").retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(reply(429, &[("retry-after", "soon")], "").retry_after(), None);
}

#[test]
fn statuses_become_typed_errors_and_the_request_id_is_shown() {
    let h = http("ACME_API_URL");
    let e = h.error(&reply(502, &[("x-request-id", "req-42")], r#"{"message":"bad gateway"}"#), "create", None);
    assert!(
        matches!(&e, Error::Api { provider: "acme", status: 502, request_id: Some(r), message, .. }
            if r == "req-42" && message == "bad gateway"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "acme: create failed (HTTP 502): bad gateway (request id req-42)");
    let e = h.error(&reply(500, &[], "boom"), "list", None);
    assert_eq!(e.to_string(), "acme: list failed (HTTP 500): boom");
    let e = h.error(&reply(401, &[("x-request-id", "r-7")], r#"{"message":"Invalid API key"}"#), "create", None);
    let Error::Auth { message, .. } = &e else { panic!("{e:?}") };
    assert!(message.contains("ACME_API_KEY") && message.contains("sbx auth login acme"), "{message}");
    assert!(message.contains("Invalid API key") && message.contains("r-7"), "{message}");
    assert!(matches!(h.error(&reply(404, &[], ""), "get", Some("sb-1")), Error::NotFound { sandbox } if sandbox == "sb-1"));
    assert!(matches!(h.error(&reply(404, &[], ""), "create", None), Error::Api { status: 404, .. }));
    assert!(matches!(
        h.error(&reply(429, &[("retry-after", "9")], ""), "get", Some("x")),
        Error::RateLimited { provider: "acme", retry_after: Some(d) } if d == Duration::from_secs(9)
    ));
}

/// A loopback HTTP server answering each connection with the next scripted answer (`None`: accept the
/// request and never answer). Counts requests.
struct Script {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn serve(answers: Vec<Option<String>>) -> Script {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/thing", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let (answers, counter) = (answers.clone(), counter.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answers.lock().expect("script").pop_front().flatten();
                match answer {
                    Some(a) => {
                        let _ = conn.write_all(a.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                    // Hold the connection open until the client gives up.
                    None => while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {},
                }
            });
        }
    });
    Script { url, hits }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Option<String> {
    let mut s = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    Some(s)
}

fn default_retry(r: &Reply) -> bool {
    retryable_status(r.status)
}

#[tokio::test]
async fn a_429_then_success_is_one_retry_honouring_retry_after() {
    let s = serve(vec![answer(429, &[("retry-after", "1")], ""), answer(200, &[], r#"{"ok":true}"#)]).await;
    let h = http("ACME_API_URL");
    let started = std::time::Instant::now();
    let r = h.send("get", || h.client.request(Method::GET, &s.url), default_retry, Resend::Always).await.expect("send");
    assert_eq!((r.status.as_u16(), r.json()["ok"].as_bool()), (200, Some(true)));
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_last_failure_is_returned_after_every_attempt_with_its_request_id() {
    let fail = || answer(500, &[("x-request-id", "req-9")], r#"{"message":"Internal server error"}"#);
    let s = serve(vec![fail(), fail(), fail(), answer(200, &[], "")]).await;
    let h = http("ACME_API_URL");
    let r = h.send("create", || h.client.request(Method::POST, &s.url), default_retry, Resend::Always).await.expect("send");
    assert_eq!(s.hits.load(Ordering::SeqCst), 3, "the policy's attempts, no more");
    let e = h.ok(r, "create", None).expect_err("500");
    assert_eq!(e.to_string(), "acme: create failed (HTTP 500): Internal server error (request id req-9)");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_waits_is_not_waited_for() {
    let s = serve(vec![answer(429, &[("retry-after", "3600")], ""), answer(200, &[], "")]).await;
    let h = http("ACME_API_URL");
    let r = h.send("get", || h.client.request(Method::GET, &s.url), default_retry, Resend::Always).await.expect("send");
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
    let e = h.ok(r, "get", None).expect_err("429");
    assert!(matches!(e, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3600)), "{e:?}");
}

#[tokio::test]
async fn the_retry_hook_decides_which_answers_are_tried_again() {
    // E2B's way: a `Should-Retry` header overrides the status.
    let hook = |r: &Reply| match r.headers.get("should-retry").and_then(|v| v.to_str().ok()) {
        Some(v) => v == "true",
        None => retryable_status(r.status),
    };
    let s = serve(vec![answer(503, &[("should-retry", "false")], "down"), answer(200, &[], "")]).await;
    let h = http("ACME_API_URL");
    let r = h.send("get", || h.client.request(Method::GET, &s.url), hook, Resend::Always).await.expect("send");
    assert_eq!((r.status.as_u16(), s.hits.load(Ordering::SeqCst)), (503, 1), "Should-Retry: false wins over 503");
    let s = serve(vec![answer(409, &[("should-retry", "true")], ""), answer(204, &[], "")]).await;
    let r = h.send("get", || h.client.request(Method::GET, &s.url), hook, Resend::Always).await.expect("send");
    assert_eq!((r.status.as_u16(), s.hits.load(Ordering::SeqCst)), (204, 2), "Should-Retry: true wins over 409");
}

#[tokio::test]
async fn a_request_that_timed_out_is_repeated_only_when_allowed() {
    let h = http("ACME_API_URL");
    let quick = |url: &str| h.client.request(Method::GET, url).timeout(Duration::from_millis(200));
    let s = serve(vec![None, None, None]).await;
    let e = h.send("exec", || quick(&s.url), default_retry, Resend::UnlessTimedOut).await.expect_err("timeout");
    assert!(matches!(e, Error::Timeout { after, .. } if after == Duration::from_millis(200)), "{e:?}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 1, "a request that may have been carried out is not sent again");
    let s = serve(vec![None, None, answer(200, &[], "")]).await;
    let r = h.send("get", || quick(&s.url), default_retry, Resend::Always).await.expect("third try answers");
    assert_eq!((r.status.as_u16(), s.hits.load(Ordering::SeqCst)), (200, 3));
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable_with_the_hint() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let h = http("ACME_API_URL if you set it");
    let url = format!("http://127.0.0.1:{port}/v1/x?secret=1");
    let e = h.send("list", || h.client.request(Method::GET, &url), default_retry, Resend::Never).await.expect_err("refused");
    let Error::Unavailable { provider: "acme", message } = &e else { panic!("{e:?}") };
    assert!(message.contains("ACME_API_URL if you set it") && message.contains(&format!("127.0.0.1:{port}/v1/x")), "{message}");
}
