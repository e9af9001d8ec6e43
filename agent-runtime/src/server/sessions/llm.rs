//! One way to point any agent at an LLM endpoint: the session's `llm`, or the runtime-wide
//! `SBX_LLM_BASE_URL[_<AGENT>]` (what `sbx up --llm-base-url` sets), becomes each agent's own
//! configuration, so nobody has to learn each agent's knobs:
//!
//! - Claude Code: `ANTHROPIC_BASE_URL` in its environment.
//! - Codex ignores `OPENAI_BASE_URL`; it needs a model provider in `$CODEX_HOME/config.toml`
//!   (`base_url`, `wire_api = "responses"`), so the session gets a `CODEX_HOME` of its own holding one.
//!
//! Before each turn the endpoint is checked from here (one HTTP request; any answer counts): an agent
//! that cannot reach its endpoint fails the turn at once with an `error` event naming the URL and
//! what came back, instead of retrying silently until the task's timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::driver::{AgentGone, SessionSettings, TurnCtx, TurnEnd};
use crate::api::session::{CheckLlmResponse, EventSource, LlmEndpoint};

/// The runtime-wide default endpoint for every agent.
pub(crate) const BASE_URL_ENV: &str = "SBX_LLM_BASE_URL";
/// Set by the session manager for a keyless sandbox: the agent's relay root on this runtime
/// (`http://127.0.0.1:PORT/v1/llm/s/{session}`); never reaches the agent.
pub(crate) const RELAY_URL_ENV: &str = "SBX_LLM_RELAY_URL";
/// How long the check may take to connect, and in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an agent's model API is, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The URL the agent will call (`None`: its vendor default, or a config of the user's own).
    pub(crate) url: Option<String>,
    /// `request`, `runtime`, `env` or `default`.
    pub(crate) source: &'static str,
    /// Whether sbx writes the agent's configuration (otherwise the user's own is used as is).
    write: bool,
}

