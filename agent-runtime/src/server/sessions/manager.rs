//! The table of sessions: create, send, reply, cancel, end, and recovery from the journals after a
//! restart.
//!
//! Each live session has one actor task that owns its agent driver and runs turns one at a time;
//! handlers talk to it through a queue, except for replies and cancels, which go straight to the
//! shared state because the actor is busy inside the turn they are about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::agents::{self, AgentRegistry};
use super::driver::{AgentDriver, IdsUsed, Pending, SessionSettings, Shared, TurnCtx};
use super::journal::{now_rfc3339, Journal};
use crate::api::session::{
    ContentPart, CreateSessionRequest, EndReason, ErrorData, EventData, EventSource, ItemKind, ItemStatus,
    PermissionDecision, PermissionReply, PermissionResolved, QuestionReply, QuestionResolved, Role, SendMessageResponse,
    SessionEnded, SessionInfo, SessionStarted, SessionState, TurnCompleted, TurnOutcome, TurnStarted,
};
use crate::server::fs::FsRoot;
use crate::server::ApiError;

/// How long a `wait`ing send waits by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);
/// The file holding a session's settings inside its directory.
const META_FILE: &str = "session.json";

/// What is persisted about a session besides its events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    id: String,
    request: CreateSessionRequest,
    cwd: String,
    created_at: String,
    #[serde(default)]
    native_session_id: Option<String>,
}

enum Command {
    Turn { turn_id: String, text: String, cancel: CancellationToken, started: Instant, done: Option<oneshot::Sender<TurnCompleted>> },
    End { by: String, reason: EndReason, done: oneshot::Sender<()> },
    SetMode { mode: String, done: oneshot::Sender<Result<(), String>> },
}

struct Status {
    state: SessionState,
    turns: u64,
    cancel: Option<CancellationToken>,
    ended: Option<SessionEnded>,
    commands: Option<mpsc::UnboundedSender<Command>>,
}

/// One session.
pub(crate) struct Session {
    meta: Mutex<Meta>,
    dir: PathBuf,
    shared: Arc<Shared>,
    status: Mutex<Status>,
}

impl Session {
    fn info(&self) -> SessionInfo {
        let meta = self.meta.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let (mut perms, mut questions) = (Vec::new(), Vec::new());
        for (id, p) in self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            match p {
                Pending::Permission(_) => perms.push(id.clone()),
                Pending::Question(_) => questions.push(id.clone()),
            }
        }
        SessionInfo {
            id: meta.id,
            agent: meta.request.agent.clone(),
            state: st.state,
            cwd: meta.cwd,
            model: meta.request.model.clone(),
            mode: meta.request.mode.clone(),
            permission_policy: meta.request.permission_policy,
            native_session_id: self.shared.native_session_id.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            last_sequence: self.shared.journal.last_sequence(),
            turns: st.turns,
            pending_permissions: perms,
            pending_questions: questions,
            created_at: meta.created_at,
            ended: st.ended.clone(),
        }
    }

    /// The event journal.
    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.shared.journal
    }
}

/// Every session of this runtime.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fs: FsRoot,
    agents: AgentRegistry,
    sessions: Mutex<BTreeMap<String, Arc<Session>>>,
    helper_exe: Option<PathBuf>,
    /// Environment for every agent (the session's own `env` wins): secrets the host pushed over
    /// `PUT /v1/runtime/session-env`, held only here (never journaled or logged).
    session_env: std::sync::RwLock<BTreeMap<String, String>>,
    /// `http://127.0.0.1:PORT`: where agents reach this runtime's LLM relay (set once the TCP listener is bound).
    relay_root: std::sync::OnceLock<String>,
    /// The runtime's managed processes (ACP agents' terminals run there).
    processes: std::sync::OnceLock<Arc<crate::server::processes::ProcessManager>>,
    /// Holds a temporary directory alive when no state directory was configured.
    _temp: Option<tempfile::TempDir>,
}

