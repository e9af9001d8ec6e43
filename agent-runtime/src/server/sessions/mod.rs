//! `/v1/agents/*` and `/v1/sessions/*`: agents, and sessions that drive them.
//!
//! - `journal.rs`: each session's numbered, disk-first event log.
//! - `manager.rs`: the session table, turns, replies, cancel, end, and recovery after a restart.
//! - `driver.rs`: the trait every agent adapter implements, and what a turn can do (emit, ask).
//! - `agents.rs`: finding, versioning and installing agent binaries.
//! - one file per adapter: `mock.rs`, `claude.rs` (+ `permission_mcp.rs`), `codex/`, and `acp/` for
//!   every agent that speaks the Agent Client Protocol.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, ApiQuery, ApiResult, AppState};
use crate::api::session::{
    AcpAgentConfig, AgentInfo, AgentList, CancelResponse, CheckLlmRequest, SetModeRequest, CheckLlmResponse, CreateSessionRequest, EndReason, EndSessionQuery, EventPage, EventsQuery, InstallAgentRequest,
    InstallAgentResponse, PermissionReply, QuestionReply, SendMessageRequest, SendMessageResponse, SessionInfo,
    SessionList, SessionSseEvent, SESSION_EVENT,
};
use crate::api::Problem;

mod acp;
mod agents;
mod claude;
mod codex;
mod driver;
mod install;
mod journal;
mod llm;
mod manager;
mod mock;
pub mod permission_mcp;

pub use manager::SessionManager;

/// Agents that have a binary to install.
pub fn installable_agents() -> Vec<&'static str> {
    agents::agent_ids().into_iter().filter(|a| *a != "mock").collect()
}

/// Installs an agent into the runtime's state directory `state_dir` (for `sbx-agent install-agent`).
pub async fn install_agent_into(
    state_dir: &std::path::Path,
    agent: &str,
    req: InstallAgentRequest,
) -> Result<InstallAgentResponse, String> {
    let registry = agents::AgentRegistry::new(state_dir.join("agents"));
    let spec = registry.spec(agent).map_err(|e| e.to_string())?;
    registry.install(spec, req).await.map_err(|e| e.to_string())
}

/// Largest page of `GET /events`.
const MAX_PAGE: u64 = 1000;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(get_agent, put_agent, delete_agent))
        .routes(routes!(install_agent))
        .routes(routes!(check_llm))
        .routes(routes!(list_sessions, create_session))
        .routes(routes!(get_session, end_session))
        .routes(routes!(send_message))
        .routes(routes!(session_events))
        .routes(routes!(session_event_stream))
        .routes(routes!(reply_permission))
        .routes(routes!(reply_question))
        .routes(routes!(cancel_turn))
        .routes(routes!(set_mode))
}

