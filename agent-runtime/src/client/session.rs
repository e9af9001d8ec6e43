//! Agents and sessions: `/v1/agents/*` and `/v1/sessions/*`.
//!
//! ```no_run
//! # async fn f(client: sbx_agent::client::Client) -> Result<(), sbx_agent::client::ClientError> {
//! use futures::StreamExt;
//! use sbx_agent::api::session::{CreateSessionRequest, EventData};
//!
//! let s = client.create_session(&CreateSessionRequest { agent: "mock".into(), ..Default::default() }).await?;
//! let turn = client.send_message(&s.id, "echo hello", false).await?;
//! let mut events = client.follow_events(&s.id, turn.first_sequence - 1).await?;
//! while let Some(ev) = events.next().await {
//!     let ev = ev?;
//!     if let EventData::TurnCompleted(done) = &ev.body {
//!         println!("{:?}", done.text);
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::ACCEPT;
use reqwest::Method;

use super::sse::SseParser;
use super::{Client, ClientError, Result};
use crate::api::session::{
    AcpAgentConfig,    AgentInfo, AgentList, CancelResponse, CheckLlmRequest, SetModeRequest, CheckLlmResponse, CreateSessionRequest, EndReason, EndSessionQuery, Event, EventData, EventPage, InstallAgentRequest,
    InstallAgentResponse, PermissionDecision, PermissionReply, QuestionReply, SendMessageRequest, SendMessageResponse,
    SessionInfo, SessionList, SESSION_EVENT,
};

/// How many times in a row a followed session stream reconnects before giving up.
const MAX_RECONNECTS: u32 = 6;

fn session_path(id: &str, rest: &str) -> String {
    format!("/v1/sessions/{}{rest}", super::encode_segment(id))
}

impl Client {
    /// `GET /v1/agents`.
    pub async fn list_agents(&self) -> Result<Vec<AgentInfo>> {
        let list: AgentList = self.send_json(self.request(Method::GET, "/v1/agents")).await?;
        Ok(list.agents)
    }

    /// `GET /v1/agents/{id}`.
    pub async fn agent(&self, id: &str) -> Result<AgentInfo> {
        self.send_json(self.request(Method::GET, &format!("/v1/agents/{}", super::encode_segment(id)))).await
    }

    /// `PUT /v1/agents/{id}`: configures an ACP agent (or replaces its configuration).
    pub async fn put_acp_agent(&self, config: &AcpAgentConfig) -> Result<AgentInfo> {
        self.send_json(self.request(Method::PUT, &format!("/v1/agents/{}", super::encode_segment(&config.id))).json(config)).await
    }

    /// `DELETE /v1/agents/{id}`: removes a configured ACP agent.
    pub async fn remove_acp_agent(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/agents/{}", super::encode_segment(id)))).await?;
        Ok(())
    }

    /// `POST /v1/agents/{id}/install`.
    pub async fn install_agent(&self, id: &str, req: &InstallAgentRequest) -> Result<InstallAgentResponse> {
        let path = format!("/v1/agents/{}/install", super::encode_segment(id));
        self.send_json(self.request(Method::POST, &path).json(req)).await
    }

    /// `POST /v1/agents/{id}/check-llm`: whether the agent's LLM endpoint answers from inside the sandbox.
    pub async fn check_llm(&self, id: &str, req: &CheckLlmRequest) -> Result<CheckLlmResponse> {
        let path = format!("/v1/agents/{}/check-llm", super::encode_segment(id));
        self.send_json(self.request(Method::POST, &path).json(req)).await
    }

    /// `POST /v1/sessions`.
    pub async fn create_session(&self, req: &CreateSessionRequest) -> Result<SessionInfo> {
        self.send_json(self.request(Method::POST, "/v1/sessions").json(req)).await
    }

