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
#[cfg(feature = "server")]
pub mod server;

/// The runtime's version, reported by `/v1/health` and `sbx-agent --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The port the runtime listens on inside a sandbox unless told otherwise.
pub const DEFAULT_PORT: u16 = 2468;
