//! Wire types shared by the runtime server and its client.
//!
//! JSON is camelCase everywhere. Each type derives `utoipa::ToSchema` so the OpenAPI document is built
//! from exactly what the handlers use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod fs;
pub mod llm_relay;
pub mod process;
pub mod runtime_log;
pub mod session;
pub mod session_env;

/// Serde for byte fields carried as standard base64 strings in JSON (process output is bytes, not text).
pub(crate) mod b64 {
    use base64::Engine as _;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: From<Vec<u8>>>(d: D) -> Result<T, D::Error> {
        // A visitor decodes straight from the borrowed text: no owned copy of a (possibly 20 MB) string.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                base64::engine::general_purpose::STANDARD.decode(v.trim()).map_err(E::custom)
            }
        }
        d.deserialize_str(V).map(T::from)
    }
}

/// `GET /v1/health`: the one route that needs no token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Always `"ok"` when the server answers.
    pub status: String,
    /// The runtime's version (`sbx-agent --version`).
    pub version: String,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// The server's process id (lets the host tell a restarted runtime from the same one).
    pub pid: u32,
}

/// An RFC 7807 problem document, returned with `Content-Type: application/problem+json` for every error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A stable identifier for the kind of error; see [`ProblemKind`]. Clients match on this, never on text.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short human summary of the kind.
    pub title: String,
    /// The HTTP status code, repeated in the body.
    pub status: u16,
    /// What went wrong this time, and what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path the problem concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The media type of error bodies.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Every kind of error the runtime reports. The `type` strings are a contract: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The request was malformed (bad JSON, bad query, bad value).
    BadRequest,
    /// The session asks for an agent whose binary is not installed in the sandbox (400, like
    /// `BadRequest`, so clients that only look at the status keep working).
    AgentNotInstalled,
    /// No bearer token, or the wrong one.
    Unauthorized,
    /// A path tried to leave the configured root.
    PathOutsideRoot,
    /// The thing named does not exist (route, file, process, session).
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The target already exists or is in the wrong state (e.g. mkdir on a file).
    Conflict,
    /// The body was larger than allowed.
    PayloadTooLarge,
    /// A `Range` header could not be satisfied.
    RangeNotSatisfiable,
    /// A configured limit (such as max concurrent processes) was reached.
    LimitReached,
    /// The body's content type is not one this route takes.
    UnsupportedMediaType,
    /// Something failed inside the runtime.
    Internal,
}

impl ProblemKind {
    /// All kinds, for docs and tests.
    pub const ALL: &'static [ProblemKind] = &[
        Self::BadRequest,
        Self::AgentNotInstalled,
        Self::Unauthorized,
        Self::PathOutsideRoot,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::RangeNotSatisfiable,
        Self::LimitReached,
        Self::UnsupportedMediaType,
        Self::Internal,
    ];

    /// The stable `type` URI.
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::BadRequest => "urn:sbx:problem:bad-request",
            Self::AgentNotInstalled => "urn:sbx:problem:agent-not-installed",
            Self::Unauthorized => "urn:sbx:problem:unauthorized",
            Self::PathOutsideRoot => "urn:sbx:problem:path-outside-root",
            Self::NotFound => "urn:sbx:problem:not-found",
            Self::MethodNotAllowed => "urn:sbx:problem:method-not-allowed",
            Self::Conflict => "urn:sbx:problem:conflict",
            Self::PayloadTooLarge => "urn:sbx:problem:payload-too-large",
            Self::RangeNotSatisfiable => "urn:sbx:problem:range-not-satisfiable",
            Self::LimitReached => "urn:sbx:problem:limit-reached",
            Self::UnsupportedMediaType => "urn:sbx:problem:unsupported-media-type",
            Self::Internal => "urn:sbx:problem:internal",
        }
    }

    /// The HTTP status this kind is sent with.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest | Self::AgentNotInstalled => 400,
            Self::Unauthorized => 401,
            Self::PathOutsideRoot => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RangeNotSatisfiable => 416,
            Self::LimitReached => 429,
            Self::Internal => 500,
        }
    }

    /// A short human title.
    pub fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::AgentNotInstalled => "Agent not installed",
            Self::Unauthorized => "Missing or wrong bearer token",
            Self::PathOutsideRoot => "Path is outside the runtime's root",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RangeNotSatisfiable => "Range not satisfiable",
            Self::LimitReached => "Limit reached",
            Self::Internal => "Internal error",
        }
    }

    /// The kind for a `type` URI, if it is one of ours.
    pub fn from_type_uri(uri: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.type_uri() == uri)
    }

    /// The kind that best describes a bare HTTP status (for errors produced outside our handlers).
    pub fn from_status(status: u16) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.status() == status)
            .unwrap_or(if status < 500 { Self::BadRequest } else { Self::Internal })
    }
}

impl Problem {
    /// A problem of `kind` with a detail message.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.type_uri().to_owned(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            instance: None,
        }
    }

    /// The kind, when the `type` is one of ours.
    pub fn problem_kind(&self) -> Option<ProblemKind> {
        ProblemKind::from_type_uri(&self.kind)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} ({}): {}", self.title, self.status, d),
            None => write!(f, "{} ({})", self.title, self.status),
        }
    }
}
