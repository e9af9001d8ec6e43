//! What every agent adapter implements ([`AgentDriver`]) and what it gets to work with ([`TurnCtx`]):
//! emitting events, numbering items, and asking the session's permission policy or a person.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::journal::Journal;
use crate::api::session::{
    ContentPart, CreateSessionRequest, ErrorData, EventData, EventSource, Item, ItemDelta, ItemKind, ItemStatus,
    PermissionDecision, PermissionKind, PermissionPolicy, PermissionRequested, PermissionResolved, QuestionRequested,
    QuestionResolved, Role, Usage,
};

/// How a turn ended, as the driver reports it; the session turns it into `turn.completed`.
#[derive(Debug, Default)]
pub(crate) struct TurnEnd {
    /// `None`: completed. `Some(msg)`: failed (an `error` event was already emitted).
    pub(crate) failed: Option<String>,
    /// Whether it was cancelled.
    pub(crate) cancelled: bool,
    pub(crate) stop_reason: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) usage: Option<Usage>,
    pub(crate) cost_usd: Option<f64>,
}

/// The agent cannot go on: the session ends with reason `error`.
#[derive(Debug)]
pub(crate) struct AgentGone(pub(crate) String);

/// One running agent behind a session.
#[async_trait::async_trait]
pub(crate) trait AgentDriver: Send {
    /// Runs one turn for `text`, translating the agent's stream into events through `ctx`, until the
    /// turn ends or `ctx.cancel` fires (then the driver interrupts the agent its own way).
    async fn turn(&mut self, text: &str, ctx: &TurnCtx) -> Result<TurnEnd, AgentGone>;
    /// Stops the agent process (the session is ending).
    async fn shutdown(&mut self);
    /// Switches the agent to `mode` between turns. `Err` says why not (the session keeps its mode).
    async fn set_mode(&mut self, _mode: &str) -> Result<(), String> {
        Err("this agent takes its mode when the session starts: create a new session with `mode`".to_owned())
    }
}

/// Everything a driver needs that is not its own: the session's settings.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub(crate) request: CreateSessionRequest,
    pub(crate) cwd: PathBuf,
    /// The session's own directory (journal, agent config files, sockets).
    pub(crate) dir: PathBuf,
    /// The agent's own session id from before a restart, to resume.
    pub(crate) native_session_id: Option<String>,
    /// The agent binary.
    pub(crate) binary: Option<PathBuf>,
    /// The `sbx-agent` executable for helper subcommands (`None`: this one).
    pub(crate) helper_exe: Option<PathBuf>,
    /// The agent's LLM endpoint and where it came from, when known (checked before each turn; see
    /// `llm.rs`).
    pub(crate) llm_url: Option<(String, &'static str)>,
    /// The runtime's managed processes (ACP agents' terminals run there).
    pub(crate) processes: Option<Arc<crate::server::processes::ProcessManager>>,
}

/// A question or permission waiting for a person.
pub(crate) enum Pending {
    Permission(oneshot::Sender<(PermissionDecision, Option<String>)>),
    Question(oneshot::Sender<Option<String>>),
}

/// State shared between a session's driver, its actor and the HTTP handlers.
pub(crate) struct Shared {
    pub(crate) journal: Arc<Journal>,
    pub(crate) policy: PermissionPolicy,
    next_item: AtomicU64,
    next_request: AtomicU64,
    pub(crate) pending: Mutex<BTreeMap<String, Pending>>,
    /// Tools the user allowed for the rest of the session ("allow always").
    pub(crate) always_allowed: Mutex<Vec<String>>,
    pub(crate) native_session_id: Mutex<Option<String>>,
    /// Called when the native session id becomes known (the session persists it).
    pub(crate) on_native_id: Box<dyn Fn(&str) + Send + Sync>,
}

impl Shared {
    pub(crate) fn new(
        journal: Arc<Journal>,
        policy: PermissionPolicy,
        native: Option<String>,
        on_native_id: Box<dyn Fn(&str) + Send + Sync>,
        ids_used: IdsUsed,
    ) -> Self {
        // Item and request ids continue after those already in the journal (after a restart).
        let IdsUsed { items, requests } = ids_used;
        Self {
            journal,
            policy,
            next_item: AtomicU64::new(items + 1),
            next_request: AtomicU64::new(requests + 1),
            pending: Mutex::new(BTreeMap::new()),
            always_allowed: Mutex::new(Vec::new()),
            native_session_id: Mutex::new(native),
            on_native_id,
        }
    }
}

/// How many item and request ids a session's journal already used (so new ones continue after them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IdsUsed {
    pub(crate) items: u64,
    pub(crate) requests: u64,
}

