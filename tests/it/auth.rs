//! Auth and error shape across the whole runtime API: every route in the OpenAPI document except
//! health refuses a missing or wrong token with a 401 problem, and accepts the right one.

use reqwest::{Method, StatusCode};
use sbx_agent::api::{Problem, ProblemKind, PROBLEM_CONTENT_TYPE};
use sbx_tests::TestRuntime;

/// Every (method, path) in the document, with path parameters filled in.
fn operations(doc: &serde_json::Value) -> Vec<(Method, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "no-such-id" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase().parse().expect("method"), concrete.clone()));
            }
        }
    }
    ops
}

async fn assert_problem(resp: reqwest::Response, kind: ProblemKind) -> Problem {
    assert_eq!(resp.status().as_u16(), kind.status(), "status for {}", resp.url());
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with(PROBLEM_CONTENT_TYPE), "content type {ct} for {}", resp.url());
    let p: Problem = resp.json().await.expect("problem body");
    assert_eq!(p.problem_kind(), Some(kind));
    p
}

#[tokio::test]
async fn every_protected_route_needs_the_token() {
    let rt = TestRuntime::start_rooted().await;
    let doc = rt.client.openapi().await.expect("openapi with token");
    let ops = operations(&doc);
    assert!(ops.len() >= 15, "expected the full API in the document, got {ops:?}");
    let http = reqwest::Client::new();
    for (method, path) in &ops {
        let url = format!("{}{path}?path=x", rt.url());
        let no_token = http.request(method.clone(), &url).send().await.expect("send");
        if path == "/v1/health" {
            assert_eq!(no_token.status(), StatusCode::OK);
            continue;
        }
        assert_problem(no_token, ProblemKind::Unauthorized).await;
        let wrong = http.request(method.clone(), &url).bearer_auth("wrong-token").send().await.expect("send");
        assert_problem(wrong, ProblemKind::Unauthorized).await;
        let almost = http
            .request(method.clone(), &url)
            .bearer_auth(&rt.token[..rt.token.len() - 1])
            .send()
            .await
            .expect("send");
        assert_problem(almost, ProblemKind::Unauthorized).await;
        // With the right token the request gets past auth (whatever the handler then says).
        let right = http.request(method.clone(), &url).bearer_auth(&rt.token).send().await.expect("send");
        assert_ne!(right.status(), StatusCode::UNAUTHORIZED, "{method} {path} refused the right token");
    }
    rt.stop().await;
}

#[tokio::test]
async fn health_is_open_and_reports_version() {
    let rt = TestRuntime::start().await;
    let h: sbx_agent::api::Health = reqwest::get(format!("{}/v1/health", rt.url())).await.unwrap().json().await.unwrap();
    assert_eq!(h.status, "ok");
    assert_eq!(h.version, sbx_agent::VERSION);
    assert_eq!(h.pid, std::process::id());
    rt.stop().await;
}

