//! Finding the LLM credentials a user already has on a machine (for `sbx credentials` and
//! `sbx-agent credentials`), so they can be passed into a sandbox deliberately, and only then.
//!
//! Sources, per agent, in the order they are tried:
//!
//! | agent | provider | environment | files |
//! |---|---|---|---|
//! | `claude` | anthropic | `ANTHROPIC_API_KEY`, `CLAUDE_API_KEY` | `~/.claude.json` (`primaryApiKey`), `~/.claude/.credentials.json` (`claudeAiOauth`: OAuth access token and its expiry) |
//! | `amp` | anthropic | `ANTHROPIC_API_KEY`, `CLAUDE_API_KEY` | `~/.amp/config.json` (`anthropicApiKey` or `apiKey`) |
//! | `codex` | openai | `OPENAI_API_KEY`, `CODEX_API_KEY` | `~/.codex/auth.json` (`OPENAI_API_KEY`, or ChatGPT `tokens`) |
//! | `opencode` | anthropic, openai | — | `~/.local/share/opencode/auth.json` (per provider: `{"type":"api","key"}` or `{"type":"oauth","access","expires"}`) |
//! | `vibe` (ACP) | mistral | `MISTRAL_API_KEY` | — |
//! | `gemini` (ACP) | google | `GEMINI_API_KEY`, `GOOGLE_API_KEY` (passed as `GEMINI_API_KEY`) | — |
//!
//! Missing files are skipped silently; unreadable or malformed ones become warnings that name the
//! file. Values are [`Secret`]s: masked whenever displayed, serialized or debug-printed, unless a caller
//! explicitly asks for the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

/// A secret value: masked in `Debug`, `Display` and `Serialize`. Call [`Secret::expose`] to get it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself. Every call site is a place a secret leaves this type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The masked form: a short prefix and suffix for long values (enough to tell keys apart), stars
    /// for short ones.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks a secret value for display (see [`Secret::masked`]).
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 16 {
        return "*".repeat(chars.len().clamp(4, 8));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail} ({} chars)", chars.len())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

/// API key or OAuth token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A long-lived API key.
    ApiKey,
    /// A subscription login's OAuth access token (short-lived).
    Oauth,
}

/// One credential found on this machine.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// `claude`, `codex`, `opencode` or `amp`.
    pub agent: &'static str,
    /// `anthropic` or `openai`.
    pub provider: &'static str,
    /// API key or OAuth.
    pub kind: CredentialKind,
    /// Where it came from: `env:NAME` or a file path.
    pub source: String,
    /// The variable it is passed as, when it can be passed as one.
    pub env_var: Option<&'static str>,
    /// The value (masked when serialized).
    pub value: Secret,
    /// Unix seconds when an OAuth token expires.
    pub expires_at: Option<u64>,
    /// Whether it has expired.
    pub expired: bool,
}

/// Agent ids credentials can be extracted for.
pub const AGENTS: &[&str] = &["claude", "codex", "opencode", "amp", "vibe", "gemini"];
/// Provider ids.
pub const PROVIDERS: &[&str] = &["anthropic", "openai", "mistral", "google"];

/// What to look for and where.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// The home directory whose files are read.
    pub home: PathBuf,
    /// The environment to read (usually the process's own).
    pub env: BTreeMap<String, String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Skip OAuth tokens.
    pub no_oauth: bool,
    /// "Now", in Unix seconds (for expiry).
    pub now: u64,
}

impl ExtractOptions {
    /// This process's home and environment.
    pub fn from_process() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        Self {
            home,
            env: std::env::vars().collect(),
            agent: None,
            provider: None,
            no_oauth: false,
            now: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        }
    }
}

/// What was found, and what could not be read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extraction {
    /// Every credential found, in precedence order.
    pub credentials: Vec<Credential>,
    /// Files that exist but could not be read or parsed.
    pub warnings: Vec<String>,
}

impl Extraction {
    /// One value per environment variable: the first credential (in precedence order) that is not
    /// expired. Credentials that cannot be passed as a variable (Codex's ChatGPT login) are left out.
    pub fn env_assignments(&self) -> Vec<(&'static str, &Secret)> {
        let mut out: Vec<(&'static str, &Secret)> = Vec::new();
        for c in &self.credentials {
            let Some(var) = c.env_var else { continue };
            if c.expired || out.iter().any(|(v, _)| *v == var) {
                continue;
            }
            out.push((var, &c.value));
        }
        out
    }
}

struct Ctx<'a> {
    opts: &'a ExtractOptions,
    out: Extraction,
}

