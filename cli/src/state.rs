//! The host's record of sandboxes, runs and session events: SQLite in WAL mode at
//! `$XDG_STATE_HOME/sbx/sbx.db`, created with mode 0600 because it holds runtime tokens.
//!
//! Two `sbx` processes may use it at once: WAL lets readers and one writer proceed, and a busy timeout
//! makes a second writer wait instead of failing.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use sbx_providers::bootstrap::RuntimeLayout;
use sbx_providers::{Endpoint, Labels};
use serde::{Deserialize, Serialize};

/// The state directory: `$XDG_STATE_HOME/sbx` or `~/.local/state/sbx`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sbx");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/sbx")
}

/// A sandbox sbx knows about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// The user's name for it.
    pub name: String,
    /// Provider name.
    pub provider: String,
    /// The provider's id (empty while creating).
    pub id: String,
    /// `creating`, `ready`.
    pub status: String,
    /// Where the runtime is.
    pub endpoint: Option<Endpoint>,
    /// The runtime's token (secret; never printed).
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// How the runtime was laid out (to restart it).
    pub layout: Option<RuntimeLayout>,
    /// Labels put on it.
    pub labels: Labels,
    /// The run that made it.
    pub run_id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which `sbx gc` may remove it.
    pub expires_at: Option<u64>,
    /// How long each phase of making it took (empty for sandboxes recorded before timings were kept).
    pub phases: sbx_providers::lifecycle::Phases,
}

/// An open state database.
pub struct State {
    pub(crate) conn: Connection,
    path: PathBuf,
}

fn restrict(path: &Path) {
    if path.exists() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

impl State {
    /// Opens (creating if needed) the default database.
    pub fn open_default() -> Result<Self> {
        Self::open(&state_dir().join("sbx.db"))
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = path.parent().context("state path has no parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("create state dir {}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        // Create the file ourselves with 0600 so it is never briefly world-readable. Only when it is
        // missing: closing a descriptor of the database drops every POSIX lock this process holds on it,
        // including those of a connection already open here (`sbx attach` opens a second one for the
        // relay). Without its locks, another process's closing connection checkpoints and deletes the
        // WAL under it, and the open connection goes on reading a stale snapshot (a revoked relay token
        // stayed valid for a running `sbx attach`).
        if !path.exists() {
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("create state file {}", path.display())),
            }
        }
        let conn = Connection::open(path).with_context(|| format!("open state {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Two `sbx` processes that create the database at the same moment (two `sbx run`s started
        // together) can be told "locked" while the other switches it to WAL, without the busy handler
        // being asked: such a setup step is tried again for a while.
        when_not_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
        when_not_busy(|| conn.pragma_update(None, "synchronous", "NORMAL"))?;
        when_not_busy(|| conn.execute_batch(SCHEMA)).context("create state schema")?;
        when_not_busy(|| migrate(&conn))?;
        for suffix in ["", "-wal", "-shm"] {
            restrict(&PathBuf::from(format!("{}{suffix}", path.display())));
        }
        Ok(Self { conn, path: path.to_path_buf() })
    }

    /// The database file (another connection to it: [`State::open`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This database's id (made on first use), put on every sandbox as [`sbx_providers::labels::STATE_ID`].
    pub fn instance_id(&self) -> Result<String> {
        let existing: Option<String> =
            self.conn.query_row("SELECT value FROM meta WHERE key = 'instance-id'", [], |r| r.get(0)).optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id = sbx_providers::bootstrap::fresh_token();
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance-id', ?1)", params![id])?;
        // Another process may have won the race; read back whichever id stuck.
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = 'instance-id'", [], |r| r.get(0))?)
    }

    /// Reserves `name` for a sandbox being created; fails if the name is taken.
    pub fn reserve(&self, name: &str, provider: &str, run_id: &str, labels: &Labels, expires_at: Option<u64>) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO sandboxes (name, provider, id, status, labels, run_id, created_at, expires_at)
             VALUES (?1, ?2, '', 'creating', ?3, ?4, ?5, ?6)",
            params![name, provider, serde_json::to_string(labels)?, run_id, now_secs() as i64, expires_at.map(|e| e as i64)],
        )?;
        Ok(n == 1)
    }

    /// Records the provider id as soon as it is known (so Ctrl-C and gc can find it).
    pub fn set_id(&self, name: &str, id: &str) -> Result<()> {
        self.conn.execute("UPDATE sandboxes SET id = ?2 WHERE name = ?1", params![name, id])?;
        Ok(())
    }

    /// Marks a sandbox ready with its runtime endpoint, token and layout.
    pub fn set_ready(&self, name: &str, endpoint: &Endpoint, token: &str, layout: &RuntimeLayout) -> Result<()> {
        self.conn.execute(
            "UPDATE sandboxes SET status = 'ready', endpoint = ?2, token = ?3, layout = ?4 WHERE name = ?1",
            params![name, serde_json::to_string(endpoint)?, token, serde_json::to_string(layout)?],
        )?;
        Ok(())
    }

    /// Records how long each phase of making it took.
    pub fn set_phases(&self, name: &str, phases: &sbx_providers::lifecycle::Phases) -> Result<()> {
        self.conn.execute("UPDATE sandboxes SET phases = ?2 WHERE name = ?1", params![name, serde_json::to_string(phases)?])?;
        Ok(())
    }

    /// Sets a sandbox's status (`kept`: making it failed and `--keep` kept it).
    pub fn set_status(&self, name: &str, status: &str) -> Result<()> {
        self.conn.execute("UPDATE sandboxes SET status = ?2 WHERE name = ?1", params![name, status])?;
        Ok(())
    }

    /// Forgets a sandbox. Its LLM relay token (keyless) is revoked, not deleted: `sbx usage` still
    /// shows its requests.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.conn.execute("DELETE FROM sandboxes WHERE name = ?1", params![name])?;
        self.revoke_relay_token(name, now_secs())?;
        Ok(())
    }

    /// One sandbox by name.
    pub fn get(&self, name: &str) -> Result<Option<SandboxRecord>> {
        self.conn
            .query_row(&format!("{SELECT} WHERE name = ?1"), params![name], row_to_record)
            .optional()
            .map_err(Into::into)
    }

    /// All sandboxes, by name.
    pub fn list(&self) -> Result<Vec<SandboxRecord>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_record)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }
}