impl IdsUsed {
    /// Counts the ids an event uses (called for each event of a journal when it is reopened).
    pub(crate) fn count(&mut self, body: &EventData) {
        match body {
            EventData::ItemStarted(_) => self.items += 1,
            EventData::PermissionRequested(_) | EventData::QuestionRequested(_) => self.requests += 1,
            _ => {}
        }
    }
}

/// What a driver works with during a turn.
pub(crate) struct TurnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cancel: CancellationToken,
}

impl TurnCtx {
    /// Records an event.
    pub(crate) fn emit(&self, source: EventSource, body: EventData, raw: Option<serde_json::Value>) -> u64 {
        self.shared.journal.emit(source, body, raw)
    }

    /// A fresh item id.
    pub(crate) fn new_item_id(&self) -> String {
        format!("item_{}", self.shared.next_item.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts an item and returns its id.
    pub(crate) fn start_item(
        &self,
        kind: ItemKind,
        role: Option<Role>,
        native: Option<String>,
        parent: Option<String>,
        content: Vec<ContentPart>,
        raw: Option<serde_json::Value>,
    ) -> String {
        let item_id = self.new_item_id();
        let item = Item {
            item_id: item_id.clone(),
            native_item_id: native,
            parent_id: parent,
            kind,
            role,
            status: ItemStatus::InProgress,
            content,
        };
        self.emit(EventSource::Agent, EventData::ItemStarted(item), raw);
        item_id
    }

    /// A text (or argument) delta of an item.
    pub(crate) fn delta(&self, item_id: &str, delta: String, raw: Option<serde_json::Value>) {
        self.emit(EventSource::Agent, EventData::ItemDelta(ItemDelta { item_id: item_id.to_owned(), delta }), raw);
    }

    /// Completes an item with its full content.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete_item(
        &self,
        item_id: &str,
        kind: ItemKind,
        role: Option<Role>,
        native: Option<String>,
        parent: Option<String>,
        status: ItemStatus,
        content: Vec<ContentPart>,
        raw: Option<serde_json::Value>,
    ) {
        let item = Item {
            item_id: item_id.to_owned(),
            native_item_id: native,
            parent_id: parent,
            kind,
            role,
            status,
            content,
        };
        self.emit(EventSource::Agent, EventData::ItemCompleted(item), raw);
    }

    /// An `error` event.
    pub(crate) fn error(&self, source: EventSource, code: &str, message: String, status: Option<u16>, raw: Option<serde_json::Value>) {
        self.emit(source, EventData::Error(ErrorData { message, code: code.to_owned(), status }), raw);
    }

    /// Remembers the agent's own session id (persisted so a restarted runtime can resume it).
    pub(crate) fn set_native_session_id(&self, id: &str) {
        let mut cur = self.shared.native_session_id.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_deref() != Some(id) {
            *cur = Some(id.to_owned());
            drop(cur);
            (self.shared.on_native_id)(id);
        }
    }

    /// Asks whether a tool may run: decided by the policy when it can, otherwise by a person
    /// (`permission.requested`, then the reply). A cancelled turn denies.
    pub(crate) async fn ask_permission(
        &self,
        tool_name: &str,
        kind: PermissionKind,
        title: String,
        input: serde_json::Value,
        item_id: Option<String>,
        raw: Option<serde_json::Value>,
    ) -> (PermissionDecision, Option<String>) {
        let permission_id = format!("perm_{}", self.shared.next_request.fetch_add(1, Ordering::Relaxed));
        let request = PermissionRequested {
            permission_id: permission_id.clone(),
            tool_name: tool_name.to_owned(),
            kind,
            title,
            input,
            item_id,
        };
        self.emit(EventSource::Agent, EventData::PermissionRequested(request), raw);
        let always = self.shared.always_allowed.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|t| t == tool_name);
        let by_policy = match self.shared.policy {
            _ if always => Some(PermissionDecision::Allow),
            PermissionPolicy::AllowAll => Some(PermissionDecision::Allow),
            PermissionPolicy::DenyAll => Some(PermissionDecision::Deny),
            PermissionPolicy::AllowReads if kind == PermissionKind::Read => Some(PermissionDecision::Allow),
            PermissionPolicy::AllowReads | PermissionPolicy::Ask => None,
        };
        if let Some(decision) = by_policy {
            let message = (!decision.allows()).then(|| "denied by the session's permission policy".to_owned());
            self.resolve_permission(&permission_id, decision, "policy", message.clone());
            return (decision, message);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(permission_id.clone(), Pending::Permission(tx));
        tokio::select! {
            reply = rx => match reply {
                // The handler that took the reply already emitted `permission.resolved`.
                Ok((decision, message)) => {
                    if decision == PermissionDecision::AllowAlways {
                        self.shared.always_allowed.lock().unwrap_or_else(|e| e.into_inner()).push(tool_name.to_owned());
                    }
                    (decision, message)
                }
                Err(_) => (PermissionDecision::Deny, Some("the session ended".into())),
            },
            _ = self.cancel.cancelled() => {
                self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&permission_id);
                let message = Some("the turn was cancelled".to_owned());
                self.resolve_permission(&permission_id, PermissionDecision::Deny, "runtime", message.clone());
                (PermissionDecision::Deny, message)
            }
        }
    }

