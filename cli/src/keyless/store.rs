//! Keyless sandboxes in the host state: each sandbox's relay token (with its expiry, revocation and
//! limits) and one audit row per relayed model request.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::state::State;

/// A keyless sandbox's relay token and limits.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayToken {
    /// The sandbox's sbx name.
    pub sandbox: String,
    /// The token the sandbox's agents present (not a model key).
    pub token: String,
    /// The agents whose keys on this machine the relay injects (`claude` → Anthropic, `codex` → OpenAI).
    pub agents: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// How far each renewal pushes the expiry.
    pub ttl_secs: u64,
    /// Unix seconds after which the token is refused (renewed while a host serves the relay).
    pub expires_at: u64,
    /// Unix seconds when `sbx auth revoke` or `sbx down` revoked it.
    pub revoked_at: Option<u64>,
    /// Requests per minute (None: no limit).
    pub rpm: Option<u32>,
    /// Input + output tokens over the sandbox's life (None: no limit).
    pub max_tokens: Option<u64>,
    /// How long a model request waits in the sandbox for a host to attach.
    pub wait_ms: u64,
}

impl std::fmt::Debug for RelayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayToken")
            .field("sandbox", &self.sandbox)
            .field("agents", &self.agents)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// The start of a relayed request.
#[derive(Debug, Clone)]
pub struct AuditStart<'a> {
    pub sandbox: &'a str,
    pub session: Option<&'a str>,
    pub provider: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub started_ms: u64,
    /// Whether it passed the token and the limits (refused requests are recorded too, and do not
    /// count against the rate limit).
    pub admitted: bool,
}

/// How a relayed request ended.
#[derive(Debug, Clone, Default)]
pub struct AuditEnd {
    pub status: u16,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// To the response head.
    pub latency_ms: Option<u64>,
    /// To the end of the response.
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// One audit row (`sbx usage`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub sandbox: String,
    pub session: Option<String>,
    pub provider: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    /// Unix milliseconds.
    pub started_ms: u64,
    /// HTTP status the agent got (None while in flight).
    pub status: Option<u16>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|n| n.max(0) as u64)
}