/// Every agent this runtime knows, whether installed, its version and what it can do.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    responses(
        (status = 200, description = "The agents", body = AgentList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_agents(State(state): State<AppState>) -> ApiJson<AgentList> {
    ApiJson(AgentList { agents: state.sessions().agents().list().await })
}

/// One agent, with its models and modes.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "`claude`, `codex` or `mock`")),
    responses(
        (status = 200, description = "The agent", body = AgentInfo),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown agent (the message lists the known ones)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_agent(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<ApiJson<AgentInfo>> {
    let agents = state.sessions().agents();
    let spec = agents.spec(&id)?;
    Ok(ApiJson(agents.info(spec).await))
}

/// Configure an ACP agent (or replace its configuration): any agent that speaks the Agent Client
/// Protocol on its stdio, no code. Kept in the runtime's `<state>/agents/acp.json`.
#[utoipa::path(put, path = "/v1/agents/{id}", tag = "agents", request_body = AcpAgentConfig,
    params(("id" = String, Path, description = "The agent's id (the body's `id` must match)")),
    responses(
        (status = 200, description = "The agent as sessions see it", body = AgentInfo),
        (status = 400, description = "A bad id or entry (a built-in id, no command, a credential among the settings, more than 64 agents)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_agent(State(state): State<AppState>, Path(id): Path<String>, ApiJson(config): ApiJson<AcpAgentConfig>) -> ApiResult<ApiJson<AgentInfo>> {
    if config.id != id {
        return Err(ApiError::bad_request(format!("the body's id `{}` is not the path's `{id}`", config.id)));
    }
    let agents = state.sessions().agents();
    let spec = agents.put_acp(config)?;
    Ok(ApiJson(agents.info(spec).await))
}

/// Remove a configured ACP agent (sessions already running with it go on).
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "A configured ACP agent's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A built-in agent", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such configured agent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The agent file in the sandbox is not valid (fix or remove it)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_agent(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.sessions().agents().remove_acp(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Install an agent: keep what is there (unless `reinstall`), take a binary already in the sandbox
/// (`fromPath`), or download it from a mirror with a SHA-256 check.
#[utoipa::path(post, path = "/v1/agents/{id}/install", tag = "agents", request_body = InstallAgentRequest,
    params(("id" = String, Path, description = "`claude` or `codex`")),
    responses(
        (status = 200, description = "Installed (or already there)", body = InstallAgentResponse),
        (status = 400, description = "No source, a bad binary, or a checksum mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown agent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn install_agent(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<InstallAgentRequest>,
) -> ApiResult<ApiJson<InstallAgentResponse>> {
    let agents = state.sessions().agents();
    let spec = agents.spec(&id)?;
    let mut req = req;
    if let Some(from) = &req.from_path {
        req.from_path = Some(state.fs().resolve(from)?.to_string_lossy().into_owned());
    }
    Ok(ApiJson(agents.install(spec, req).await?))
}

/// Check, from inside the sandbox, that the agent's LLM endpoint answers: the endpoint a session of
/// this agent would use (see `llm` on session creation), one HTTP request, any status counts.
#[utoipa::path(post, path = "/v1/agents/{id}/check-llm", tag = "agents", request_body = CheckLlmRequest,
    params(("id" = String, Path, description = "`claude` or `codex`")),
    responses(
        (status = 200, description = "The check ran (see `reachable`)", body = CheckLlmResponse),
        (status = 400, description = "The body is not a JSON `CheckLlmRequest`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown agent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn check_llm(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CheckLlmRequest>,
) -> ApiResult<ApiJson<CheckLlmResponse>> {
    let sessions = state.sessions();
    let spec = sessions.agents().spec(&id)?;
    let mut env = req.env;
    for (k, v) in sessions.session_env() {
        env.entry(k).or_insert(v);
    }
    let resolved = llm::resolve(spec.id, req.llm.as_ref(), &env);
    Ok(ApiJson(llm::check(spec.id, resolved.url.as_deref(), resolved.source, &env).await))
}

/// Every session (live and ended), oldest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    responses(
        (status = 200, description = "The sessions", body = SessionList),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_sessions(State(state): State<AppState>) -> ApiJson<SessionList> {
    ApiJson(SessionList { sessions: state.sessions().list() })
}

/// Create a session and start its agent. Its first event is `session.started`.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "Created", body = SessionInfo),
        (status = 400, description = "Bad settings, or the agent is not installed (the message says how to install it)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "cwd is outside the runtime's root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown agent (the message lists the known ones)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A session with this id exists", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The agent did not start (the session is recorded as ended)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_session(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> ApiResult<(StatusCode, ApiJson<SessionInfo>)> {
    Ok((StatusCode::CREATED, ApiJson(state.sessions().create(req).await?)))
}

/// One session.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_session(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<ApiJson<SessionInfo>> {
    Ok(ApiJson(state.sessions().info(&id)?))
}

/// End a session: cancel its turn, stop its agent, record `session.ended`. Its events stay readable
/// unless `forget=true`.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), EndSessionQuery),
    responses(
        (status = 200, description = "Ended", body = SessionInfo),
        (status = 400, description = "Bad query, or a reason a client cannot give (`error`, `terminated`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
async fn end_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EndSessionQuery>,
) -> ApiResult<ApiJson<SessionInfo>> {
    let reason = q.reason.unwrap_or(EndReason::Completed);
    if !matches!(reason, EndReason::Completed | EndReason::Cancelled | EndReason::Timeout) {
        return Err(ApiError::bad_request("a client ends a session with reason `completed`, `cancelled` or `timeout`"));
    }
    Ok(ApiJson(state.sessions().end(&id, q.forget, reason).await?))
}

/// Send a message: starts one turn. Follow it with the events (from `firstSequence - 1`), or pass
/// `wait: true` to get its `turn.completed` data in the answer.
#[utoipa::path(post, path = "/v1/sessions/{id}/messages", tag = "sessions", request_body = SendMessageRequest,
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The turn started (and with `wait`, ended)", body = SendMessageResponse),
        (status = 400, description = "Empty message", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A turn is running, or the session has ended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn send_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> ApiResult<ApiJson<SendMessageResponse>> {
    let timeout = req.timeout_ms.map(Duration::from_millis);
    Ok(ApiJson(state.sessions().send(&id, req.text, req.wait, timeout).await?))
}

/// A page of a session's events after `offset`.
#[utoipa::path(get, path = "/v1/sessions/{id}/events", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), EventsQuery),
    responses(
        (status = 200, description = "Events in sequence order", body = EventPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
async fn session_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let session = state.sessions().get(&id)?;
    let journal = session.journal();
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
    let ended = journal.finished();
    let events = journal.after(offset, limit).await.map_err(|e| ApiError::internal(format!("reading the session's journal: {e}")))?;
    let next = events.last().map_or(offset, |e| e.sequence);
    let has_more = journal.last_sequence() > next;
    // The stored lines are already the JSON of each event: splice them instead of re-encoding.
    let mut body = String::with_capacity(events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.json);
    }
    body.push_str(&format!("],\"nextOffset\":{next},\"hasMore\":{has_more},\"ended\":{}}}", ended && !has_more));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Follow a session's events as server-sent events (`event: event`, `id:` the sequence, `data:` one
/// Event). Starts after `Last-Event-ID` (or `offset`), so a client that reconnects with the last id
/// it saw gets every later event exactly once. The stream ends after `session.ended`.
#[utoipa::path(get, path = "/v1/sessions/{id}/events/stream", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last sequence seen; wins over `offset`")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = SessionSseEvent),
        (status = 400, description = "Bad query or Last-Event-ID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
async fn session_event_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let session = state.sessions().get(&id)?;
    let offset = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be the sequence number of an event"))?,
        None => q.offset.unwrap_or(0),
    };
    let journal = std::sync::Arc::clone(session.journal());
    let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
    Ok((headers, axum::body::Body::from_stream(follow(journal, offset))).into_response())
}

/// How long a quiet stream waits before sending a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE body: whatever is visible is framed in batches (one write for many events, which is what
/// lets a fast agent's deltas through at full speed), then it waits for more; a comment line keeps a
/// quiet connection alive. Ends once the journal is closed and everything in it was sent.
fn follow(journal: std::sync::Arc<journal::Journal>, offset: u64) -> impl Stream<Item = Result<bytes::Bytes, Infallible>> {
    struct St {
        journal: std::sync::Arc<journal::Journal>,
        rx: tokio::sync::watch::Receiver<u64>,
        after: u64,
    }
    // Subscribe before the first read so nothing that becomes visible in between is missed.
    let rx = journal.subscribe();
    let st = St { journal, rx, after: offset };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            let finished = st.journal.finished();
            let batch = match st.journal.after(st.after, 1024).await {
                Ok(batch) => batch,
                Err(e) => {
                    // The client reconnects with the last id it saw and gets the rest then.
                    tracing::error!(error = %e, "reading the session's journal; ending the event stream");
                    return None;
                }
            };
            if let Some(last) = batch.last() {
                st.after = last.sequence;
                let mut buf = Vec::with_capacity(batch.iter().map(|e| e.json.len() + 32).sum());
                for e in &batch {
                    // The stored JSON is one line (serde_json escapes newlines), so one `data:` line each.
                    buf.extend_from_slice(b"event: ");
                    buf.extend_from_slice(SESSION_EVENT.as_bytes());
                    buf.extend_from_slice(b"\nid: ");
                    buf.extend_from_slice(e.sequence.to_string().as_bytes());
                    buf.extend_from_slice(b"\ndata: ");
                    buf.extend_from_slice(e.json.as_bytes());
                    buf.extend_from_slice(b"\n\n");
                }
                return Some((Ok(bytes::Bytes::from(buf)), st));
            }
            if finished {
                return None;
            }
            match tokio::time::timeout(KEEP_ALIVE, st.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => return Some((Ok(bytes::Bytes::from_static(b":\n\n")), st)),
            }
        }
    })
}

/// Answer a permission request (`permission.requested`): allow, allow always, or deny.
#[utoipa::path(post, path = "/v1/sessions/{id}/permissions/{permission_id}", tag = "sessions", request_body = PermissionReply,
    params(("id" = String, Path, description = "Session id"), ("permission_id" = String, Path, description = "From the event")),
    responses(
        (status = 204, description = "Answered; the agent goes on"),
        (status = 400, description = "Bad body, or the id is a question", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session or pending request", body = Problem, content_type = "application/problem+json"),
    ))]
async fn reply_permission(
    State(state): State<AppState>,
    Path((id, permission_id)): Path<(String, String)>,
    ApiJson(reply): ApiJson<PermissionReply>,
) -> ApiResult<StatusCode> {
    state.sessions().reply_permission(&id, &permission_id, reply)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answer (or, without `answer`, reject) a question (`question.requested`).
#[utoipa::path(post, path = "/v1/sessions/{id}/questions/{question_id}", tag = "sessions", request_body = QuestionReply,
    params(("id" = String, Path, description = "Session id"), ("question_id" = String, Path, description = "From the event")),
    responses(
        (status = 204, description = "Answered"),
        (status = 400, description = "Bad body, or the id is a permission request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session or pending question", body = Problem, content_type = "application/problem+json"),
    ))]
async fn reply_question(
    State(state): State<AppState>,
    Path((id, question_id)): Path<(String, String)>,
    ApiJson(reply): ApiJson<QuestionReply>,
) -> ApiResult<StatusCode> {
    state.sessions().reply_question(&id, &question_id, reply)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Switch the agent to another of its modes between turns (ACP agents take it with
/// `session/set_mode`; claude and codex take their mode when the session starts, so they answer 409).
#[utoipa::path(post, path = "/v1/sessions/{id}/mode", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body = SetModeRequest,
    responses(
        (status = 200, description = "The session, in its new mode", body = SessionInfo),
        (status = 400, description = "No mode given", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A turn is running, the session has ended, or the agent refused the mode", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_mode(State(state): State<AppState>, Path(id): Path<String>, ApiJson(req): ApiJson<SetModeRequest>) -> ApiResult<ApiJson<SessionInfo>> {
    Ok(ApiJson(state.sessions().set_mode(&id, &req.mode).await?))
}

/// Cancel the running turn, if any.
#[utoipa::path(post, path = "/v1/sessions/{id}/cancel", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Done", body = CancelResponse),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_turn(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<ApiJson<CancelResponse>> {
    Ok(ApiJson(CancelResponse { cancelled: state.sessions().cancel(&id)? }))
}