impl Ctx<'_> {
    fn wanted(&self, agent: &str, provider: &str, kind: CredentialKind) -> bool {
        self.opts.agent.as_deref().is_none_or(|a| a == agent)
            && self.opts.provider.as_deref().is_none_or(|p| p == provider)
            && !(self.opts.no_oauth && kind == CredentialKind::Oauth)
    }

    #[allow(clippy::too_many_arguments)]
    fn add(&mut self, agent: &'static str, provider: &'static str, kind: CredentialKind, source: String, env_var: Option<&'static str>, value: &str, expires_at: Option<u64>) {
        let value = value.trim();
        if value.is_empty() || !self.wanted(agent, provider, kind) {
            return;
        }
        let expired = expires_at.is_some_and(|e| e <= self.opts.now);
        self.out.credentials.push(Credential { agent, provider, kind, source, env_var, value: Secret::new(value), expires_at, expired });
    }

    fn env(&mut self, agent: &'static str, provider: &'static str, names: &[&'static str], pass_as: &'static str) {
        for name in names {
            if let Some(v) = self.opts.env.get(*name) {
                let v = v.clone();
                self.add(agent, provider, CredentialKind::ApiKey, format!("env:{name}"), Some(pass_as), &v, None);
            }
        }
    }

    /// Reads a JSON file under home; `None` when missing (silent) or bad (a warning).
    fn json(&mut self, rel: &str) -> Option<(PathBuf, serde_json::Value)> {
        let path = self.opts.home.join(rel);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.out.warnings.push(format!("{}: cannot read it ({e}); skipped", path.display()));
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some((path, v)),
            Err(e) => {
                self.out.warnings.push(format!("{}: not valid JSON ({e}); skipped", path.display()));
                None
            }
        }
    }
}

