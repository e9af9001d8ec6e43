//! Typed provider errors: each says what went wrong and what to do.

use std::time::Duration;

/// Provider result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No sandbox with that id.
    #[error("sandbox `{sandbox}` not found")]
    NotFound {
        /// The id asked for.
        sandbox: String,
    },
    /// The sandbox exists but is not running (paused, stopped, archived), so it cannot do this now.
    #[error("sandbox `{sandbox}` is not running (it is {state}); resume it first (`sbx resume <name>`)")]
    NotRunning {
        /// The id asked for.
        sandbox: String,
        /// Its state, in the provider's words (`paused`, `stopped`, `archived`…).
        state: String,
    },
    /// The provider cannot do this.
    #[error("{provider} does not support {op}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The provider.
        provider: &'static str,
    },
    /// Credentials missing or refused.
    #[error("{provider}: authentication failed: {message}")]
    Auth {
        /// The provider.
        provider: &'static str,
        /// What happened and what to do (names the env var and `sbx auth login`).
        message: String,
    },
    /// Throttled by the platform.
    #[error("{provider}: rate limited{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The provider.
        provider: &'static str,
        /// How long the platform asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The provider's service cannot be reached (e.g. Docker not running).
    #[error("{provider} is not available: {message}")]
    Unavailable {
        /// The provider.
        provider: &'static str,
        /// What happened and how to fix it.
        message: String,
    },
    /// The image or template does not exist.
    #[error("image `{image}` not found: {hint}")]
    ImageNotFound {
        /// The image.
        image: String,
        /// What to do.
        hint: String,
    },
    /// The spec asks for something invalid.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// An operation took too long.
    #[error("{op} timed out after {} s", after.as_secs())]
    Timeout {
        /// The operation.
        op: String,
        /// The limit.
        after: Duration,
    },
    /// No `sbx-agent` binary to put into sandboxes was found on this machine (a setup problem, not
    /// the sandbox's).
    #[error("the sbx-agent runtime binary was not found (looked at: {tried}). Install it with install/install.sh, build it with install/build-runtime.sh, or point SBX_RUNTIME at a static x86_64 Linux sbx-agent")]
    RuntimeNotFound {
        /// The paths tried, and why each did not do.
        tried: String,
    },
    /// The runtime inside the sandbox did not come up or stopped answering.
    #[error("the sbx-agent runtime {0}")]
    Runtime(String),
    /// The provider's API refused a request with an HTTP error status (one that has no variant of
    /// its own: 401/403 are [`Error::Auth`], 429 is [`Error::RateLimited`], 404 of a sandbox is
    /// [`Error::NotFound`]).
    #[error(
        "{provider}: {op} failed (HTTP {status}): {message}{}",
        request_id.as_ref().map(|r| format!(" (request id {r})")).unwrap_or_default()
    )]
    Api {
        /// The provider.
        provider: &'static str,
        /// What sbx asked for (`create`, `list`, `execute`…).
        op: String,
        /// The HTTP status.
        status: u16,
        /// The provider's message (from its error body).
        message: String,
        /// The provider's id of the request, to quote to its support, when it sent one.
        request_id: Option<String>,
    },
    /// Anything else the provider reported.
    #[error("{provider}: {message}")]
    Provider {
        /// The provider.
        provider: &'static str,
        /// Its message.
        message: String,
    },
    /// A fault a test asked for with `SBX_TEST_FAIL_PHASE` (never set outside tests).
    #[error("{phase} failed: fault injected by SBX_TEST_FAIL_PHASE={phase}")]
    TestFault {
        /// The phase that was made to fail.
        phase: &'static str,
    },
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
