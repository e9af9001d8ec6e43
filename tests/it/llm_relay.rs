//! The runtime's half of the LLM relay, in process (docs/keyless.md): a test plays the host on the
//! WebSocket and an agent on the model route. Wrong token → 401 in the vendor's error shape; no host →
//! 503 after the bounded wait; a request and its streamed answer cross as frames, the first piece
//! reaching the agent while the host still holds the rest; an agent that hangs up cancels.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sbx_agent::api::llm_relay::{Frame, FrameKind, Header, RequestHead, ResponseHead, RELAY_TOKEN_ENV, RELAY_WAIT_ENV};
use sbx_tests::TestRuntime;
use tokio_tungstenite::tungstenite::Message;

async fn runtime(wait_ms: u64) -> (TestRuntime, String) {
    let rt = TestRuntime::start().await;
    let token = format!("sbx-relay-{}", sbx_tests::random_token());
    let env = BTreeMap::from([(RELAY_TOKEN_ENV.to_owned(), token.clone()), (RELAY_WAIT_ENV.to_owned(), wait_ms.to_string())]);
    rt.client.set_session_env(env).await.expect("session env");
    (rt, token)
}

fn messages(rt: &TestRuntime, key: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/v1/llm/s/ses_t/anthropic/v1/messages?beta=true", rt.url()))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .body(r#"{"model":"m","stream":true}"#)
}

#[tokio::test]
async fn wrong_token_is_401_and_no_host_is_503_after_the_wait() {
    let (rt, token) = runtime(300).await;
    let resp = messages(&rt, "sk-not-the-token").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    // The model routes do not take the runtime token either way round: the runtime token is no relay token.
    assert_eq!(messages(&rt, &rt.token).send().await.unwrap().status(), 401);
    let started = std::time::Instant::now();
    let resp = messages(&rt, &token).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let text = resp.text().await.unwrap();
    assert!(text.contains("no sbx host is attached") && text.contains("sbx attach"), "{text}");
    // The relay's WebSocket needs the runtime token.
    let anonymous = sbx_agent::client::Client::new(&rt.url(), None).unwrap();
    assert!(anonymous.llm_relay().await.is_err());
    rt.stop().await;
}

#[tokio::test]
async fn a_request_and_its_streamed_answer_cross_the_relay_piece_by_piece() {
    let (rt, token) = runtime(10_000).await;
    let ws = rt.client.llm_relay().await.expect("attach");
    let (mut sink, mut stream) = ws.split();
    let agent = tokio::spawn({
        let req = messages(&rt, &token);
        async move { req.send().await.unwrap() }
    });
    // The host side: read the head and the body, answer a head and a first piece.
    let mut head: Option<(u64, RequestHead)> = None;
    let mut body = Vec::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(b) = msg else { continue };
        let f = Frame::decode(b).unwrap();
        match f.kind {
            FrameKind::RequestHead => head = Some((f.id, serde_json::from_slice(&f.payload).unwrap())),
            FrameKind::RequestBody => body.extend_from_slice(&f.payload),
            FrameKind::RequestEnd => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (id, head) = head.expect("a request head");
    assert_eq!((head.provider.as_str(), head.method.as_str(), head.path.as_str()), ("anthropic", "POST", "/v1/messages?beta=true"));
    assert_eq!(head.session.as_deref(), Some("ses_t"));
    assert_eq!(head.token, token);
    assert!(head.headers.iter().all(|h| h.name != "x-api-key"), "the credential header stays behind: {:?}", head.headers);
    assert_eq!(body, br#"{"model":"m","stream":true}"#);
    let answer = ResponseHead { status: 200, headers: vec![Header { name: "content-type".into(), value: b"text/event-stream".to_vec() }] };
    let send = |f: Frame| Message::Binary(f.encode().into());
    sink.send(send(Frame::json(FrameKind::ResponseHead, id, &answer))).await.unwrap();
    sink.send(send(Frame::new(FrameKind::ResponseBody, id, b"event: a\ndata: {\"n\":1}\n\n".to_vec()))).await.unwrap();
    let mut resp = agent.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // The first piece is there while the host has not ended the answer.
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("first piece in time").unwrap().unwrap();
    assert_eq!(&first[..], b"event: a\ndata: {\"n\":1}\n\n");
    sink.send(send(Frame::new(FrameKind::ResponseBody, id, vec![0xff, 0x00, b'\n']))).await.unwrap();
    sink.send(send(Frame::empty(FrameKind::ResponseEnd, id))).await.unwrap();
    let rest = resp.bytes().await.unwrap();
    assert_eq!(&rest[..], &[0xff, 0x00, b'\n'], "bytes stay bytes");

    // An agent that hangs up mid-answer: the host is told to cancel.
    let agent = tokio::spawn({
        let req = messages(&rt, &token);
        async move { req.send().await.unwrap() }
    });
    let id = loop {
        let Some(Ok(Message::Binary(b))) = stream.next().await else { continue };
        let f = Frame::decode(b).unwrap();
        if f.kind == FrameKind::RequestHead {
            break f.id;
        }
    };
    sink.send(send(Frame::json(FrameKind::ResponseHead, id, &answer))).await.unwrap();
    drop(agent.await.unwrap());
    let cancelled = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Binary(b) = msg {
                let f = Frame::decode(b).unwrap();
                if f.kind == FrameKind::Cancel && f.id == id {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(cancelled, Ok(true), "the host got a cancel for the abandoned request");
    rt.stop().await;
}