/// Finds credentials (see the module docs for the sources and their order).
pub fn extract(opts: &ExtractOptions) -> Extraction {
    let mut cx = Ctx { opts, out: Extraction::default() };
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);

    // Claude Code.
    cx.env("claude", "anthropic", &["ANTHROPIC_API_KEY", "CLAUDE_API_KEY"], "ANTHROPIC_API_KEY");
    if cx.wanted("claude", "anthropic", CredentialKind::ApiKey) {
        if let Some((path, v)) = cx.json(".claude.json") {
            if let Some(key) = s(&v, "primaryApiKey") {
                cx.add("claude", "anthropic", CredentialKind::ApiKey, path.display().to_string(), Some("ANTHROPIC_API_KEY"), &key, None);
            }
        }
    }
    if cx.wanted("claude", "anthropic", CredentialKind::Oauth) {
        if let Some((path, v)) = cx.json(".claude/.credentials.json") {
            let oauth = v.get("claudeAiOauth").cloned().unwrap_or_default();
            if let Some(token) = s(&oauth, "accessToken") {
                let expires = oauth.get("expiresAt").and_then(|e| e.as_u64()).map(|ms| ms / 1000);
                cx.add("claude", "anthropic", CredentialKind::Oauth, path.display().to_string(), Some("CLAUDE_CODE_OAUTH_TOKEN"), &token, expires);
            } else {
                cx.out.warnings.push(format!("{}: no claudeAiOauth.accessToken in it; skipped", path.display()));
            }
        }
    }

    // Amp.
    cx.env("amp", "anthropic", &["ANTHROPIC_API_KEY", "CLAUDE_API_KEY"], "ANTHROPIC_API_KEY");
    if cx.wanted("amp", "anthropic", CredentialKind::ApiKey) {
        if let Some((path, v)) = cx.json(".amp/config.json") {
            if let Some(key) = s(&v, "anthropicApiKey").or_else(|| s(&v, "apiKey")) {
                cx.add("amp", "anthropic", CredentialKind::ApiKey, path.display().to_string(), Some("ANTHROPIC_API_KEY"), &key, None);
            }
        }
    }

    // Codex.
    cx.env("codex", "openai", &["OPENAI_API_KEY", "CODEX_API_KEY"], "OPENAI_API_KEY");
    if cx.wanted("codex", "openai", CredentialKind::ApiKey) || cx.wanted("codex", "openai", CredentialKind::Oauth) {
        if let Some((path, v)) = cx.json(".codex/auth.json") {
            if let Some(key) = s(&v, "OPENAI_API_KEY") {
                cx.add("codex", "openai", CredentialKind::ApiKey, path.display().to_string(), Some("OPENAI_API_KEY"), &key, None);
            }
            if let Some(token) = v.get("tokens").and_then(|t| s(t, "access_token")) {
                // A ChatGPT login: the token is a JWT whose `exp` says when it expires. It only works
                // through Codex's own auth file, so it is not passed as a variable.
                let expires = jwt_exp(&token);
                cx.add("codex", "openai", CredentialKind::Oauth, path.display().to_string(), None, &token, expires);
            }
        }
    }

    // ACP agents whose keys live in the environment only.
    cx.env("vibe", "mistral", &["MISTRAL_API_KEY"], "MISTRAL_API_KEY");
    cx.env("gemini", "google", &["GEMINI_API_KEY", "GOOGLE_API_KEY"], "GEMINI_API_KEY");

    // OpenCode.
    if opts.agent.as_deref().is_none_or(|a| a == "opencode") {
        if let Some((path, v)) = cx.json(".local/share/opencode/auth.json") {
            for (provider, var_key, var_oauth) in [("anthropic", "ANTHROPIC_API_KEY", Some("CLAUDE_CODE_OAUTH_TOKEN")), ("openai", "OPENAI_API_KEY", None)] {
                let Some(entry) = v.get(provider) else { continue };
                match entry.get("type").and_then(|t| t.as_str()) {
                    Some("api") => {
                        if let Some(key) = s(entry, "key") {
                            cx.add("opencode", provider, CredentialKind::ApiKey, path.display().to_string(), Some(var_key), &key, None);
                        }
                    }
                    Some("oauth") => {
                        if let Some(token) = s(entry, "access") {
                            let expires = entry.get("expires").and_then(|e| e.as_u64()).map(|ms| ms / 1000);
                            cx.add("opencode", provider, CredentialKind::Oauth, path.display().to_string(), var_oauth, &token, expires);
                        }
                    }
                    _ => cx.out.warnings.push(format!("{}: `{provider}` entry has no known `type`; skipped", path.display())),
                }
            }
        }
    }
    cx.out
}

/// The `exp` claim of a JWT, without checking its signature (only to tell the user it expired).
fn jwt_exp(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_u64()
}

/// `value` quoted for a POSIX shell: single quotes, with `'` written as `'\''`. Everything else
/// (spaces, `$`, backquotes, newlines) stays literal.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The lines of `sbx credentials env`: `NAME='value'` (with `export ` when asked).
pub fn env_lines(extraction: &Extraction, export: bool) -> Vec<String> {
    extraction
        .env_assignments()
        .into_iter()
        .map(|(var, value)| format!("{}{var}={}", if export { "export " } else { "" }, shell_quote(value.expose())))
        .collect()
}

/// The human table of `sbx credentials extract`.
pub fn table(extraction: &Extraction, reveal: bool) -> String {
    let mut out = String::new();
    if extraction.credentials.is_empty() {
        out.push_str("no credentials found\n");
    }
    for c in &extraction.credentials {
        let kind = match c.kind {
            CredentialKind::ApiKey => "api key",
            CredentialKind::Oauth => "oauth",
        };
        let value = if reveal { c.value.expose().to_owned() } else { c.value.masked() };
        let state = if c.expired { " EXPIRED" } else { "" };
        out.push_str(&format!(
            "{:<9} {:<10} {:<8} {:<26} {}{state}\n    from {}\n",
            c.agent,
            c.provider,
            kind,
            c.env_var.unwrap_or("(auth file only)"),
            value,
            c.source
        ));
    }
    out
}

/// Checks an agent and provider filter; the error lists the valid values.
pub fn check_filters(agent: Option<&str>, provider: Option<&str>) -> Result<(), String> {
    if let Some(a) = agent {
        if !AGENTS.contains(&a) {
            return Err(format!("unknown agent `{a}`; one of: {}", AGENTS.join(", ")));
        }
    }
    if let Some(p) = provider {
        if !PROVIDERS.contains(&p) {
            return Err(format!("unknown provider `{p}`; one of: {}", PROVIDERS.join(", ")));
        }
    }
    Ok(())
}

