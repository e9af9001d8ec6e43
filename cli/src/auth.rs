//! Provider API keys: where they come from, in order — a flag, the provider's usual environment
//! variables, the OS keyring (`sbx auth login`), then `$XDG_CONFIG_HOME/sbx/config.toml` — and how
//! they are stored.
//!
//! On Linux the keyring is the kernel's keyutils store (the `keyring` crate's `linux-native`
//! backend), which works on headless machines with no Secret Service; keys live in the user's
//! persistent keyring and survive logouts for a few days (the kernel's default expiry).

use std::path::PathBuf;

use anyhow::Result;
use sbx_agent::credentials::Secret;

use crate::output::usage;

/// The keyring service name every sbx entry uses.
const SERVICE: &str = "sbx";

/// One cloud provider's credential needs.
#[derive(Debug, Clone, Copy)]
pub struct ProviderAuth {
    /// `e2b`, `daytona`, `vercel`, `modal`.
    pub provider: &'static str,
    /// The variable(s) that hold the key, first wins; for Modal both are needed (`ID:SECRET`).
    pub env: &'static [&'static str],
    /// Other variables the provider also reads (shown by `auth status`, never secrets).
    pub extra_env: &'static [&'static str],
    /// What to ask for at `auth login`.
    pub prompt: &'static str,
}

/// The providers that take API keys.
pub const PROVIDERS: &[ProviderAuth] = &[
    ProviderAuth { provider: "e2b", env: &["E2B_API_KEY"], extra_env: &["E2B_DOMAIN"], prompt: "E2B API key" },
    ProviderAuth { provider: "daytona", env: &["DAYTONA_API_KEY"], extra_env: &["DAYTONA_API_URL", "DAYTONA_TARGET"], prompt: "Daytona API key" },
    ProviderAuth {
        provider: "vercel",
        env: &["VERCEL_TOKEN", "VERCEL_OIDC_TOKEN"],
        extra_env: &["VERCEL_TEAM_ID", "VERCEL_PROJECT_ID"],
        prompt: "Vercel token",
    },
    ProviderAuth { provider: "modal", env: &["MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"], extra_env: &[], prompt: "Modal token (ID:SECRET)" },
];

/// A provider by name, or a usage error listing them.
pub fn provider_auth(name: &str) -> Result<&'static ProviderAuth> {
    PROVIDERS.iter().find(|p| p.provider == name).ok_or_else(|| {
        usage(format!(
            "`{name}` takes no API key here; providers with keys: {}",
            PROVIDERS.iter().map(|p| p.provider).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Where a key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env(String),
    /// The OS keyring.
    Keyring,
    /// The config file.
    ConfigFile(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(v) => write!(f, "env {v}"),
            Self::Keyring => f.write_str("OS keyring"),
            Self::ConfigFile(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A resolved key.
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    /// The key (for Modal, `ID:SECRET`).
    pub key: Secret,
    /// Where it came from.
    pub source: KeySource,
}

/// Reads the key of `auth` from (in order) `flag`, the environment, the keyring and the config file.
pub fn resolve(auth: &ProviderAuth, flag: Option<&str>) -> Result<Option<ResolvedKey>> {
    if let Some(f) = flag.filter(|f| !f.is_empty()) {
        return Ok(Some(ResolvedKey { key: Secret::new(f), source: KeySource::Flag }));
    }
    if auth.provider == "modal" {
        if let (Ok(id), Ok(secret)) = (std::env::var("MODAL_TOKEN_ID"), std::env::var("MODAL_TOKEN_SECRET")) {
            if !id.is_empty() && !secret.is_empty() {
                return Ok(Some(ResolvedKey { key: Secret::new(format!("{id}:{secret}")), source: KeySource::Env("MODAL_TOKEN_ID/MODAL_TOKEN_SECRET".into()) }));
            }
        }
    } else {
        for var in auth.env {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    return Ok(Some(ResolvedKey { key: Secret::new(v), source: KeySource::Env((*var).into()) }));
                }
            }
        }
    }
    match keyring_get(auth.provider) {
        Ok(Some(k)) => return Ok(Some(ResolvedKey { key: k, source: KeySource::Keyring })),
        Ok(None) => {}
        Err(e) => tracing::debug!(provider = auth.provider, error = %e, "keyring not readable; trying the config file"),
    }
    let path = config_path();
    if let Some(k) = config_key(&path, auth.provider)? {
        return Ok(Some(ResolvedKey { key: k, source: KeySource::ConfigFile(path) }));
    }
    Ok(None)
}

/// Like [`resolve`], but a missing key is an error that says how to provide one.
pub fn require(auth: &ProviderAuth, flag: Option<&str>) -> Result<ResolvedKey> {
    let found = resolve(auth, flag)?;
    if let Some(k) = &found {
        crate::redact::register(k.key.expose());
    }
    found.ok_or_else(|| {
        usage(format!(
            "no {} credentials: set {} or run `sbx auth login {}`",
            auth.provider,
            auth.env.join(if auth.provider == "modal" { " and " } else { " or " }),
            auth.provider
        ))
    })
}

fn entry(provider: &str) -> keyring::Result<keyring::Entry> {
    ensure_session_keyring();
    keyring::Entry::new(SERVICE, provider)
}

/// The keyutils backend works through the process's session keyring, which processes started
/// outside a login session (CI jobs, containers, cron) do not have: make one. The keys themselves
/// live in the user's persistent keyring, which the backend links into it, so they outlive the process.
fn ensure_session_keyring() {
    #[cfg(target_os = "linux")]
    {
        use linux_keyutils::{KeyRing, KeyRingIdentifier};
        if let Err(e) = KeyRing::from_special_id(KeyRingIdentifier::Session, true) {
            tracing::debug!(error = ?e, "no session keyring and none could be made");
        }
    }
}

/// The key stored in the keyring, if any.
pub fn keyring_get(provider: &str) -> Result<Option<Secret>, KeyringError> {
    match entry(provider).and_then(|e| e.get_password()) {
        Ok(v) => Ok(Some(Secret::new(v))),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(KeyringError(e.to_string())),
    }
}

/// Stores a key in the keyring.
pub fn keyring_set(provider: &str, key: &Secret) -> Result<(), KeyringError> {
    entry(provider).and_then(|e| e.set_password(key.expose())).map_err(|e| KeyringError(e.to_string()))
}

/// Removes a key from the keyring; `false` when there was none.
pub fn keyring_delete(provider: &str) -> Result<bool, KeyringError> {
    match entry(provider).and_then(|e| e.delete_credential()) {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(KeyringError(e.to_string())),
    }
}

/// The OS keyring could not be used.
#[derive(Debug)]
pub struct KeyringError(String);

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the OS keyring is not usable here ({}); use the provider's environment variables or the config file instead", self.0)
    }
}
impl std::error::Error for KeyringError {}

/// `$XDG_CONFIG_HOME/sbx/config.toml` (or `~/.config/sbx/config.toml`).
pub fn config_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("sbx/config.toml")
}

/// `[providers.NAME] api_key = "…"` from the config file.
fn config_key(path: &PathBuf, provider: &str) -> Result<Option<Secret>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(usage(format!("{}: {e}", path.display()))),
    };
    let doc: toml::Table = text.parse().map_err(|e| usage(format!("{}: not valid TOML: {e}", path.display())))?;
    Ok(doc
        .get("providers")
        .and_then(|p| p.get(provider))
        .and_then(|p| p.get("api_key"))
        .and_then(|k| k.as_str())
        .filter(|k| !k.is_empty())
        .map(Secret::new))
}