/// Runs of `sbx run`.
impl State {
    /// Records (or updates) a run.
    pub fn record_run(&self, id: &str, status: &str, summary: Option<&str>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO runs (id, created_at, status, summary) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, summary = COALESCE(excluded.summary, runs.summary)",
            params![id, now_secs() as i64, status, summary],
        )?;
        Ok(())
    }

    /// Every run: id, created (Unix seconds), status; newest first.
    pub fn list_runs(&self) -> Result<Vec<(String, u64, String)>> {
        let mut stmt = self.conn.prepare("SELECT id, created_at, status FROM runs ORDER BY created_at DESC, id DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, String>(2)?)))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// Where a run's results directory is (absolute).
    pub fn set_run_results(&self, id: &str, dir: &Path) -> Result<()> {
        self.conn.execute("UPDATE runs SET results = ?2 WHERE id = ?1", params![id, dir.to_string_lossy()])?;
        Ok(())
    }

    /// A run's results directory, when it was recorded (runs from before sbx recorded it have none).
    pub fn run_results(&self, id: &str) -> Result<Option<PathBuf>> {
        let dir: Option<Option<String>> = self.conn.query_row("SELECT results FROM runs WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
        Ok(dir.flatten().map(PathBuf::from))
    }

    /// One run's status and summary JSON.
    pub fn get_run(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        self.conn
            .query_row("SELECT status, summary FROM runs WHERE id = ?1", params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(Into::into)
    }
}

/// Session events the CLI keeps (so a transcript outlives its sandbox).
impl State {
    /// Stores events (already stored ones are ignored), in one transaction.
    pub fn record_events(&self, sandbox: &str, session: &str, events: &[(u64, String)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO session_events (sandbox, session, seq, event) VALUES (?1, ?2, ?3, ?4)")?;
            for (seq, json) in events {
                stmt.execute(params![sandbox, session, *seq as i64, json])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The highest sequence stored for a session (0 when none).
    pub fn last_event_seq(&self, sandbox: &str, session: &str) -> Result<u64> {
        let n: Option<i64> = self.conn.query_row(
            "SELECT MAX(seq) FROM session_events WHERE sandbox = ?1 AND session = ?2",
            params![sandbox, session],
            |r| r.get(0),
        )?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Every stored event of a session, in order, as JSON text.
    pub fn session_events(&self, sandbox: &str, session: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT event FROM session_events WHERE sandbox = ?1 AND session = ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![sandbox, session], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// Sessions with stored events for a sandbox (for `session ls` after the sandbox is gone).
    pub fn stored_sessions(&self, sandbox: &str) -> Result<Vec<(String, u64)>> {
        let mut stmt =
            self.conn.prepare("SELECT session, MAX(seq) FROM session_events WHERE sandbox = ?1 GROUP BY session ORDER BY session")?;
        let rows = stmt.query_map(params![sandbox], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }
}

const SELECT: &str =
    "SELECT name, provider, id, status, endpoint, token, layout, labels, run_id, created_at, expires_at, phases FROM sandboxes";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxRecord> {
    let endpoint: Option<String> = r.get(4)?;
    let layout: Option<String> = r.get(6)?;
    let labels: String = r.get(7)?;
    let phases: Option<String> = r.get(11)?;
    Ok(SandboxRecord {
        name: r.get(0)?,
        provider: r.get(1)?,
        id: r.get(2)?,
        status: r.get(3)?,
        endpoint: endpoint.and_then(|e| serde_json::from_str(&e).ok()),
        token: r.get(5)?,
        layout: layout.and_then(|l| serde_json::from_str(&l).ok()),
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        run_id: r.get(8)?,
        created_at: r.get::<_, i64>(9)? as u64,
        expires_at: r.get::<_, Option<i64>>(10)?.map(|e| e as u64),
        phases: phases.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default(),
    })
}

/// Runs `f` again while SQLite answers busy or locked, for up to ten seconds.
fn when_not_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Brings a database made by an older sbx up to this schema. Only reads unless something is missing
/// (so opening never takes the write lock in the common case); a change runs in one immediate
/// transaction that checks again, so two processes opening an old database at once both succeed.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    // Columns added after a table was first made: (table, column, type).
    const ADDED: [(&str, &str, &str); 2] = [("sandboxes", "phases", "TEXT"), ("runs", "results", "TEXT")];
    let has = |c: &Connection, table: &str, column: &str| -> rusqlite::Result<bool> {
        c.query_row(&format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"), params![column], |r| r.get::<_, i64>(0)).map(|n| n > 0)
    };
    let mut missing = false;
    for (table, column, _) in ADDED {
        missing |= !has(conn, table, column)?;
    }
    if !missing {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    for (table, column, ty) in ADDED {
        if !has(&tx, table, column)? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sandboxes (
    name TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    endpoint TEXT,
    token TEXT,
    layout TEXT,
    labels TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    phases TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS relay_tokens (
    sandbox TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    agents TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ttl_secs INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    rpm INTEGER,
    max_tokens INTEGER,
    wait_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS llm_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sandbox TEXT NOT NULL,
    session TEXT,
    provider TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    model TEXT,
    started_ms INTEGER NOT NULL,
    admitted INTEGER NOT NULL,
    status INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    latency_ms INTEGER,
    duration_ms INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS llm_requests_by_sandbox ON llm_requests (sandbox, started_ms);
CREATE TABLE IF NOT EXISTS session_events (
    sandbox TEXT NOT NULL,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (sandbox, session, seq)
);
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_database_gets_the_phases_column_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sbx.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&SCHEMA.replace("    expires_at INTEGER,\n    phases TEXT\n", "    expires_at INTEGER\n")).unwrap();
            conn.execute(
                "INSERT INTO sandboxes (name, provider, id, status, labels, run_id, created_at) VALUES ('old', 'local', 'x', 'ready', '{}', 'r', 1)",
                [],
            )
            .unwrap();
        }
        let state = State::open(&path).expect("open an older database");
        let rec = state.get("old").unwrap().expect("row kept");
        assert!(rec.phases.0.is_empty());
        let phases = sbx_providers::lifecycle::Phases(vec![sbx_providers::lifecycle::PhaseRecord {
            name: "create".into(),
            duration_ms: 5,
            outcome: sbx_providers::lifecycle::Outcome::Ok,
        }]);
        state.set_phases("old", &phases).unwrap();
        assert_eq!(State::open(&path).unwrap().get("old").unwrap().unwrap().phases, phases);
    }
}