#[tokio::test]
async fn bad_input_gets_problem_documents() {
    let rt = TestRuntime::start().await;
    let http = reqwest::Client::new();
    // Unknown route.
    let r = http.get(format!("{}/v1/nope", rt.url())).bearer_auth(&rt.token).send().await.unwrap();
    let p = assert_problem(r, ProblemKind::NotFound).await;
    assert!(p.detail.unwrap_or_default().contains("/v1/nope"));
    // Malformed JSON.
    let r = http
        .post(format!("{}/v1/processes/run", rt.url()))
        .bearer_auth(&rt.token)
        .header("content-type", "application/json")
        .body("{\"command\": ")
        .send()
        .await
        .unwrap();
    assert_problem(r, ProblemKind::BadRequest).await;
    // Well-formed JSON of the wrong shape.
    let r = http
        .post(format!("{}/v1/processes/run", rt.url()))
        .bearer_auth(&rt.token)
        .json(&serde_json::json!({"command": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16() / 100, 4);
    // Wrong method on a known route.
    let r = http.delete(format!("{}/v1/health", rt.url())).send().await.unwrap();
    assert_problem(r, ProblemKind::MethodNotAllowed).await;
    // Unknown process id.
    let r = http.get(format!("{}/v1/processes/does-not-exist", rt.url())).bearer_auth(&rt.token).send().await.unwrap();
    assert_problem(r, ProblemKind::NotFound).await;
    rt.stop().await;
}

#[tokio::test]
async fn openapi_document_is_valid_and_complete() {
    let doc = sbx_agent::server::openapi();
    let json = serde_json::to_value(&doc).unwrap();
    assert!(json["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&String> = json["paths"].as_object().unwrap().keys().collect();
    for needed in [
        "/v1/health",
        "/v1/openapi.json",
        "/v1/fs/file",
        "/v1/fs/entries",
        "/v1/fs/upload-batch",
        "/v1/fs/download-batch",
        "/v1/processes/run",
        "/v1/processes",
        "/v1/processes/{id}",
        "/v1/processes/{id}/logs",
        "/v1/processes/config",
        "/v1/pty",
        "/v1/runtime/session-env",
    ] {
        assert!(paths.iter().any(|p| p.as_str() == needed), "{needed} missing from OpenAPI: {paths:?}");
    }
}

#[tokio::test]
async fn unix_socket_listener_serves_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let s2 = sock.clone();
    let rt = TestRuntime::start_with(move |c| {
        c.addr = None;
        c.unix_socket = Some(s2);
    })
    .await;
    let client = sbx_agent::client::Client::unix(&sock, Some(rt.token.clone())).unwrap();
    assert_eq!(client.health().await.unwrap().status, "ok");
    let bad = sbx_agent::client::Client::unix(&sock, Some("wrong".into())).unwrap();
    let err = bad.openapi().await.unwrap_err();
    assert_eq!(err.problem_kind(), Some(ProblemKind::Unauthorized));
    rt.server.shutdown().await;
}

/// The runtime binary started the way `sbx` starts it: with only the SHA-256 of its token on the
/// command line. The token works, a wrong one does not, and neither the token nor the session
/// credentials pushed over `PUT /v1/runtime/session-env` are in its command line or environment.
#[tokio::test]
async fn a_runtime_started_with_the_token_sha256_takes_the_token_and_holds_secrets_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let token = sbx_tests::random_token();
    let digest = sbx_agent::token_sha256_hex(&token);
    let mut child = tokio::process::Command::new(sbx_tests::bin("sbx-agent"))
        .args(["server", "--unix", sock.to_str().unwrap(), "--unix-only", "--token-sha256", &digest])
        .env_remove(sbx_agent::server_env::TOKEN)
        .env("SBX_AGENT_STATE_DIR", dir.path().join("state"))
        .env("SBX_AGENT_LOG_STDOUT", "1")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = sbx_agent::client::Client::unix(&sock, Some(token.clone())).unwrap();
    let up = sbx_tests::wait_for(std::time::Duration::from_secs(10), || async { client.health().await.is_ok() }).await;
    assert!(up, "the runtime did not answer");
    assert!(client.openapi().await.is_ok(), "the token whose SHA-256 it was given is accepted");
    let bad = sbx_agent::client::Client::unix(&sock, Some(digest.clone())).unwrap();
    assert_eq!(bad.openapi().await.unwrap_err().problem_kind(), Some(ProblemKind::Unauthorized), "the digest itself is no token");

    let secret = format!("sk-ant-api03-{}", sbx_tests::random_token());
    let env = std::collections::BTreeMap::from([("ANTHROPIC_API_KEY".to_owned(), secret.clone())]);
    assert_eq!(client.session_env_names().await.unwrap().names, Vec::<String>::new());
    assert_eq!(client.set_session_env(env).await.unwrap().names, ["ANTHROPIC_API_KEY"]);
    assert_eq!(client.session_env_names().await.unwrap().names, ["ANTHROPIC_API_KEY"], "names only, never values");
    let refused = sbx_agent::client::Client::unix(&sock, None).unwrap().session_env_names().await.unwrap_err();
    assert_eq!(refused.problem_kind(), Some(ProblemKind::Unauthorized));

    let pid = child.id().unwrap();
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        let seen = String::from_utf8_lossy(&bytes);
        assert!(!seen.contains(&token) && !seen.contains(&secret), "a secret in the runtime's /proc/{pid}/{file}");
    }
    child.kill().await.unwrap();
}

/// CORS with any origin and credentials (which browsers refuse, and which made the server panic at
/// start) is refused when the flags are read, saying what to set instead; in-process too.
#[tokio::test]
async fn cors_any_origin_with_credentials_is_refused_with_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    for sub in [&["server"][..], &["daemon", "start"][..]] {
        let out = std::process::Command::new(sbx_tests::bin("sbx-agent"))
            .args(sub)
            .args(["--unix", sock.to_str().unwrap(), "--unix-only", "--no-token", "--cors-allow-origin", "*", "--cors-allow-credentials"])
            .env("SBX_AGENT_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--cors-allow-origin '*'") && err.contains("--cors-allow-origin https://"), "{sub:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let mut config = sbx_agent::server::ServerConfig::loopback(None);
    config.cors.allow_origins = vec!["*".into()];
    config.cors.allow_credentials = true;
    let err = sbx_agent::server::start(config).await.err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // Listed origins with credentials are fine.
    let rt = TestRuntime::start_with(|c| {
        c.cors.allow_origins = vec!["https://app.example.com".into()];
        c.cors.allow_credentials = true;
    })
    .await;
    let r = reqwest::Client::new()
        .get(format!("{}/v1/health", rt.url()))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("access-control-allow-credentials").and_then(|v| v.to_str().ok()), Some("true"));
    rt.stop().await;
}