impl SessionManager {
    /// Sessions kept under `state_dir/sessions` (a temporary directory when `None`).
    pub fn new(state_dir: Option<PathBuf>, helper_exe: Option<PathBuf>, session_env: BTreeMap<String, String>, fs: FsRoot) -> std::io::Result<Self> {
        let (base, temp) = match state_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new().prefix("sbx-agent-state-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let agents = AgentRegistry::new(base.join("agents"));
        let dir = base.join("sessions");
        Ok(Self { inner: Arc::new(Inner { dir, fs, agents, sessions: Mutex::new(BTreeMap::new()), helper_exe, session_env: std::sync::RwLock::new(session_env), relay_root: Default::default(), processes: Default::default(), _temp: temp }) })
    }

    /// Replaces the environment every agent session started from now on gets.
    pub fn set_session_env(&self, env: BTreeMap<String, String>) {
        *self.inner.session_env.write().unwrap_or_else(|e| e.into_inner()) = env;
    }

    /// Gives sessions the runtime's process table (for ACP terminals).
    pub fn set_processes(&self, processes: Arc<crate::server::processes::ProcessManager>) {
        let _ = self.inner.processes.set(processes);
    }

    /// Records where agents reach this runtime over loopback (for the LLM relay of keyless sandboxes).
    pub fn set_relay_root(&self, root: String) {
        let _ = self.inner.relay_root.set(root);
    }

    /// The names (never the values) of the session environment.
    pub fn session_env_names(&self) -> Vec<String> {
        self.inner.session_env.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// The agents.
    pub(crate) fn agents(&self) -> &AgentRegistry {
        &self.inner.agents
    }

    /// Loads every session from the journals. Sessions that were not ended can continue: a turn
    /// that was running when the runtime died is closed as cancelled (with an `error` event saying
    /// why), and its agent is resumed at the next message.
    pub async fn recover(&self) -> std::io::Result<usize> {
        let dir = self.inner.dir.clone();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let meta: Meta = match std::fs::read(path.join(META_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                Some(m) => m,
                None => {
                    tracing::warn!(dir = %path.display(), "not a session directory (no readable session.json); skipped");
                    continue;
                }
            };
            match self.reopen(meta, &path).await {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(dir = %path.display(), error = %e, "cannot reopen session; skipped"),
            }
        }
        Ok(n)
    }

    async fn reopen(&self, meta: Meta, dir: &Path) -> std::io::Result<()> {
        // One streaming pass over the file decides the session's state, without holding its events.
        let path = dir.join(super::journal::EVENTS_FILE);
        let (ended, turns, open_turn, open_requests, ids_used) = tokio::task::spawn_blocking(move || {
            let mut ids_used = IdsUsed::default();
            let mut ended = None;
            let mut turns = 0;
            let mut open_turn: Option<String> = None;
            let mut open_requests: BTreeMap<String, bool> = BTreeMap::new();
            super::journal::scan(&path, &mut |e| {
                ids_used.count(&e.body);
                match e.body {
                    EventData::SessionEnded(s) => ended = Some(s),
                    EventData::TurnStarted(t) => {
                        turns += 1;
                        open_turn = Some(t.turn_id);
                    }
                    EventData::TurnCompleted(_) => open_turn = None,
                    EventData::PermissionRequested(p) => {
                        open_requests.insert(p.permission_id, true);
                    }
                    EventData::QuestionRequested(q) => {
                        open_requests.insert(q.question_id, false);
                    }
                    EventData::PermissionResolved(p) => {
                        open_requests.remove(&p.permission_id);
                    }
                    EventData::QuestionResolved(q) => {
                        open_requests.remove(&q.question_id);
                    }
                    _ => {}
                }
            })?;
            std::io::Result::Ok((ended, turns, open_turn, open_requests, ids_used))
        })
        .await
        .map_err(std::io::Error::other)??;
        let journal = Journal::open(&meta.id, dir).await?;
        let id = meta.id.clone();
        let shared = self.shared_for(&meta, dir, Arc::clone(&journal), ids_used);
        if ended.is_none() {
            for (rid, is_permission) in open_requests {
                let body = if is_permission {
                    EventData::PermissionResolved(PermissionResolved {
                        permission_id: rid,
                        decision: PermissionDecision::Deny,
                        by: "runtime".into(),
                        message: Some("the runtime restarted before anyone answered".into()),
                    })
                } else {
                    EventData::QuestionResolved(QuestionResolved { question_id: rid, answer: None })
                };
                journal.emit(EventSource::Runtime, body, None);
            }
            if let Some(turn_id) = open_turn {
                let message = "the runtime restarted during this turn; its agent was stopped. Send the message again to continue.";
                journal.emit(EventSource::Runtime, EventData::Error(ErrorData { message: message.into(), code: "runtime_restarted".into(), status: None }), None);
                journal.emit(
                    EventSource::Runtime,
                    EventData::TurnCompleted(TurnCompleted {
                        turn_id,
                        outcome: TurnOutcome::Cancelled,
                        stop_reason: Some("runtime_restarted".into()),
                        text: None,
                        usage: None,
                        cost_usd: None,
                        duration_ms: 0,
                    }),
                    None,
                );
            }
            // Visible (written) before the runtime answers anyone: a client that reads right after the
            // restart sees the interrupted turn closed (a race a busy CI machine showed).
            journal.flushed().await;
        }
        let session = Arc::new(Session {
            meta: Mutex::new(meta),
            dir: dir.to_path_buf(),
            shared,
            status: Mutex::new(Status {
                state: if ended.is_some() { SessionState::Ended } else { SessionState::Idle },
                turns,
                cancel: None,
                ended: ended.clone(),
                commands: None,
            }),
        });
        if ended.is_none() {
            // The agent is started again (resuming its own session) at the next message.
            self.spawn_actor(Arc::clone(&session), None);
        } else {
            // Nothing more will come (its events stay on disk; readers get them from the file).
            journal.close();
        }
        self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id, session);
        Ok(())
    }

    fn shared_for(&self, meta: &Meta, dir: &Path, journal: Arc<Journal>, ids_used: IdsUsed) -> Arc<Shared> {
        let meta_path = dir.join(META_FILE);
        let base = meta.clone();
        let on_native: Box<dyn Fn(&str) + Send + Sync> = Box::new(move |native: &str| {
            // What is on disk now (a mode set since the start is kept), else what the session began with.
            let on_disk = std::fs::read(&meta_path).ok().and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            let mut m = on_disk.unwrap_or_else(|| base.clone());
            m.native_session_id = Some(native.to_owned());
            if let Err(e) = write_meta(&meta_path, &m) {
                tracing::warn!(error = %e, "cannot persist the agent's session id; a restart will not resume it");
            }
        });
        Arc::new(Shared::new(journal, meta.request.permission_policy, meta.native_session_id.clone(), on_native, ids_used))
    }

    /// The environment every agent session gets (under its own).
    pub(crate) fn session_env(&self) -> BTreeMap<String, String> {
        self.inner.session_env.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Creates a session and starts its agent.
    pub(crate) async fn create(&self, req: CreateSessionRequest) -> Result<SessionInfo, ApiError> {
        let spec = self.inner.agents.spec(&req.agent)?;
        let id = match &req.id {
            Some(id) => {
                validate_id(id)?;
                id.clone()
            }
            None => format!("ses_{}", random_suffix()),
        };
        let binary = self.inner.agents.require_binary(spec).await?;
        let cwd = crate::server::processes::os::resolve_cwd(&self.inner.fs, req.cwd.clone()).await?;
        let mut req = req;
        // Skills are given relative to the runtime's root (or absolute); adapters get absolute paths.
        for s in req.skills.iter_mut() {
            let p = self.inner.fs.resolve(s)?;
            if !p.is_dir() {
                return Err(ApiError::bad_request(format!("skill directory `{s}` does not exist")));
            }
            *s = p.to_string_lossy().into_owned();
        }
        for m in &req.mcp_servers {
            if m.command.is_some() == m.url.is_some() {
                return Err(ApiError::bad_request(format!(
                    "MCP server `{}` needs exactly one of `command` (a local server) or `url` (a remote one)",
                    m.name
                )));
            }
        }
        let dir = self.inner.dir.join(&id);
        {
            let sessions = self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.contains_key(&id) || dir.exists() {
                return Err(ApiError::conflict(format!("a session `{id}` already exists; pick another id or leave it out")));
            }
        }
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        let meta = Meta {
            id: id.clone(),
            request: req.clone(),
            cwd: cwd.to_string_lossy().into_owned(),
            created_at: now_rfc3339(),
            native_session_id: None,
        };
        write_meta(&dir.join(META_FILE), &meta).map_err(|e| ApiError::internal(format!("cannot write session settings: {e}")))?;
        let journal = Journal::open(&id, &dir).await.map_err(|e| ApiError::internal(format!("cannot open the journal: {e}")))?;
        let shared = self.shared_for(&meta, &dir, Arc::clone(&journal), IdsUsed::default());
        let session = Arc::new(Session {
            meta: Mutex::new(meta.clone()),
            dir: dir.clone(),
            shared,
            status: Mutex::new(Status { state: SessionState::Idle, turns: 0, cancel: None, ended: None, commands: None }),
        });
        let started = SessionStarted { agent: req.agent.clone(), native_session_id: None, model: req.model.clone(), cwd: meta.cwd.clone() };
        journal.emit(EventSource::Runtime, EventData::SessionStarted(started), None);
        let settings = self.settings(&session, Some(binary));
        let driver = match agents::start_driver(spec, settings).await {
            Ok(d) => d,
            Err(gone) => {
                let ended = end_with_error(&session, &gone.0);
                self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Arc::clone(&session));
                journal.flushed().await;
                let _ = ended;
                return Err(ApiError::new(
                    crate::api::ProblemKind::Internal,
                    format!("the {} agent did not start: {}", req.agent, gone.0),
                ));
            }
        };
        self.spawn_actor(Arc::clone(&session), Some(driver));
        self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::clone(&session));
        journal.flushed().await;
        Ok(session.info())
    }

