//! Keyless sandboxes (docs/keyless.md): the agents in the sandbox call their model through the
//! runtime's LLM relay, which passes each request over a WebSocket this host opened; here the relay
//! token is checked (expiry, revocation, limits), the real key from this machine's credentials is put
//! in, the request goes to the upstream API, the answer streams back, and an audit row is written.
//!
//! - [`store`]: the token and audit rows in the host state.
//! - [`serve`]: one attached host (the WebSocket loop, reconnecting) and [`Attachments`] for commands
//!   that serve the relay while they run.
//! - [`upstream`]: one request to the model API, with usage read from the answer as it passes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use sbx_agent::api::llm_relay::{RELAY_TOKEN_ENV, RELAY_WAIT_ENV};

use crate::output::usage;
use crate::state::{now_secs, State};

pub mod daemon;
pub mod serve;
pub mod store;
pub mod upstream;

pub use serve::Attachments;
pub use store::RelayToken;

/// The token's lifetime unless `--keyless-ttl` says otherwise; renewed while a host serves the relay.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// How long a model request waits in the sandbox for a host unless `--keyless-wait` says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The agents a keyless sandbox relays for, and the model API each one's key is for.
pub const AGENTS: [(&str, &str); 2] = [("claude", "anthropic"), ("codex", "openai")];

/// Upstream base URLs (without `/v1`), overridable for gateways and tests.
pub mod env {
    /// The Anthropic API's root (default `https://api.anthropic.com`).
    pub const ANTHROPIC_URL: &str = "SBX_KEYLESS_ANTHROPIC_URL";
    /// The OpenAI API's root (default `https://api.openai.com`).
    pub const OPENAI_URL: &str = "SBX_KEYLESS_OPENAI_URL";
}

/// What `sbx up --keyless` (or `keyless:` in sbx.yaml) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Agents to relay for (claude, codex).
    pub agents: Vec<String>,
    pub ttl: Duration,
    pub rpm: Option<u32>,
    pub max_tokens: Option<u64>,
    pub wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { agents: AGENTS.iter().map(|(a, _)| (*a).to_owned()).collect(), ttl: DEFAULT_TTL, rpm: None, max_tokens: None, wait: DEFAULT_WAIT }
    }
}

impl Policy {
    /// Refuses unknown agents and agents whose key this machine lacks (before anything is created).
    pub fn check(&self) -> Result<()> {
        if self.agents.is_empty() {
            return Err(usage("--keyless: no agent to relay for: name claude or codex (--keyless=claude) and have its key on this machine (`sbx credentials` shows what is found)"));
        }
        for a in &self.agents {
            if !AGENTS.iter().any(|(name, _)| name == a) {
                return Err(usage(format!("--keyless: sbx relays for claude and codex, not `{a}`")));
            }
        }
        if self.ttl.is_zero() {
            return Err(usage("--keyless-ttl must be positive"));
        }
        crate::provision::credential_env(&self.agents).map(|_| ())
    }

    /// A fresh token for `sandbox`.
    pub fn mint(&self, sandbox: &str) -> RelayToken {
        let now = now_secs();
        RelayToken {
            sandbox: sandbox.to_owned(),
            token: format!("sbx-relay-{}", sbx_providers::bootstrap::fresh_token()),
            agents: self.agents.clone(),
            created_at: now,
            ttl_secs: self.ttl.as_secs().max(1),
            expires_at: now + self.ttl.as_secs().max(1),
            revoked_at: None,
            rpm: self.rpm,
            max_tokens: self.max_tokens,
            wait_ms: self.wait.as_millis() as u64,
        }
    }
}

/// The session variables that make the runtime relay (pushed with the other session env): the token
/// and the wait. The runtime gives agents the token as their key and itself as their endpoint.
pub fn session_env(t: &RelayToken) -> Vec<(String, String)> {
    crate::redact::register(&t.token);
    vec![(RELAY_TOKEN_ENV.to_owned(), t.token.clone()), (RELAY_WAIT_ENV.to_owned(), t.wait_ms.to_string())]
}