    fn resolve_permission(&self, id: &str, decision: PermissionDecision, by: &str, message: Option<String>) {
        let data = PermissionResolved { permission_id: id.to_owned(), decision, by: by.to_owned(), message };
        self.emit(EventSource::Runtime, EventData::PermissionResolved(data), None);
    }

    /// Asks the user a question and waits for the answer (`None`: rejected or cancelled).
    pub(crate) async fn ask_question(&self, question: String, options: Vec<String>, raw: Option<serde_json::Value>) -> Option<String> {
        let question_id = format!("question_{}", self.shared.next_request.fetch_add(1, Ordering::Relaxed));
        let data = QuestionRequested { question_id: question_id.clone(), question, options };
        self.emit(EventSource::Agent, EventData::QuestionRequested(data), raw);
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(question_id.clone(), Pending::Question(tx));
        tokio::select! {
            reply = rx => reply.ok().flatten(),
            _ = self.cancel.cancelled() => {
                self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&question_id);
                let data = QuestionResolved { question_id, answer: None };
                self.emit(EventSource::Runtime, EventData::QuestionResolved(data), None);
                None
            }
        }
    }
}

/// Environment for an agent process: the runtime's own (minus its token) plus the session's.
pub(crate) fn agent_command(program: &std::path::Path, settings: &SessionSettings) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(&settings.cwd)
        .env_remove(crate::server_env::TOKEN)
        .envs(&settings.request.env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // No parent-death signal is needed (and setting one needs unsafe `pre_exec`): every agent we drive
    // reads its requests from stdin and exits at end of file, which is what it sees when the runtime dies,
    // even by SIGKILL.
    cmd
}

/// The tail of an agent's stderr (for error messages when it fails).
/// Why a stdio agent is gone, as far as its process says: its exit status (waiting up to 2 s for it),
/// or "still running; killed" after killing it.
pub(crate) async fn exit_status_or_kill(child: &mut tokio::process::Child) -> String {
    match tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        _ => {
            let _ = child.start_kill();
            "still running; killed".to_owned()
        }
    }
}

/// Kills an agent process and reaps it (bounded).
pub(crate) async fn kill_agent(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
}

/// Ends an agent that exits at the end of its input (Codex's app-server, ACP agents): closes its stdin,
/// waits up to 3 s, then kills it.
pub(crate) async fn close_agent(mut child: tokio::process::Child, stdin: tokio::process::ChildStdin) {
    drop(stdin);
    if tokio::time::timeout(std::time::Duration::from_secs(3), child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

pub(crate) struct StderrTail {
    text: Arc<Mutex<String>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl StderrTail {
    /// Its last few non-empty lines, after waiting (briefly) for the agent's stderr to close, so what
    /// a crashing agent said last is included.
    pub(crate) async fn last_words(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reader).await;
        }
        let text = self.text.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let out = lines[lines.len().saturating_sub(5)..].join(" | ");
        if out.is_empty() { "(nothing on stderr)".into() } else { out }
    }
}

/// Keeps the last few KB of an agent's stderr (also logged at debug level).
pub(crate) fn collect_stderr(stderr: tokio::process::ChildStderr) -> StderrTail {
    use tokio::io::AsyncBufReadExt;
    let tail = Arc::new(Mutex::new(String::new()));
    let out = Arc::clone(&tail);
    let reader = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "sbx_agent::agent_stderr", "{line}");
            let mut t = out.lock().unwrap_or_else(|e| e.into_inner());
            t.push_str(&line);
            t.push('\n');
            if t.len() > 8192 {
                let cut = t.len() - 4096;
                let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(t.len());
                t.drain(..cut);
            }
        }
    });
    StderrTail { text: tail, reader: Some(reader) }
}

/// The option labels of a question as Claude's `AskUserQuestion` and Codex's `requestUserInput` give
/// them (`options: [{label, …}]`).
pub(crate) fn question_options(q: &serde_json::Value) -> Vec<String> {
    q.get("options")
        .and_then(serde_json::Value::as_array)
        .map(|o| o.iter().filter_map(|x| x.get("label").and_then(serde_json::Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl std::fmt::Debug for crate::server::processes::ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessManager").finish_non_exhaustive()
    }
}