/// The JSON of `extract --json`: values masked unless `reveal`.
pub fn to_json(extraction: &Extraction, reveal: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(extraction).unwrap_or_default();
    if reveal {
        if let Some(list) = v.get_mut("credentials").and_then(|c| c.as_array_mut()) {
            for (item, c) in list.iter_mut().zip(&extraction.credentials) {
                item["value"] = serde_json::Value::String(c.value.expose().to_owned());
            }
        }
    }
    v
}

/// Reads credentials for `agents` (for `--credentials claude,codex`): the variables to pass, or an
/// error naming an agent none was found for and where it looked.
pub fn for_agents(opts: &ExtractOptions, agents: &[String]) -> Result<Vec<(&'static str, Secret)>, String> {
    let mut out: Vec<(&'static str, Secret)> = Vec::new();
    for agent in agents {
        check_filters(Some(agent), None)?;
        let one = extract(&ExtractOptions { agent: Some(agent.clone()), ..opts.clone() });
        let vars = one.env_assignments();
        if vars.is_empty() {
            let expired = one.credentials.iter().any(|c| c.expired);
            return Err(format!(
                "no usable {agent} credentials on this machine{}: set its API key variable or log in with {agent} \
                 (`sbx credentials extract -a {agent}` shows what was looked at)",
                if expired { " (only expired OAuth tokens)" } else { "" }
            ));
        }
        for (var, value) in vars {
            if !out.iter().any(|(v, _)| *v == var) {
                out.push((var, value.clone()));
            }
        }
    }
    Ok(out)
}

/// The `credentials` subcommand, shared by `sbx credentials` and `sbx-agent credentials`.
#[cfg(feature = "clap")]
pub mod cli {
    use std::path::PathBuf;

    use super::{check_filters, env_lines, extract, table, to_json, ExtractOptions};

    /// `credentials extract|env`.
    #[derive(clap::Subcommand, Debug, Clone)]
    pub enum CredentialsCommand {
        /// List the LLM credentials on this machine (masked unless --reveal).
        #[command(after_help = "Examples:\n  credentials extract\n  credentials extract -a claude --reveal\n  credentials extract -p openai --json")]
        Extract {
            /// Only this agent: claude, codex, opencode, amp.
            #[arg(short, long)]
            agent: Option<String>,
            /// Only this provider: anthropic, openai.
            #[arg(short, long)]
            provider: Option<String>,
            /// Read files under this directory instead of $HOME.
            #[arg(short = 'd', long)]
            home_dir: Option<PathBuf>,
            /// Skip OAuth tokens (subscription logins).
            #[arg(long)]
            no_oauth: bool,
            /// Show full values.
            #[arg(short, long)]
            reveal: bool,
            /// Print JSON.
            #[arg(long)]
            json: bool,
        },
        /// Print shell assignments of the credentials found: `eval "$(… credentials env --export)"`.
        #[command(after_help = "Values are single-quoted, so quotes, spaces, `$` and newlines survive `eval`.\n\nExample:\n  eval \"$(sbx credentials env --export)\"")]
        Env {
            /// Prefix each line with `export `.
            #[arg(short, long)]
            export: bool,
            /// Only this agent: claude, codex, opencode, amp.
            #[arg(short, long)]
            agent: Option<String>,
            /// Read files under this directory instead of $HOME.
            #[arg(short = 'd', long)]
            home_dir: Option<PathBuf>,
            /// Skip OAuth tokens (subscription logins).
            #[arg(long)]
            no_oauth: bool,
        },
    }

    /// Runs it: what to print on stdout, warnings for stderr, and the exit code (2 for bad input).
    pub fn run(cmd: &CredentialsCommand, json: bool) -> (String, Vec<String>, u8) {
        let mut opts = ExtractOptions::from_process();
        let (agent, provider, home, no_oauth) = match cmd {
            CredentialsCommand::Extract { agent, provider, home_dir, no_oauth, .. } => (agent, provider.as_ref(), home_dir, *no_oauth),
            CredentialsCommand::Env { agent, home_dir, no_oauth, .. } => (agent, None, home_dir, *no_oauth),
        };
        if let Err(e) = check_filters(agent.as_deref(), provider.map(String::as_str)) {
            return (String::new(), vec![e], 2);
        }
        if let Some(h) = home {
            opts.home = h.clone();
        }
        opts.agent = agent.clone();
        opts.provider = provider.cloned();
        opts.no_oauth = no_oauth;
        let found = extract(&opts);
        let out = match cmd {
            CredentialsCommand::Extract { reveal, json: j, .. } if json || *j => format!("{}\n", to_json(&found, *reveal)),
            CredentialsCommand::Extract { reveal, .. } => table(&found, *reveal),
            CredentialsCommand::Env { export, .. } => env_lines(&found, *export).into_iter().map(|l| l + "\n").collect(),
        };
        (out, found.warnings, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn opts(home: &std::path::Path, env: &[(&str, &str)]) -> ExtractOptions {
        ExtractOptions {
            home: home.to_path_buf(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            agent: None,
            provider: None,
            no_oauth: false,
            now: NOW,
        }
    }

    fn write(home: &std::path::Path, rel: &str, text: &str) {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn jwt(exp: u64) -> String {
        use base64::Engine as _;
        let enc = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.sig", enc(serde_json::json!({"alg": "none"})), enc(serde_json::json!({"exp": exp})))
    }

    /// A home with every file format sbx reads.
    fn full_home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(h, ".claude.json", r#"{"primaryApiKey": "sk-ant-api03-from-claude-json-0000", "numStartups": 3}"#);
        write(h, ".claude/.credentials.json", &format!(r#"{{"claudeAiOauth": {{"accessToken": "sk-ant-oat01-future-token-1111", "refreshToken": "r", "expiresAt": {}}}}}"#, (NOW + 3600) * 1000));
        write(h, ".amp/config.json", r#"{"anthropicApiKey": "sk-ant-amp-key-2222222222"}"#);
        write(h, ".codex/auth.json", &format!(r#"{{"OPENAI_API_KEY": null, "tokens": {{"access_token": "{}", "refresh_token": "r"}}}}"#, jwt(NOW - 10)));
        write(h, ".local/share/opencode/auth.json", &format!(
            r#"{{"anthropic": {{"type": "oauth", "access": "opencode-anthropic-oauth-3333", "refresh": "r", "expires": {}}}, "openai": {{"type": "api", "key": "sk-opencode-openai-44444444"}}}}"#,
            (NOW - 60) * 1000
        ));
        home
    }

    #[test]
    fn every_file_format_is_read_with_kinds_sources_and_expiry() {
        let home = full_home();
        let found = extract(&opts(home.path(), &[]));
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        let summary: Vec<(&str, &str, CredentialKind, bool, Option<&str>)> =
            found.credentials.iter().map(|c| (c.agent, c.provider, c.kind, c.expired, c.env_var)).collect();
        assert_eq!(
            summary,
            vec![
                ("claude", "anthropic", CredentialKind::ApiKey, false, Some("ANTHROPIC_API_KEY")),
                ("claude", "anthropic", CredentialKind::Oauth, false, Some("CLAUDE_CODE_OAUTH_TOKEN")),
                ("amp", "anthropic", CredentialKind::ApiKey, false, Some("ANTHROPIC_API_KEY")),
                ("codex", "openai", CredentialKind::Oauth, true, None),
                ("opencode", "anthropic", CredentialKind::Oauth, true, Some("CLAUDE_CODE_OAUTH_TOKEN")),
                ("opencode", "openai", CredentialKind::ApiKey, false, Some("OPENAI_API_KEY")),
            ]
        );
        assert_eq!(found.credentials[1].expires_at, Some(NOW + 3600));
        assert!(found.credentials[0].source.ends_with(".claude.json"));
        // env: one value per variable, first wins, expired ones skipped.
        let env: Vec<(&str, &str)> = found.env_assignments().into_iter().map(|(k, v)| (k, v.expose())).collect();
        assert_eq!(
            env,
            vec![
                ("ANTHROPIC_API_KEY", "sk-ant-api03-from-claude-json-0000"),
                ("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-future-token-1111"),
                ("OPENAI_API_KEY", "sk-opencode-openai-44444444"),
            ]
        );
    }

    #[test]
    fn environment_comes_before_files_and_filters_apply() {
        let home = full_home();
        let o = opts(home.path(), &[("CLAUDE_API_KEY", "sk-from-env-claude-api-key-9"), ("OPENAI_API_KEY", "sk-from-env-openai-key-888")]);
        let found = extract(&o);
        assert_eq!(found.credentials[0].source, "env:CLAUDE_API_KEY");
        let env = found.env_assignments();
        assert_eq!(env[0].1.expose(), "sk-from-env-claude-api-key-9", "env beats ~/.claude.json");
        assert!(env.iter().any(|(k, v)| *k == "OPENAI_API_KEY" && v.expose() == "sk-from-env-openai-key-888"));
        let only_codex = extract(&ExtractOptions { agent: Some("codex".into()), ..o.clone() });
        assert!(only_codex.credentials.iter().all(|c| c.agent == "codex"));
        let only_openai = extract(&ExtractOptions { provider: Some("openai".into()), ..o.clone() });
        assert!(only_openai.credentials.iter().all(|c| c.provider == "openai"));
        let no_oauth = extract(&ExtractOptions { no_oauth: true, ..o });
        assert!(no_oauth.credentials.iter().all(|c| c.kind == CredentialKind::ApiKey));
    }

    #[test]
    fn bad_files_are_warnings_and_missing_ones_are_silent() {
        let home = tempfile::tempdir().unwrap();
        assert!(extract(&opts(home.path(), &[])).warnings.is_empty());
        write(home.path(), ".claude.json", "{ not json");
        write(home.path(), ".codex/auth.json", "[1,2");
        write(home.path(), ".claude/.credentials.json", r#"{"something": "else"}"#);
        let found = extract(&opts(home.path(), &[]));
        assert!(found.credentials.is_empty());
        assert_eq!(found.warnings.len(), 3, "{:?}", found.warnings);
        assert!(found.warnings.iter().any(|w| w.contains(".claude.json") && w.contains("not valid JSON")));
        assert!(found.warnings.iter().any(|w| w.contains("auth.json")));
    }

    #[test]
    fn secrets_are_masked_everywhere_but_expose() {
        let s = Secret::new("sk-ant-api03-abcdefghijklmnop");
        for shown in [format!("{s}"), format!("{s:?}"), serde_json::to_string(&s).unwrap(), s.masked()] {
            assert!(!shown.contains("abcdefghijklmnop"), "{shown}");
        }
        assert_eq!(s.masked(), "sk-a…mnop (29 chars)");
        assert_eq!(mask("short"), "*****");
        let home = full_home();
        let found = extract(&opts(home.path(), &[]));
        let masked = to_json(&found, false).to_string() + &table(&found, false);
        assert!(!masked.contains("from-claude-json-0000"));
        let revealed = to_json(&found, true).to_string() + &table(&found, true);
        assert!(revealed.contains("sk-ant-api03-from-claude-json-0000"));
    }

    #[test]
    fn shell_quoting_keeps_every_character() {
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
    }

    #[test]
    fn for_agents_names_what_is_missing() {
        let home = tempfile::tempdir().unwrap();
        let err = for_agents(&opts(home.path(), &[]), &["claude".into()]).unwrap_err();
        assert!(err.contains("no usable claude credentials"), "{err}");
        let err = for_agents(&opts(home.path(), &[]), &["gpt".into()]).unwrap_err();
        assert!(err.contains("one of: claude, codex, opencode, amp, vibe, gemini"), "{err}");
        let ok = for_agents(&opts(home.path(), &[("OPENAI_API_KEY", "sk-x-123456789012345")]), &["codex".into()]).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, "OPENAI_API_KEY");
    }

    #[test]
    fn acp_agents_keys_come_from_the_environment() {
        let home = tempfile::tempdir().unwrap();
        let env = [("MISTRAL_API_KEY", "mistral-key-123456789"), ("GOOGLE_API_KEY", "google-key-123456789")];
        let ok = for_agents(&opts(home.path(), &env), &["vibe".into(), "gemini".into()]).unwrap();
        let vars: Vec<(&str, &str)> = ok.iter().map(|(k, v)| (*k, v.expose())).collect();
        assert_eq!(vars, [("MISTRAL_API_KEY", "mistral-key-123456789"), ("GEMINI_API_KEY", "google-key-123456789")]);
    }
}
