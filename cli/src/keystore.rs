//! Where `sbx auth login` keeps provider keys: the desktop's Secret Service (GNOME Keyring, KWallet,
//! KeePassXC …) when the session offers one, else `$XDG_CONFIG_HOME/sbx/credentials.toml` (mode 0600),
//! the way `gh auth login` falls back to a file when there is no keyring.
//!
//! `SBX_KEYRING` picks the store: `auto` (default: the Secret Service when it answers, else the file),
//! `secret-service` (an error when it does not answer) or `file`.
//!
//! Every Secret Service call runs on its own thread with a deadline: a session bus can be present with
//! no service behind it, or with a locked collection whose unlock prompt nobody will ever see (CI, ssh),
//! and neither may hang a command that only wanted a key.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use sbx_agent::credentials::Secret;

use crate::output::usage;

/// The keyring service name our entries are filed under (the account is the provider's name).
const SERVICE: &str = "sbx";
/// How long a Secret Service call may take before we treat the service as absent.
const DEADLINE: Duration = Duration::from_secs(5);
/// The environment variable that picks the store.
pub const ENV_STORE: &str = "SBX_KEYRING";

/// One place a key can be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The desktop's Secret Service, over the session bus.
    SecretService,
    /// The private file.
    File(PathBuf),
}

impl Store {
    /// `secret-service` or `file`, as `sbx auth status` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SecretService => "secret-service",
            Self::File(_) => "file",
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SecretService => f.write_str("the Secret Service (desktop keyring)"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What `SBX_KEYRING` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Auto,
    SecretService,
    File,
}

fn choice() -> Result<Choice> {
    match std::env::var(ENV_STORE).unwrap_or_default().trim() {
        "" | "auto" => Ok(Choice::Auto),
        "secret-service" | "secretservice" | "keyring" => Ok(Choice::SecretService),
        "file" => Ok(Choice::File),
        other => Err(usage(format!("{ENV_STORE}={other} is not a key store: use auto, secret-service or file"))),
    }
}

/// Whether a desktop session bus is around (where a Secret Service usually lives). Without one we do
/// not even try, so a headless machine never waits on D-Bus.
fn session_bus() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
}

/// The result of a Secret Service call made under [`DEADLINE`].
enum Answer<T> {
    Done(T),
    /// The service is absent, refused or did not answer in time (the reason, for a note).
    Unavailable(String),
}

/// Runs `op` against the keyring entry for `provider` on a thread of its own, giving up after the
/// deadline (the thread is left to finish or die with the process).
fn with_entry<T: Send + 'static>(
    provider: &str,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Answer<keyring::Result<T>> {
    let provider = provider.to_owned();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("sbx-keyring".into()).spawn(move || {
        let result = keyring::Entry::new(SERVICE, &provider).and_then(|e| op(&e));
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        return Answer::Unavailable(format!("could not start a thread for the keyring: {e}"));
    }
    match rx.recv_timeout(DEADLINE) {
        Ok(Err(e @ (keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_)))) => Answer::Unavailable(e.to_string()),
        Ok(r) => Answer::Done(r),
        Err(_) => Answer::Unavailable(format!("the Secret Service did not answer within {}s (locked, or waiting for a prompt)", DEADLINE.as_secs())),
    }
}

/// The key stored for `provider`, and where: the Secret Service first, then the file.
pub fn get(provider: &str) -> Result<Option<(Secret, Store)>> {
    let choice = choice()?;
    if choice != Choice::File && session_bus() {
        match with_entry(provider, |e| e.get_password()) {
            Answer::Done(Ok(k)) if !k.is_empty() => return Ok(Some((Secret::new(k), Store::SecretService))),
            Answer::Done(Ok(_) | Err(keyring::Error::NoEntry)) => {}
            Answer::Done(Err(e)) => tracing::debug!("secret service lookup for {provider}: {e}"),
            Answer::Unavailable(why) if choice == Choice::SecretService => {
                return Err(usage(format!("{ENV_STORE}=secret-service, but the Secret Service is not usable: {why}")));
            }
            Answer::Unavailable(why) => tracing::debug!("secret service not usable: {why}"),
        }
    }
    Ok(crate::auth::file_get(provider)?.map(|k| (k, Store::File(crate::auth::credentials_path()))))
}

/// Where [`set`] put a key, and why not elsewhere.
#[derive(Debug)]
pub struct Stored {
    /// The store that holds the key now.
    pub store: Store,
    /// Set when the Secret Service was wanted (a session bus is present) but could not be used.
    pub fallback_reason: Option<String>,
}

/// Stores `key` for `provider` in the Secret Service when it is usable, else in the file. A copy in the
/// other store is removed, so exactly one store holds the provider's key.
pub fn set(provider: &str, key: &Secret) -> Result<Stored> {
    let choice = choice()?;
    let mut fallback_reason = None;
    if choice != Choice::File {
        if !session_bus() {
            if choice == Choice::SecretService {
                return Err(usage(format!("{ENV_STORE}=secret-service, but there is no session bus (DBUS_SESSION_BUS_ADDRESS is not set)")));
            }
        } else {
            let value = key.expose().to_owned();
            let outcome = match with_entry(provider, move |e| e.set_password(&value)) {
                Answer::Done(Ok(())) => Ok(()),
                Answer::Done(Err(e)) => Err(e.to_string()),
                Answer::Unavailable(why) => Err(why),
            };
            match outcome {
                Ok(()) => {
                    crate::auth::file_delete(provider)?;
                    return Ok(Stored { store: Store::SecretService, fallback_reason: None });
                }
                Err(why) if choice == Choice::SecretService => {
                    return Err(usage(format!("{ENV_STORE}=secret-service, but storing the key there failed: {why}")));
                }
                Err(why) => fallback_reason = Some(why),
            }
        }
    }
    let path = crate::auth::file_set(provider, key)?;
    if session_bus() && fallback_reason.is_none() {
        // An older key in the Secret Service would shadow the new one in the file.
        let _ = with_entry(provider, |e| e.delete_credential());
    }
    Ok(Stored { store: Store::File(path), fallback_reason })
}

/// Removes `provider`'s key from every store; returns the stores that held one.
pub fn delete(provider: &str) -> Result<Vec<Store>> {
    let mut removed = Vec::new();
    choice()?;
    if session_bus() {
        if let Answer::Done(Ok(())) = with_entry(provider, |e| e.delete_credential()) {
            removed.push(Store::SecretService);
        }
    }
    if crate::auth::file_delete(provider)? {
        removed.push(Store::File(crate::auth::credentials_path()));
    }
    Ok(removed)
}