/// The relayed agents whose key this machine has (what `--keyless` with no list means).
pub fn agents_with_keys() -> Vec<String> {
    AGENTS
        .iter()
        .filter(|(a, _)| crate::provision::credential_env(&[(*a).to_owned()]).is_ok_and(|e| !e.is_empty()))
        .map(|(a, _)| (*a).to_owned())
        .collect()
}

/// The sandbox's relay variables when it is keyless (a revoked or expired token too: its requests then
/// get 401 from this host with the reason, instead of the agent starting with no endpoint at all).
pub fn session_env_for(state: &State, sandbox: &str) -> Result<Vec<(String, String)>> {
    Ok(match state.relay_token(sandbox)? {
        Some(t) => session_env(&t),
        None => Vec::new(),
    })
}

/// The upstream root for `provider`.
pub fn upstream_url(provider: &str) -> String {
    let (var, default) = match provider {
        "anthropic" => (env::ANTHROPIC_URL, "https://api.anthropic.com"),
        _ => (env::OPENAI_URL, "https://api.openai.com"),
    };
    let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned());
    let v = v.trim().trim_end_matches('/');
    v.strip_suffix("/v1").unwrap_or(v).to_owned()
}

/// The real credential for `provider`, read from this machine (the agent's usual places):
/// `(variable it came as, value)`.
pub fn real_key(provider: &str) -> Result<(String, String)> {
    let agent = AGENTS.iter().find(|(_, p)| *p == provider).map(|(a, _)| *a).unwrap_or("claude");
    let env: BTreeMap<String, String> = crate::provision::credential_env(&[agent.to_owned()])?.into_iter().collect();
    for var in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"] {
        if let Some(v) = env.get(var).filter(|v| !v.is_empty()) {
            return Ok((var.to_owned(), v.clone()));
        }
    }
    anyhow::bail!("no {provider} credential on this machine for the {agent} agent (`sbx credentials` shows what is found)")
}

/// Why a token is refused, or `None`.
pub fn refusal(t: Option<&RelayToken>, presented: &str, now: u64) -> Option<String> {
    let Some(t) = t else {
        return Some("this sandbox has no relay token on this host (it was not made keyless here, or `sbx down` removed it)".into());
    };
    use subtle::ConstantTimeEq;
    if !bool::from(presented.as_bytes().ct_eq(t.token.as_bytes())) {
        return Some("the relay token is wrong (an old one? `sbx auth renew NAME` gives the sandbox a new one)".into());
    }
    if let Some(at) = t.revoked_at {
        return Some(format!(
            "the relay token of sandbox `{}` was revoked {} s ago (`sbx auth revoke` or `sbx down`); `sbx auth renew {}` issues a new one",
            t.sandbox,
            now.saturating_sub(at),
            t.sandbox
        ));
    }
    if t.expires_at <= now {
        return Some(format!(
            "the relay token of sandbox `{}` expired {} s ago (tokens live {} s and are renewed only while a host serves the relay); \
             `sbx auth renew {}` issues a new one",
            t.sandbox,
            now - t.expires_at,
            t.ttl_secs,
            t.sandbox
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refused_when_wrong_revoked_or_expired() {
        let p = Policy { ttl: Duration::from_secs(10), ..Policy::default() };
        let t = p.mint("box");
        assert!(t.token.starts_with("sbx-relay-") && t.token.len() > 30);
        let now = t.created_at;
        assert_eq!(refusal(Some(&t), &t.token, now), None);
        assert!(refusal(Some(&t), "nope", now).unwrap().contains("wrong"));
        assert!(refusal(Some(&t), &t.token, now + 10).unwrap().contains("expired"));
        let revoked = RelayToken { revoked_at: Some(now), ..t.clone() };
        assert!(refusal(Some(&revoked), &t.token, now + 1).unwrap().contains("revoked"));
        assert!(refusal(None, &t.token, now).unwrap().contains("no relay token"));
    }

    #[test]
    fn upstream_roots_drop_a_trailing_v1() {
        // Only the defaults here: the process environment is shared by parallel tests.
        assert_eq!(
            upstream_url("anthropic"),
            std::env::var(env::ANTHROPIC_URL)
                .map(|v| v.trim_end_matches('/').trim_end_matches("/v1").to_owned())
                .unwrap_or_else(|_| "https://api.anthropic.com".into())
        );
    }
}