impl State {
    /// Records (or replaces) a sandbox's relay token.
    pub fn put_relay_token(&self, t: &RelayToken) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO relay_tokens (sandbox, token, agents, created_at, ttl_secs, expires_at, revoked_at, rpm, max_tokens, wait_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                t.sandbox,
                t.token,
                t.agents.join(","),
                t.created_at as i64,
                t.ttl_secs as i64,
                t.expires_at as i64,
                t.revoked_at.map(|r| r as i64),
                t.rpm.map(i64::from),
                t.max_tokens.map(|m| m as i64),
                t.wait_ms as i64
            ],
        )?;
        Ok(())
    }

    /// A sandbox's relay token (None: not keyless).
    pub fn relay_token(&self, sandbox: &str) -> Result<Option<RelayToken>> {
        Ok(self
            .conn
            .query_row(
                "SELECT sandbox, token, agents, created_at, ttl_secs, expires_at, revoked_at, rpm, max_tokens, wait_ms
                 FROM relay_tokens WHERE sandbox = ?1",
                params![sandbox],
                |r| {
                    let agents: String = r.get(2)?;
                    Ok(RelayToken {
                        sandbox: r.get(0)?,
                        token: r.get(1)?,
                        agents: agents.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
                        created_at: r.get::<_, i64>(3)? as u64,
                        ttl_secs: r.get::<_, i64>(4)? as u64,
                        expires_at: r.get::<_, i64>(5)? as u64,
                        revoked_at: opt_u64(r.get(6)?),
                        rpm: r.get::<_, Option<i64>>(7)?.map(|n| n.clamp(0, u32::MAX as i64) as u32),
                        max_tokens: opt_u64(r.get(8)?),
                        wait_ms: r.get::<_, i64>(9)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Revokes a sandbox's relay token; false when it has none or it was revoked already.
    pub fn revoke_relay_token(&self, sandbox: &str, now: u64) -> Result<bool> {
        let n =
            self.conn.execute("UPDATE relay_tokens SET revoked_at = ?2 WHERE sandbox = ?1 AND revoked_at IS NULL", params![sandbox, now as i64])?;
        Ok(n == 1)
    }

    /// Pushes a live token's expiry to `now + ttl` (an expired or revoked one stays dead); whether it did.
    pub fn renew_relay_token(&self, sandbox: &str, now: u64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE relay_tokens SET expires_at = MAX(expires_at, ?2 + ttl_secs)
             WHERE sandbox = ?1 AND revoked_at IS NULL AND expires_at > ?2",
            params![sandbox, now as i64],
        )?;
        Ok(n == 1)
    }

    /// Records a relayed request as it starts; the row id for [`State::audit_finish`].
    pub fn audit_start(&self, a: &AuditStart<'_>) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO llm_requests (sandbox, session, provider, method, path, started_ms, admitted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.sandbox, a.session, a.provider, a.method, a.path, a.started_ms as i64, a.admitted],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how a relayed request ended.
    pub fn audit_finish(&self, id: i64, e: &AuditEnd) -> Result<()> {
        self.conn.execute(
            "UPDATE llm_requests SET status = ?2, model = ?3, input_tokens = ?4, output_tokens = ?5, latency_ms = ?6,
             duration_ms = ?7, error = ?8 WHERE id = ?1",
            params![
                id,
                e.status,
                e.model,
                e.input_tokens.map(|n| n as i64),
                e.output_tokens.map(|n| n as i64),
                e.latency_ms.map(|n| n as i64),
                e.duration_ms as i64,
                e.error
            ],
        )?;
        Ok(())
    }

    /// Admitted requests of `sandbox` started at or after `since_ms` (the rate limit's window).
    pub fn admitted_since(&self, sandbox: &str, since_ms: u64) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM llm_requests WHERE sandbox = ?1 AND admitted = 1 AND started_ms >= ?2",
            params![sandbox, since_ms as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Input + output tokens `sandbox` used so far.
    pub fn tokens_used(&self, sandbox: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), 0) FROM llm_requests WHERE sandbox = ?1",
            params![sandbox],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Audit rows, oldest first (of one sandbox, or all).
    pub fn audit_rows(&self, sandbox: Option<&str>) -> Result<Vec<AuditRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, sandbox, session, provider, method, path, model, started_ms, status, input_tokens, output_tokens,
                    latency_ms, duration_ms, error
             FROM llm_requests WHERE ?1 IS NULL OR sandbox = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![sandbox], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                sandbox: r.get(1)?,
                session: r.get(2)?,
                provider: r.get(3)?,
                method: r.get(4)?,
                path: r.get(5)?,
                model: r.get(6)?,
                started_ms: r.get::<_, i64>(7)? as u64,
                status: r.get::<_, Option<i64>>(8)?.map(|s| s as u16),
                input_tokens: opt_u64(r.get(9)?),
                output_tokens: opt_u64(r.get(10)?),
                latency_ms: opt_u64(r.get(11)?),
                duration_ms: opt_u64(r.get(12)?),
                error: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(now: u64) -> RelayToken {
        RelayToken {
            sandbox: "box".into(),
            token: "t".into(),
            agents: vec!["claude".into()],
            created_at: now,
            ttl_secs: 60,
            expires_at: now + 60,
            revoked_at: None,
            rpm: Some(2),
            max_tokens: None,
            wait_ms: 1000,
        }
    }

    #[test]
    fn renewal_extends_live_tokens_only_and_revocation_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("sbx.db")).unwrap();
        s.put_relay_token(&token(1000)).unwrap();
        assert!(s.renew_relay_token("box", 1030).unwrap());
        assert_eq!(s.relay_token("box").unwrap().unwrap().expires_at, 1090);
        // Past its expiry nothing brings it back.
        assert!(!s.renew_relay_token("box", 1090).unwrap());
        s.put_relay_token(&token(2000)).unwrap();
        assert!(s.revoke_relay_token("box", 2001).unwrap());
        assert!(!s.revoke_relay_token("box", 2002).unwrap());
        assert!(!s.renew_relay_token("box", 2003).unwrap());
        assert_eq!(s.relay_token("box").unwrap().unwrap().revoked_at, Some(2001));
    }

    #[test]
    fn audit_rows_count_admitted_requests_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("sbx.db")).unwrap();
        let start = |ms, admitted| AuditStart {
            sandbox: "box",
            session: Some("ses_1"),
            provider: "anthropic",
            method: "POST",
            path: "/v1/messages",
            started_ms: ms,
            admitted,
        };
        let a = s.audit_start(&start(1_000, true)).unwrap();
        s.audit_finish(a, &AuditEnd { status: 200, input_tokens: Some(10), output_tokens: Some(5), ..Default::default() }).unwrap();
        let b = s.audit_start(&start(2_000, false)).unwrap();
        s.audit_finish(b, &AuditEnd { status: 429, ..Default::default() }).unwrap();
        assert_eq!(s.admitted_since("box", 0).unwrap(), 1);
        assert_eq!(s.admitted_since("box", 1_001).unwrap(), 0);
        assert_eq!(s.tokens_used("box").unwrap(), 15);
        let rows = s.audit_rows(Some("box")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].status, Some(429));
        assert!(s.audit_rows(Some("other")).unwrap().is_empty());
    }
}