/// `SBX_LLM_BASE_URL_CLAUDE` for `claude`.
fn agent_env_name(agent: &str) -> String {
    format!("{BASE_URL_ENV}_{}", agent.to_ascii_uppercase())
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Decides the endpoint of `agent` from the session's `llm`, the agent's own variables in the
/// session's `env`, and the runtime-wide default (in `env` or this process's environment).
pub(crate) fn resolve(agent: &str, llm: Option<&LlmEndpoint>, env: &BTreeMap<String, String>) -> Resolved {
    if let Some(l) = llm.filter(|l| !l.base_url.trim().is_empty()) {
        return Resolved { url: Some(agent_url(agent, &l.base_url)), source: "request", write: true };
    }
    match agent {
        "claude" => {
            if let Some(u) = non_empty(env.get("ANTHROPIC_BASE_URL")) {
                return Resolved { url: Some(u), source: "env", write: false };
            }
        }
        "codex" => {
            // A CODEX_HOME of the user's own carries its own provider; we cannot tell its URL.
            if non_empty(env.get("CODEX_HOME")).is_some() {
                return Resolved { url: None, source: "env", write: false };
            }
            // Codex itself ignores OPENAI_BASE_URL; honour it the way a user expects.
            if let Some(u) = non_empty(env.get("OPENAI_BASE_URL")) {
                return Resolved { url: Some(agent_url(agent, &u)), source: "env", write: true };
            }
        }
        _ => return Resolved { url: None, source: "default", write: false },
    }
    let specific = agent_env_name(agent);
    let runtime = non_empty(env.get(&specific))
        .or_else(|| non_empty(env.get(BASE_URL_ENV)))
        .or_else(|| std::env::var(&specific).ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| std::env::var(BASE_URL_ENV).ok().filter(|s| !s.trim().is_empty()));
    match runtime {
        Some(u) => Resolved { url: Some(agent_url(agent, &u)), source: "runtime", write: true },
        None => Resolved { url: None, source: "default", write: false },
    }
}

/// The URL the agent calls under a root given with or without `/v1`: Claude Code appends
/// `/v1/messages` itself; Codex's provider `base_url` includes `/v1`.
fn agent_url(agent: &str, root: &str) -> String {
    let root = root.trim().trim_end_matches('/');
    let bare = root.strip_suffix("/v1").unwrap_or(root);
    match agent {
        "codex" => format!("{bare}/v1"),
        _ => bare.to_owned(),
    }
}

/// Writes the agent's configuration for the resolved endpoint into `settings` (environment, and
/// Codex's `config.toml` in the session directory), and remembers the URL to check before turns.
pub(crate) fn apply(agent: &str, settings: &mut SessionSettings) -> Result<(), AgentGone> {
    if keyless(agent, settings)? {
        return Ok(());
    }
    let resolved = resolve(agent, settings.request.llm.as_ref(), &settings.request.env);
    settings.llm_url = resolved.url.clone().map(|u| (u, resolved.source));
    let Some(url) = resolved.url.filter(|_| resolved.write) else { return Ok(()) };
    let env = &mut settings.request.env;
    match agent {
        "claude" => {
            env.insert("ANTHROPIC_BASE_URL".into(), url);
            // A gateway needs no vendor login; Claude Code still wants some key to start.
            let has_auth = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"].iter().any(|k| env.contains_key(*k));
            if !has_auth {
                env.insert("ANTHROPIC_API_KEY".into(), "sbx-no-key".into());
            }
            // Telemetry and update checks would go to the vendor's hosts, which a sandbox pointed at a
            // gateway usually cannot reach.
            env.entry("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into()).or_insert_with(|| "1".into());
        }
        "codex" => {
            let home = settings.dir.join("codex-home");
            std::fs::create_dir_all(&home).map_err(|e| AgentGone(format!("cannot create {}: {e}", home.display())))?;
            let key = ["OPENAI_API_KEY", "CODEX_API_KEY"].into_iter().find(|k| env.contains_key(*k));
            std::fs::write(home.join("config.toml"), codex_config(&url, key))
                .map_err(|e| AgentGone(format!("cannot write {}: {e}", home.join("config.toml").display())))?;
            env.insert("CODEX_HOME".into(), home.to_string_lossy().into_owned());
        }
        _ => {}
    }
    Ok(())
}

/// A keyless sandbox (docs/keyless.md): the host pushed a relay token in the session environment. The
/// agent gets this runtime's relay as its endpoint and the token as its key, and none of the relay's
/// own variables; a key of the agent's own in the session environment is dropped (the relay would
/// refuse it anyway). A session that names its own endpoint (`llm` or the agent's variable in the
/// request) keeps it. Returns whether the relay was set up.
fn keyless(agent: &str, settings: &mut SessionSettings) -> Result<bool, AgentGone> {
    use crate::api::llm_relay::{RELAY_TOKEN_ENV, RELAY_WAIT_ENV};
    let env = &mut settings.request.env;
    let token = env.remove(RELAY_TOKEN_ENV);
    let root = env.remove(RELAY_URL_ENV);
    env.remove(RELAY_WAIT_ENV);
    let (Some(token), Some(root)) = (token, root) else { return Ok(false) };
    let own = settings.request.llm.as_ref().is_some_and(|l| !l.base_url.trim().is_empty())
        || match agent {
            "claude" => env.contains_key("ANTHROPIC_BASE_URL"),
            "codex" => env.contains_key("CODEX_HOME") || env.contains_key("OPENAI_BASE_URL"),
            _ => true,
        };
    if own {
        return Ok(false);
    }
    match agent {
        "claude" => {
            let url = format!("{root}/anthropic");
            for k in ["ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"] {
                env.remove(k);
            }
            env.insert("ANTHROPIC_BASE_URL".into(), url.clone());
            env.insert("ANTHROPIC_API_KEY".into(), token);
            env.entry("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into()).or_insert_with(|| "1".into());
            settings.llm_url = Some((url, "relay"));
        }
        "codex" => {
            let url = format!("{root}/openai/v1");
            env.remove("CODEX_API_KEY");
            env.insert("OPENAI_API_KEY".into(), token);
            let home = settings.dir.join("codex-home");
            std::fs::create_dir_all(&home).map_err(|e| AgentGone(format!("cannot create {}: {e}", home.display())))?;
            std::fs::write(home.join("config.toml"), codex_config(&url, Some("OPENAI_API_KEY")))
                .map_err(|e| AgentGone(format!("cannot write {}: {e}", home.join("config.toml").display())))?;
            env.insert("CODEX_HOME".into(), home.to_string_lossy().into_owned());
            settings.llm_url = Some((url, "relay"));
        }
        _ => {}
    }
    Ok(true)
}

/// Codex's `config.toml` with one model provider, `sbx`, at `base_url`.
fn codex_config(base_url: &str, key_env: Option<&str>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::from("# Written by sbx-agent for this session (llm: / sbx up --llm-base-url).\n");
    out.push_str("model_provider = \"sbx\"\n\n[model_providers.sbx]\nname = \"sbx llm endpoint\"\n");
    out.push_str(&format!("base_url = {}\nwire_api = \"responses\"\n", q(base_url)));
    if let Some(k) = key_env {
        out.push_str(&format!("env_key = {}\n", q(k)));
    }
    out
}

/// Checks that `url` answers over HTTP (any status), honouring a proxy in the session's `env`.
pub(crate) async fn check(agent: &str, url: Option<&str>, source: &str, env: &BTreeMap<String, String>) -> CheckLlmResponse {
    let mut out = CheckLlmResponse {
        agent: agent.to_owned(),
        url: url.map(str::to_owned),
        source: source.to_owned(),
        reachable: false,
        status: None,
        latency_ms: 0,
        error: None,
    };
    let Some(url) = url else {
        out.error = Some("no endpoint configured: the agent uses its vendor's default, which is not checked".into());
        return out;
    };
    let started = Instant::now();
    let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(CHECK_TIMEOUT);
    let https = url.starts_with("https:");
    let proxy_vars: &[&str] = if https { &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] } else { &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] };
    if let Some(p) = proxy_vars.iter().find_map(|k| non_empty(env.get(*k))) {
        match reqwest::Proxy::all(&p) {
            Ok(proxy) => builder = builder.proxy(proxy),
            Err(e) => {
                out.error = Some(format!("bad proxy `{p}` in the session's environment: {e}"));
                return out;
            }
        }
    }
    let result = match builder.build() {
        Ok(client) => client.get(url).send().await,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(resp) => {
            out.reachable = true;
            out.status = Some(resp.status().as_u16());
        }
        Err(e) => out.error = Some(error_chain(&e)),
    }
    out
}

/// An error with its causes ("… : tcp connect error: Connection refused (os error 111)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// Before a turn: when the agent's endpoint is known and does not answer, records an `error` event
/// (code `llm_unreachable`) and returns the failed turn, so the agent is not started against it.
pub(crate) async fn preflight(agent: &str, settings: &SessionSettings, ctx: &TurnCtx) -> Option<TurnEnd> {
    let (url, source) = settings.llm_url.as_ref()?;
    let r = check(agent, Some(url), source, &settings.request.env).await;
    if r.reachable {
        return None;
    }
    let from = match *source {
        "request" => "the session's `llm`",
        "relay" => "the keyless sandbox's LLM relay on this runtime",
        "runtime" => "SBX_LLM_BASE_URL (sbx up --llm-base-url / llm: in sbx.yaml)",
        _ => "the session's environment",
    };
    let message = format!(
        "the {agent} agent cannot reach its LLM endpoint {url} (from {from}): {}. Check the URL and that the sandbox can reach it \
         (`sbx doctor <sandbox>`; on Docker a service on the host is at the bridge gateway, e.g. http://172.17.0.1:PORT)",
        r.error.as_deref().unwrap_or("no answer")
    );
    ctx.error(EventSource::Runtime, "llm_unreachable", message.clone(), None, None);
    Some(TurnEnd { failed: Some(message), ..TurnEnd::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn each_agent_gets_the_url_it_calls_under_one_root() {
        let llm = LlmEndpoint { base_url: "http://gw:4000/v1/".into() };
        assert_eq!(resolve("claude", Some(&llm), &env(&[])).url.as_deref(), Some("http://gw:4000"));
        assert_eq!(resolve("codex", Some(&llm), &env(&[])).url.as_deref(), Some("http://gw:4000/v1"));
        let llm = LlmEndpoint { base_url: "http://gw:4000".into() };
        assert_eq!(resolve("codex", Some(&llm), &env(&[])).url.as_deref(), Some("http://gw:4000/v1"));
    }

    #[test]
    fn the_sessions_own_config_wins_over_the_runtime_default_but_not_over_llm() {
        let e = env(&[("SBX_LLM_BASE_URL", "http://gw"), ("ANTHROPIC_BASE_URL", "http://own")]);
        assert_eq!(resolve("claude", None, &e), Resolved { url: Some("http://own".into()), source: "env", write: false });
        let e = env(&[("SBX_LLM_BASE_URL", "http://gw"), ("SBX_LLM_BASE_URL_CODEX", "http://cx")]);
        assert_eq!(resolve("codex", None, &e).url.as_deref(), Some("http://cx/v1"));
        assert_eq!(resolve("claude", None, &e).url.as_deref(), Some("http://gw"));
        let e = env(&[("CODEX_HOME", "/h"), ("SBX_LLM_BASE_URL", "http://gw")]);
        assert_eq!(resolve("codex", None, &e).url, None);
        let llm = LlmEndpoint { base_url: "http://req".into() };
        assert_eq!(resolve("codex", Some(&llm), &e).source, "request");
        let e = env(&[("OPENAI_BASE_URL", "http://oa/v1")]);
        assert_eq!(resolve("codex", None, &e), Resolved { url: Some("http://oa/v1".into()), source: "env", write: true });
    }

    #[test]
    fn codex_config_names_the_provider_and_its_key() {
        let c = codex_config("http://gw/v1", Some("OPENAI_API_KEY"));
        assert!(c.contains("model_provider = \"sbx\""), "{c}");
        assert!(c.contains("base_url = \"http://gw/v1\"\nwire_api = \"responses\"\nenv_key = \"OPENAI_API_KEY\""), "{c}");
        assert!(!codex_config("http://gw/v1", None).contains("env_key"));
    }
}
