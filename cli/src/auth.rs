//! Provider API keys: where they come from, in order — a flag, the provider's usual environment
//! variables, what `sbx auth login` stored, then `$XDG_CONFIG_HOME/sbx/config.toml` — and how they
//! are stored.
//!
//! `sbx auth login` stores keys in the desktop's Secret Service when the session offers one, else in
//! `$XDG_CONFIG_HOME/sbx/credentials.toml`, mode 0600 in a 0700 directory (as `gh` does without a
//! keyring); see [`crate::keystore`]. Both survive reboots, unlike the kernel keyutils store earlier
//! versions used (keys there expired after days and vanished at reboot; log in again once).

use std::path::PathBuf;

use anyhow::Result;
use sbx_agent::credentials::Secret;

use crate::output::{auth_error, usage};

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

impl ProviderAuth {
    /// A registered provider's key needs, from its registry entry.
    const fn registered(p: &'static sbx_providers::registry::ProviderInfo, prompt: &'static str) -> Self {
        Self { provider: p.name, env: p.auth, extra_env: p.env, prompt }
    }
}

/// The providers that take API keys: the registered ones (from the registry), then those whose
/// modules are still to come, whose keys can already be stored.
pub const PROVIDERS: &[ProviderAuth] = &[
    ProviderAuth::registered(&sbx_providers::registry::E2B, "E2B API key"),
    ProviderAuth::registered(&sbx_providers::registry::DAYTONA, "Daytona API key"),
    ProviderAuth::registered(&sbx_providers::registry::VERCEL, "Vercel token"),
    ProviderAuth::registered(&sbx_providers::registry::MODAL, "Modal token (ID:SECRET)"),
];

/// A provider by name, or a usage error listing them.
pub fn provider_auth(name: &str) -> Result<&'static ProviderAuth> {
    PROVIDERS.iter().find(|p| p.provider == name).ok_or_else(|| {
        usage(format!("`{name}` takes no API key here; providers with keys: {}", PROVIDERS.iter().map(|p| p.provider).collect::<Vec<_>>().join(", ")))
    })
}

/// Where a key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env(String),
    /// Where `sbx auth login` put it (the Secret Service or the private file).
    Stored(crate::keystore::Store),
    /// The config file.
    ConfigFile(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(v) => write!(f, "env {v}"),
            Self::Stored(s) => write!(f, "sbx auth login ({s})"),
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

/// Reads the key of `auth` from (in order) `flag`, the environment, the file `sbx auth login` writes
/// and the config file.
pub fn resolve(auth: &ProviderAuth, flag: Option<&str>) -> Result<Option<ResolvedKey>> {
    if let Some(f) = flag.filter(|f| !f.is_empty()) {
        return Ok(Some(ResolvedKey { key: Secret::new(f), source: KeySource::Flag }));
    }
    if auth.provider == "modal" {
        if let (Ok(id), Ok(secret)) = (std::env::var("MODAL_TOKEN_ID"), std::env::var("MODAL_TOKEN_SECRET")) {
            if !id.is_empty() && !secret.is_empty() {
                return Ok(Some(ResolvedKey {
                    key: Secret::new(format!("{id}:{secret}")),
                    source: KeySource::Env("MODAL_TOKEN_ID/MODAL_TOKEN_SECRET".into()),
                }));
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
    if let Some((k, store)) = crate::keystore::get(auth.provider)? {
        return Ok(Some(ResolvedKey { key: k, source: KeySource::Stored(store) }));
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
        auth_error(format!(
            "no {} credentials: set {} or run `sbx auth login {}`",
            auth.provider,
            auth.env.join(if auth.provider == "modal" { " and " } else { " or " }),
            auth.provider
        ))
    })
}

/// Where `sbx auth login` keeps keys: `$XDG_CONFIG_HOME/sbx/credentials.toml` (mode 0600, in a 0700
/// directory), the way `gh` falls back to a file in its config dir when there is no keyring.
pub fn credentials_path() -> PathBuf {
    config_path().with_file_name("credentials.toml")
}

/// The key in the private file, if any (see [`crate::keystore::get`] for every store).
pub fn file_get(provider: &str) -> Result<Option<Secret>> {
    config_key(&credentials_path(), provider)
}

/// Stores a key in the private file (replacing the provider's old one), readable only by this user.
pub fn file_set(provider: &str, key: &Secret) -> Result<PathBuf> {
    let path = credentials_path();
    let mut doc = read_table(&path)?.unwrap_or_default();
    let providers = doc.entry("providers").or_insert_with(|| toml::Value::Table(Default::default()));
    let Some(providers) = providers.as_table_mut() else {
        return Err(usage(format!("{}: `providers` is not a table", path.display())));
    };
    let mut entry = toml::Table::new();
    entry.insert("api_key".into(), toml::Value::String(key.expose().to_owned()));
    providers.insert(provider.into(), toml::Value::Table(entry));
    write_private(&path, doc.to_string().as_bytes())?;
    Ok(path)
}

/// Removes a key from the private file; `false` when there was none.
pub fn file_delete(provider: &str) -> Result<bool> {
    let path = credentials_path();
    let Some(mut doc) = read_table(&path)? else {
        return Ok(false);
    };
    let removed = doc.get_mut("providers").and_then(|p| p.as_table_mut()).and_then(|p| p.remove(provider)).is_some();
    if removed {
        write_private(&path, doc.to_string().as_bytes())?;
    }
    Ok(removed)
}

fn read_table(path: &PathBuf) -> Result<Option<toml::Table>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(usage(format!("{}: {e}", path.display()))),
    };
    text.parse().map(Some).map_err(|e| usage(format!("{}: not valid TOML: {e}", path.display())))
}

/// Writes `bytes` to `path` atomically, created with mode 0600 (never readable by others, not even
/// for a moment), in a directory made with mode 0700.
fn write_private(path: &PathBuf, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let dir = path.parent().expect("credentials path has a parent");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        // The umask cannot widen 0600, but a pre-existing ACL default could: set it outright.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display())
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_provider_with_a_key_takes_it_as_the_registry_says() {
        for p in sbx_providers::registry::all().iter().filter(|p| !p.auth.is_empty()) {
            let auth = provider_auth(p.name).expect("a registered provider with a key is in auth::PROVIDERS");
            assert_eq!(auth.env, p.auth);
            assert_eq!(auth.extra_env, p.env);
        }
    }
}
