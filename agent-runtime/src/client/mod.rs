//! A typed async client for the runtime's HTTP API, used by the `sbx` CLI and by tests.
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_agent::client::ClientError> {
//! let client = sbx_agent::client::Client::new("http://127.0.0.1:2468", Some("token".into()))?;
//! println!("{:?}", client.health().await?);
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{Health, Problem, ProblemKind};

pub mod fs;
pub use fs::{ByteStream, WriteOptions};
mod log_frames;
pub use log_frames::{LogFrame, LogFrameParser};
mod process;
pub use process::{FollowOptions, LogEvent, LogFollow, PtyEvent, PtyOptions, PtyReader, PtySession, PtyWriter};
mod runtime_log;
mod session;
mod session_env;
mod llm_relay;
pub use llm_relay::RelaySocket;
pub use session::EventFollow;
pub mod sse;

/// What can go wrong talking to the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The runtime answered with a problem document.
    #[error("runtime error: {problem}")]
    Api {
        /// The problem the runtime reported.
        problem: Problem,
    },
    /// The runtime could not be reached, or the connection broke.
    #[error("cannot reach the runtime at {url}: {source}")]
    Transport {
        /// Where we tried.
        url: String,
        /// Why it failed.
        #[source]
        source: reqwest::Error,
    },
    /// The runtime answered with something we could not understand.
    #[error("unexpected response from the runtime: {0}")]
    Protocol(String),
    /// A bad base URL or argument.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The problem kind, when the runtime reported one.
    pub fn problem_kind(&self) -> Option<ProblemKind> {
        match self {
            Self::Api { problem } => problem.problem_kind(),
            _ => None,
        }
    }
    /// The HTTP status, when the runtime answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { problem } => Some(problem.status),
            _ => None,
        }
    }
    /// True when the runtime could not be reached at all (a candidate for restarting it).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Transport { source, .. } if source.is_connect() || source.is_timeout() || source.is_request())
    }
}

/// Whether `e` is a connection that closed before it answered (a pooled connection whose peer had
/// gone), as opposed to a runtime that can't be reached or took too long.
fn died_while_idle(e: &reqwest::Error) -> bool {
    if e.is_connect() || e.is_timeout() {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// Client result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to one runtime (over TCP, or a Unix socket).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    extra_headers: Vec<(String, String)>,
    unix_socket: Option<PathBuf>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("unix_socket", &self.unix_socket)
            .finish()
    }
}

impl Client {
    /// A client for the runtime at `base_url` (e.g. `http://127.0.0.1:2468`).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self> {
        let base = base_url.trim_end_matches('/').to_owned();
        url::Url::parse(&base).map_err(|e| ClientError::Config(format!("bad runtime URL `{base}`: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self { http, base, token, extra_headers: Vec::new(), unix_socket: None })
    }

    /// A client that talks HTTP over the Unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>, token: Option<String>) -> Result<Self> {
        let path = path.into();
        let http = reqwest::Client::builder()
            .unix_socket(path.clone())
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self { http, base: "http://sbx-agent".into(), token, extra_headers: Vec::new(), unix_socket: Some(path) })
    }

    /// Adds a header sent with every request (e.g. a provider's preview-access header).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The Unix socket, when this client uses one.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        self.unix_socket.as_deref()
    }

    /// The full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to `path` with auth and extra headers set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in &self.extra_headers {
            rb = rb.header(k, v);
        }
        rb
    }

    /// Sends a request and turns a non-2xx answer into [`ClientError::Api`].
    ///
    /// A bodiless idempotent request (GET, HEAD, DELETE) that meets a pooled connection which died while
    /// idle (the tunnel under it was re-dialled, the runtime restarted) is sent once more on a fresh
    /// connection: the runtime never saw it, or seeing it twice changes nothing.
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let transport = |e| ClientError::Transport { url: self.base.clone(), source: e };
        let (http, req) = rb.build_split();
        let req = req.map_err(transport)?;
        // An upgrade (a PTY, a relay) starts something on the runtime: never sent twice.
        let idempotent = matches!(*req.method(), Method::GET | Method::HEAD | Method::DELETE) && !req.headers().contains_key(reqwest::header::UPGRADE);
        let again = idempotent.then(|| req.try_clone()).flatten();
        let resp = match (http.execute(req).await, again) {
            (Err(e), Some(again)) if died_while_idle(&e) => {
                tracing::debug!(error = %e, "a pooled connection to the runtime was dead; sending once more");
                http.execute(again).await
            }
            (r, _) => r,
        };
        check(resp.map_err(transport)?).await
    }

    /// Sends a request and decodes a JSON answer.
    pub async fn send_json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let resp = self.send(rb).await?;
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport { url: self.base.clone(), source: e })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("bad JSON: {e}")))
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health> {
        self.send_json(self.request(Method::GET, "/v1/health")).await
    }

    /// `GET /v1/openapi.json` as raw JSON.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.send_json(self.request(Method::GET, "/v1/openapi.json")).await
    }
}

/// Turns an error status into [`ClientError::Api`], decoding the problem document when there is one.
pub async fn check(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp);
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| {
        let mut p = Problem::new(
            ProblemKind::from_status(status.as_u16()),
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
        );
        p.status = status.as_u16();
        p
    });
    Err(ClientError::Api { problem })
}

/// `segment` percent-encoded for use as one path segment (ids come from users and agents).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut enc = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    enc
}