    /// `GET /v1/sessions`.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let list: SessionList = self.send_json(self.request(Method::GET, "/v1/sessions")).await?;
        Ok(list.sessions)
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, id: &str) -> Result<SessionInfo> {
        self.send_json(self.request(Method::GET, &session_path(id, ""))).await
    }

    /// `POST /v1/sessions/{id}/messages`: starts a turn (with `wait`, returns when it has ended).
    pub async fn send_message(&self, id: &str, text: &str, wait: bool) -> Result<SendMessageResponse> {
        let body = SendMessageRequest { text: text.to_owned(), wait, timeout_ms: None };
        self.send_json(self.request(Method::POST, &session_path(id, "/messages")).json(&body)).await
    }

    /// `GET /v1/sessions/{id}/events`: one page after `offset`.
    pub async fn session_events(&self, id: &str, offset: u64, limit: Option<u64>) -> Result<EventPage> {
        let mut q = vec![("offset", offset.to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        self.send_json(self.request(Method::GET, &session_path(id, "/events")).query(&q)).await
    }

    /// Follows a session's events after `offset` as they happen, until `session.ended`. A broken
    /// connection (or a restarted runtime) is resumed from the last event received, so nothing is
    /// lost or repeated. Fails right away when the first connection does.
    pub async fn follow_events(&self, id: &str, offset: u64) -> Result<EventFollow> {
        let mut st = Follow { client: self.clone(), id: id.to_owned(), last: offset, body: None, parser: SseParser::new(), failures: 0, done: false };
        st.body = Some(st.connect().await?);
        Ok(EventFollow { inner: Box::pin(futures::stream::unfold(st, Follow::step)) })
    }

    /// `POST /v1/sessions/{id}/permissions/{permission_id}`.
    pub async fn reply_permission(&self, id: &str, permission_id: &str, decision: PermissionDecision, message: Option<String>) -> Result<()> {
        let path = session_path(id, &format!("/permissions/{}", super::encode_segment(permission_id)));
        self.send(self.request(Method::POST, &path).json(&PermissionReply { decision, message })).await?;
        Ok(())
    }

    /// `POST /v1/sessions/{id}/questions/{question_id}` (`None` rejects the question).
    pub async fn reply_question(&self, id: &str, question_id: &str, answer: Option<String>) -> Result<()> {
        let path = session_path(id, &format!("/questions/{}", super::encode_segment(question_id)));
        self.send(self.request(Method::POST, &path).json(&QuestionReply { answer })).await?;
        Ok(())
    }

    /// `POST /v1/sessions/{id}/mode`: switches the agent to `mode` between turns.
    pub async fn set_mode(&self, id: &str, mode: &str) -> Result<SessionInfo> {
        self.send_json(self.request(Method::POST, &session_path(id, "/mode")).json(&SetModeRequest { mode: mode.to_owned() })).await
    }

    /// `POST /v1/sessions/{id}/cancel`: whether a running turn was told to stop.
    pub async fn cancel_turn(&self, id: &str) -> Result<bool> {
        let r: CancelResponse = self.send_json(self.request(Method::POST, &session_path(id, "/cancel"))).await?;
        Ok(r.cancelled)
    }

    /// `DELETE /v1/sessions/{id}`: ends the session (and with `forget`, deletes its journal).
    pub async fn end_session(&self, id: &str, forget: bool) -> Result<SessionInfo> {
        self.end_session_for(id, forget, EndReason::Completed).await
    }

    /// `DELETE /v1/sessions/{id}?reason=…`: ends the session, recording why in `session.ended`
    /// (`Cancelled` after Ctrl-C, `Timeout` when a time limit ran out).
    pub async fn end_session_for(&self, id: &str, forget: bool, reason: EndReason) -> Result<SessionInfo> {
        let query = EndSessionQuery { forget, reason: (reason != EndReason::Completed).then_some(reason) };
        self.send_json(self.request(Method::DELETE, &session_path(id, "")).query(&query)).await
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// The events of a followed session (see [`Client::follow_events`]).
pub struct EventFollow {
    inner: Pin<Box<dyn Stream<Item = Result<Event>> + Send>>,
}

impl Stream for EventFollow {
    type Item = Result<Event>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Follow {
    client: Client,
    id: String,
    last: u64,
    body: Option<ByteStream>,
    parser: SseParser,
    failures: u32,
    done: bool,
}

impl Follow {
    fn connect(&self) -> impl std::future::Future<Output = Result<ByteStream>> + Send + 'static {
        let (client, path, last) = (self.client.clone(), session_path(&self.id, "/events/stream"), self.last);
        async move {
            let rb = client.request(Method::GET, &path).header(ACCEPT, "text/event-stream").header("Last-Event-ID", last.to_string());
            let resp = client.send(rb).await?;
            Ok(Box::pin(resp.bytes_stream()) as ByteStream)
        }
    }

    async fn step(mut self) -> Option<(Result<Event>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.parser.next_event() {
                if ev.event != SESSION_EVENT {
                    continue;
                }
                match serde_json::from_str::<Event>(&ev.data) {
                    Ok(event) if event.sequence <= self.last => continue, // already delivered
                    Ok(event) => {
                        self.last = event.sequence;
                        self.failures = 0;
                        if matches!(event.body, EventData::SessionEnded(_)) {
                            self.done = true;
                        }
                        return Some((Ok(event), self));
                    }
                    Err(e) => {
                        self.done = true;
                        return Some((Err(ClientError::Protocol(format!("bad session event: {e}"))), self));
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                if self.failures >= MAX_RECONNECTS {
                    self.done = true;
                    let msg = format!("the event stream of session {} kept breaking; gave up after {MAX_RECONNECTS} reconnects", self.id);
                    return Some((Err(ClientError::Protocol(msg)), self));
                }
                tokio::time::sleep(Duration::from_millis(100 << self.failures)).await;
                self.failures += 1;
                match self.connect().await {
                    Ok(b) => {
                        self.parser = SseParser::new();
                        self.body = Some(b);
                    }
                    Err(e) if e.is_unreachable() => {}
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => self.parser.feed(&chunk),
                // The stream ended or broke without `session.ended`: resume from the last event.
                Some(Err(_)) | None => self.body = None,
            }
        }
    }
}