    fn settings(&self, session: &Session, binary: Option<PathBuf>) -> SessionSettings {
        let meta = session.meta.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut request = meta.request;
        for (k, v) in self.inner.session_env.read().unwrap_or_else(|e| e.into_inner()).iter() {
            request.env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        // A keyless sandbox: the agent calls its model on this runtime, under a path naming its session
        // (for the host's audit records); `llm::apply` turns this into the agent's configuration.
        if let Some(root) = self.inner.relay_root.get().filter(|_| request.env.contains_key(crate::api::llm_relay::RELAY_TOKEN_ENV)) {
            request.env.insert(super::llm::RELAY_URL_ENV.into(), format!("{root}/v1/llm/s/{}", meta.id));
        }
        SessionSettings {
            request,
            cwd: PathBuf::from(meta.cwd),
            dir: session.dir.clone(),
            native_session_id: session.shared.native_session_id.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            binary,
            helper_exe: self.inner.helper_exe.clone(),
            llm_url: None,
            processes: self.inner.processes.get().cloned(),
        }
    }

    fn spawn_actor(&self, session: Arc<Session>, driver: Option<Box<dyn AgentDriver>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        session.status.lock().unwrap_or_else(|e| e.into_inner()).commands = Some(tx);
        tokio::spawn(actor(self.clone(), session, driver, rx));
    }

    /// All sessions, oldest first.
    pub(crate) fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut out: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }

    /// One session.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<Session>, ApiError> {
        self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().ok_or_else(|| {
            ApiError::not_found(format!("no session `{id}`; GET /v1/sessions lists them"))
        })
    }

    /// Its info.
    pub(crate) fn info(&self, id: &str) -> Result<SessionInfo, ApiError> {
        Ok(self.get(id)?.info())
    }

    /// Starts a turn; with `wait`, returns when it has ended (or the wait timed out).
    pub(crate) async fn send(&self, id: &str, text: String, wait: bool, timeout: Option<Duration>) -> Result<SendMessageResponse, ApiError> {
        let session = self.get(id)?;
        if text.trim().is_empty() {
            return Err(ApiError::bad_request("`text` is empty: send the message you want the agent to act on"));
        }
        let (done_tx, done_rx) = oneshot::channel();
        let (turn_id, first_sequence) = {
            let mut st = session.status.lock().unwrap_or_else(|e| e.into_inner());
            match st.state {
                SessionState::Ended => {
                    return Err(ApiError::conflict(format!("session `{id}` has ended; create a new session")));
                }
                SessionState::Running => {
                    return Err(ApiError::conflict(format!(
                        "session `{id}` is already running a turn; wait for its turn.completed or cancel it"
                    )));
                }
                SessionState::Idle => {}
            }
            let Some(commands) = st.commands.clone() else {
                return Err(ApiError::conflict(format!("session `{id}` is shutting down")));
            };
            st.turns += 1;
            let turn_id = format!("turn_{}", st.turns);
            let cancel = CancellationToken::new();
            st.cancel = Some(cancel.clone());
            st.state = SessionState::Running;
            // Numbered under the status lock, so `turn.started` always follows the previous turn's end.
            let seq = session.shared.journal.emit(
                EventSource::Runtime,
                EventData::TurnStarted(TurnStarted { turn_id: turn_id.clone() }),
                None,
            );
            let cmd = Command::Turn { turn_id: turn_id.clone(), text, cancel, started: Instant::now(), done: wait.then_some(done_tx) };
            if commands.send(cmd).is_err() {
                st.state = SessionState::Idle;
                return Err(ApiError::conflict(format!("session `{id}` is shutting down")));
            }
            (turn_id, seq)
        };
        let completed = if wait {
            match tokio::time::timeout(timeout.unwrap_or(DEFAULT_WAIT), done_rx).await {
                Ok(Ok(c)) => Some(c),
                _ => None,
            }
        } else {
            None
        };
        Ok(SendMessageResponse { turn_id, first_sequence, completed })
    }

    /// Answers a permission request.
    pub(crate) fn reply_permission(&self, id: &str, permission_id: &str, reply: PermissionReply) -> Result<(), ApiError> {
        let session = self.get(id)?;
        let pending = session.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(permission_id);
        match pending {
            Some(Pending::Permission(tx)) => {
                let message = match (reply.decision, reply.message) {
                    (PermissionDecision::Deny, None) => Some("the user denied this".to_owned()),
                    (_, m) => m,
                };
                let data = PermissionResolved { permission_id: permission_id.to_owned(), decision: reply.decision, by: "user".into(), message: message.clone() };
                session.shared.journal.emit(EventSource::Runtime, EventData::PermissionResolved(data), None);
                let _ = tx.send((reply.decision, message));
                Ok(())
            }
            Some(other) => {
                session.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(permission_id.to_owned(), other);
                Err(ApiError::bad_request(format!("`{permission_id}` is a question; answer it at /questions/{permission_id}")))
            }
            None => Err(ApiError::not_found(format!(
                "no pending permission request `{permission_id}` in session `{id}` (already answered, or the turn ended)"
            ))),
        }
    }

    /// Answers (or rejects) a question.
    pub(crate) fn reply_question(&self, id: &str, question_id: &str, reply: QuestionReply) -> Result<(), ApiError> {
        let session = self.get(id)?;
        let pending = session.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(question_id);
        match pending {
            Some(Pending::Question(tx)) => {
                let data = QuestionResolved { question_id: question_id.to_owned(), answer: reply.answer.clone() };
                session.shared.journal.emit(EventSource::Runtime, EventData::QuestionResolved(data), None);
                let _ = tx.send(reply.answer);
                Ok(())
            }
            Some(other) => {
                session.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(question_id.to_owned(), other);
                Err(ApiError::bad_request(format!("`{question_id}` is a permission request; answer it at /permissions/{question_id}")))
            }
            None => Err(ApiError::not_found(format!(
                "no pending question `{question_id}` in session `{id}` (already answered, or the turn ended)"
            ))),
        }
    }

    /// Switches the session's agent to `mode` between turns (`POST /v1/sessions/{id}/mode`); the
    /// session keeps it from then on, across a runtime restart too.
    pub(crate) async fn set_mode(&self, id: &str, mode: &str) -> Result<SessionInfo, ApiError> {
        let session = self.get(id)?;
        if mode.trim().is_empty() {
            return Err(ApiError::bad_request("`mode` is empty: `sbx agent ls NAME` lists each agent's modes"));
        }
        let commands = {
            let st = session.status.lock().unwrap_or_else(|e| e.into_inner());
            match st.state {
                SessionState::Ended => return Err(ApiError::conflict(format!("session `{id}` has ended; create a new session"))),
                SessionState::Running => {
                    return Err(ApiError::conflict(format!("session `{id}` is running a turn; change its mode after turn.completed")))
                }
                SessionState::Idle => {}
            }
            st.commands.clone().ok_or_else(|| ApiError::conflict(format!("session `{id}` is shutting down")))?
        };
        let (tx, rx) = oneshot::channel();
        if commands.send(Command::SetMode { mode: mode.to_owned(), done: tx }).is_err() {
            return Err(ApiError::conflict(format!("session `{id}` is shutting down")));
        }
        match rx.await {
            Ok(Ok(())) => Ok(session.info()),
            Ok(Err(why)) => Err(ApiError::conflict(why)),
            Err(_) => Err(ApiError::conflict(format!("session `{id}` is shutting down"))),
        }
    }

    /// Cancels the running turn; `false` when none was running.
    pub(crate) fn cancel(&self, id: &str) -> Result<bool, ApiError> {
        let session = self.get(id)?;
        let st = session.status.lock().unwrap_or_else(|e| e.into_inner());
        match (&st.state, &st.cancel) {
            (SessionState::Running, Some(c)) => {
                c.cancel();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends a session (cancelling a running turn) for `reason`, and with `forget` deletes its journal.
    pub(crate) async fn end(&self, id: &str, forget: bool, reason: EndReason) -> Result<SessionInfo, ApiError> {
        let session = self.get(id)?;
        let commands = {
            let st = session.status.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = &st.cancel {
                c.cancel();
            }
            st.commands.clone()
        };
        if let Some(commands) = commands {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::End { by: "user".into(), reason, done: tx }).is_ok() {
                let _ = rx.await;
            }
        }
        session.shared.journal.flushed().await;
        let info = session.info();
        if forget {
            self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            let dir = session.dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
        Ok(info)
    }

    /// Ends every live session (runtime shutdown): agents are stopped, journals closed.
    pub async fn shutdown_all(&self) {
        let sessions: Vec<Arc<Session>> = self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for s in sessions {
            let commands = {
                let st = s.status.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = &st.cancel {
                    c.cancel();
                }
                st.commands.clone()
            };
            if let Some(commands) = commands {
                let (tx, rx) = oneshot::channel();
                if commands.send(Command::End { by: "runtime".into(), reason: EndReason::Terminated, done: tx }).is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
                }
            }
        }
    }
}

/// Runs a session's turns one at a time.
async fn actor(mgr: SessionManager, session: Arc<Session>, mut driver: Option<Box<dyn AgentDriver>>, mut rx: mpsc::UnboundedReceiver<Command>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Turn { turn_id, text, cancel, started, done } => {
                let ctx = TurnCtx { shared: Arc::clone(&session.shared), cancel };
                let user = ctx.start_item(ItemKind::Message, Some(Role::User), None, None, Vec::new(), None);
                let content = vec![ContentPart::Text { text: text.clone() }];
                ctx.complete_item(&user, ItemKind::Message, Some(Role::User), None, None, ItemStatus::Completed, content, None);
                if driver.is_none() {
                    // After a restart: start the agent again, resuming its own session.
                    let agent = session.meta.lock().unwrap_or_else(|e| e.into_inner()).request.agent.clone();
                    let started_driver = match mgr.inner.agents.spec(&agent) {
                        Ok(spec) => match mgr.inner.agents.require_binary(spec).await {
                            Ok(bin) => agents::start_driver(spec, mgr.settings(&session, Some(bin))).await.map_err(|g| g.0),
                            Err(e) => Err(e.to_string()),
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    match started_driver {
                        Ok(d) => driver = Some(d),
                        Err(msg) => {
                            let data = finish_turn(&session, &turn_id, started, TurnOutcome::Failed, None);
                            end_with_error(&session, &format!("the agent could not be restarted: {msg}"));
                            answer(&session, done, data).await;
                            break;
                        }
                    }
                }
                let Some(d) = driver.as_mut() else { break };
                match d.turn(&text, &ctx).await {
                    Ok(end) => {
                        let outcome = if end.cancelled {
                            TurnOutcome::Cancelled
                        } else if end.failed.is_some() {
                            TurnOutcome::Failed
                        } else {
                            TurnOutcome::Completed
                        };
                        let data = TurnCompleted {
                            turn_id: turn_id.clone(),
                            outcome,
                            stop_reason: end.stop_reason,
                            text: end.text,
                            usage: end.usage,
                            cost_usd: end.cost_usd,
                            duration_ms: started.elapsed().as_millis() as u64,
                        };
                        let data = finish_turn(&session, &turn_id, started, outcome, Some(data));
                        answer(&session, done, data).await;
                    }
                    Err(gone) => {
                        ctx.error(EventSource::Runtime, "agent_crashed", gone.0.clone(), None, None);
                        let data = finish_turn(&session, &turn_id, started, TurnOutcome::Failed, None);
                        d.shutdown().await;
                        end_with_error(&session, &gone.0);
                        // The waiter learns of the turn's end after the session's end is recorded too.
                        answer(&session, done, data).await;
                        break;
                    }
                }
            }
            Command::SetMode { mode, done } => {
                // No driver yet (after a restart): the agent starts with the recorded mode.
                let set = match driver.as_mut() {
                    Some(d) => d.set_mode(&mode).await,
                    None => Ok(()),
                };
                if set.is_ok() {
                    let meta = {
                        let mut m = session.meta.lock().unwrap_or_else(|e| e.into_inner());
                        m.request.mode = Some(mode);
                        m.clone()
                    };
                    if let Err(e) = write_meta(&session.dir.join(META_FILE), &meta) {
                        tracing::warn!(error = %e, "cannot persist the session's mode; a restart starts the agent in its first mode");
                    }
                }
                let _ = done.send(set);
            }
            Command::End { by, reason, done } => {
                if let Some(d) = driver.as_mut() {
                    d.shutdown().await;
                }
                let data = SessionEnded { reason, terminated_by: by, message: None };
                mark_ended(&session, data);
                session.shared.journal.flushed().await;
                let _ = done.send(());
                break;
            }
        }
    }
    // Whatever is still waiting for a person gets a closed channel (a denial).
    session.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    session.status.lock().unwrap_or_else(|e| e.into_inner()).commands = None;
}

/// Emits `turn.completed` and makes the session idle again.
fn finish_turn(session: &Session, turn_id: &str, started: Instant, outcome: TurnOutcome, data: Option<TurnCompleted>) -> TurnCompleted {
    let data = data.unwrap_or_else(|| TurnCompleted {
        turn_id: turn_id.to_owned(),
        outcome,
        stop_reason: None,
        text: None,
        usage: None,
        cost_usd: None,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    {
        let mut st = session.status.lock().unwrap_or_else(|e| e.into_inner());
        session.shared.journal.emit(EventSource::Runtime, EventData::TurnCompleted(data.clone()), None);
        st.state = SessionState::Idle;
        st.cancel = None;
    }
    data
}

/// Answers a `wait`ing send once everything recorded so far is readable (it reads the events next).
async fn answer(session: &Session, done: Option<oneshot::Sender<TurnCompleted>>, data: TurnCompleted) {
    if let Some(done) = done {
        session.shared.journal.flushed().await;
        let _ = done.send(data);
    }
}

fn end_with_error(session: &Session, message: &str) -> SessionEnded {
    let data = SessionEnded { reason: EndReason::Error, terminated_by: "agent".into(), message: Some(message.to_owned()) };
    mark_ended(session, data.clone());
    data
}

fn mark_ended(session: &Session, data: SessionEnded) {
    let mut st = session.status.lock().unwrap_or_else(|e| e.into_inner());
    if st.ended.is_some() {
        return;
    }
    session.shared.journal.emit(EventSource::Runtime, EventData::SessionEnded(data.clone()), None);
    st.state = SessionState::Ended;
    st.ended = Some(data);
    st.cancel = None;
}

fn write_meta(path: &Path, meta: &Meta) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    // The session's env may hold keys the user passed: only the runtime's user may read it.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&bytes)?;
    drop(f);
    std::fs::rename(tmp, path)
}

fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "session id `{id}` is not allowed: use 1-64 letters, digits, `-` or `_` (or leave it out)"
        )))
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}
