//! `sbx-agent`: the runtime that `sbx` puts inside every sandbox, and the typed client that talks to it.
//!
//! The crate has two halves behind features:
//! - `client` (wire types in [`api`] plus [`client::Client`]): what the host side links.
//! - `server` (the axum routes in `server`): what runs inside the sandbox as the `sbx-agent` binary.
//!
//! Everything on the wire is defined once in [`api`] and used by both halves, and the OpenAPI document
//! served at `/v1/openapi.json` is generated from those same types.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod api;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod credentials;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "client")]
pub mod stream_io;
#[cfg(feature = "client")]
pub mod tar_pack;

/// The runtime's version, reported by `/v1/health` and `sbx-agent --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The port the runtime listens on inside a sandbox unless told otherwise.
pub const DEFAULT_PORT: u16 = 2468;

/// The SHA-256 of a bearer token, as lowercase hex: what `sbx-agent server --token-sha256` takes, so the
/// token itself never has to be on the runtime's command line or in its environment (the digest of a
/// random token does not help anyone find the token).
#[cfg(feature = "client")]
pub fn token_sha256_hex(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Environment variables the runtime reads (also used by the host when starting it).
pub mod server_env {
    /// The bearer token (for people starting the runtime by hand; `sbx` passes only its SHA-256, see
    /// [`crate::token_sha256_hex`]).
    pub const TOKEN: &str = "SBX_AGENT_TOKEN";
    /// Send logs to stdout instead of files when set to anything but `0`.
    pub const LOG_STDOUT: &str = "SBX_AGENT_LOG_STDOUT";
    /// Log filter (tracing `EnvFilter` syntax).
    pub const LOG: &str = "SBX_AGENT_LOG";
    /// Prefix of variables the runtime hands to agent sessions only (`SBX_AGENT_SESSION_ENV_ANTHROPIC_API_KEY`
    /// becomes `ANTHROPIC_API_KEY` for agents), for people starting the runtime by hand. The runtime
    /// takes them out of its environment at start, but the kernel keeps the start-up environment in
    /// `/proc/<pid>/environ`, readable by every process of the same user: `sbx` does not use this, it
    /// pushes the keys over `PUT /v1/runtime/session-env` instead.
    pub const SESSION_ENV_PREFIX: &str = "SBX_AGENT_SESSION_ENV_";
}

/// Whether process `pid` is alive. A zombie (exited, not yet reaped, e.g. after being re-parented to a
/// PID 1 that does not reap) counts as dead, which `kill(pid, 0)` alone would not tell.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}
