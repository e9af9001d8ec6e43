//! The LLM relay of keyless sandboxes (docs/keyless.md): the wire format between the runtime and the
//! host that serves it.
//!
//! An agent in the sandbox calls its model API on the runtime (`/v1/llm/anthropic/...`,
//! `/v1/llm/openai/...`) with a relay token instead of a key. The runtime passes each such request over
//! one WebSocket the host opened to it ([`RELAY_PATH`], authenticated with the runtime's bearer token),
//! as binary frames multiplexed by request id; the host checks the token, adds the real key, forwards
//! to the upstream API and streams the answer back the same way, chunk by chunk.
//!
//! A frame is `[kind: u8][request id: u64 big-endian][payload]`. Heads are JSON; bodies are raw bytes.

use serde::{Deserialize, Serialize};

/// The WebSocket the host opens to serve the relay (the runtime's bearer token required).
pub const RELAY_PATH: &str = "/v1/llm/relay";
/// Where agents send model requests: `{runtime}/v1/llm[/s/{session}]/{provider}/...`.
pub const LLM_PREFIX: &str = "/v1/llm/";
/// Session variable (pushed by the host over `PUT /v1/runtime/session-env`) holding the relay token.
/// The runtime takes it out of the agent's environment and gives the agent the token as its API key and
/// its own address as the base URL.
pub const RELAY_TOKEN_ENV: &str = "SBX_LLM_RELAY_TOKEN";
/// Session variable: how long (milliseconds) a model request waits for a host to attach before it fails
/// with 503 (default [`DEFAULT_WAIT_MS`]).
pub const RELAY_WAIT_ENV: &str = "SBX_LLM_RELAY_WAIT_MS";
/// The default of [`RELAY_WAIT_ENV`].
pub const DEFAULT_WAIT_MS: u64 = 30_000;
/// The model APIs the relay serves (path segment after `/v1/llm/`).
pub const PROVIDERS: [&str; 2] = ["anthropic", "openai"];

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Runtime → host: a [`RequestHead`] (JSON).
    RequestHead = 1,
    /// Runtime → host: a piece of the request body.
    RequestBody = 2,
    /// Runtime → host: the request body is complete.
    RequestEnd = 3,
    /// Runtime → host: the agent went away; stop the upstream request.
    Cancel = 4,
    /// Host → runtime: a [`ResponseHead`] (JSON).
    ResponseHead = 5,
    /// Host → runtime: a piece of the response body, passed to the agent as it arrives.
    ResponseBody = 6,
    /// Host → runtime: the response is complete.
    ResponseEnd = 7,
    /// Host → runtime: the response failed (UTF-8 message); before the head the agent gets 502 with it,
    /// after it the agent's connection is cut.
    ResponseError = 8,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::RequestHead,
            2 => Self::RequestBody,
            3 => Self::RequestEnd,
            4 => Self::Cancel,
            5 => Self::ResponseHead,
            6 => Self::ResponseBody,
            7 => Self::ResponseEnd,
            8 => Self::ResponseError,
            _ => return None,
        })
    }
}

/// A frame that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than the 9 header bytes.
    #[error("relay frame of {len} bytes is shorter than its 9-byte header")]
    Short {
        /// Its length.
        len: usize,
    },
    /// An unknown kind byte.
    #[error("relay frame of unknown kind {kind}")]
    UnknownKind {
        /// The byte.
        kind: u8,
    },
}

/// One relay frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// The request it belongs to.
    pub id: u64,
    /// JSON for heads, bytes for bodies, a message for errors, empty otherwise.
    pub payload: bytes::Bytes,
}

impl Frame {
    /// A frame.
    pub fn new(kind: FrameKind, id: u64, payload: impl Into<bytes::Bytes>) -> Self {
        Self { kind, id, payload: payload.into() }
    }

    /// A frame with no payload.
    pub fn empty(kind: FrameKind, id: u64) -> Self {
        Self::new(kind, id, bytes::Bytes::new())
    }

    /// A head frame holding `head` as JSON.
    pub fn json<T: Serialize>(kind: FrameKind, id: u64, head: &T) -> Self {
        // Heads are plain structs of strings and numbers: serializing them cannot fail.
        Self::new(kind, id, serde_json::to_vec(head).unwrap_or_default())
    }

    /// The bytes of a WebSocket binary message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.payload.len());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads a WebSocket binary message.
    pub fn decode(msg: bytes::Bytes) -> Result<Self, FrameError> {
        if msg.len() < 9 {
            return Err(FrameError::Short { len: msg.len() });
        }
        let kind = FrameKind::from_u8(msg[0]).ok_or(FrameError::UnknownKind { kind: msg[0] })?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&msg[1..9]);
        Ok(Self { kind, id: u64::from_be_bytes(id), payload: msg.slice(9..) })
    }
}

/// One HTTP header; the value is bytes (base64 in JSON), as HTTP allows.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// Lower-case name.
    pub name: String,
    /// The value's bytes.
    #[serde(with = "super::b64")]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Header {
    // A header may carry a credential: names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <{} bytes>", self.name, self.value.len())
    }
}

/// An agent's model request as the runtime passes it to the host.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestHead {
    /// `anthropic` or `openai`.
    pub provider: String,
    /// The HTTP method.
    pub method: String,
    /// The path under the provider's root with the query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// The request's headers except the credential ones (`authorization`, `x-api-key`) and hop-by-hop ones.
    pub headers: Vec<Header>,
    /// The session the agent belongs to, when the runtime knows it (from the base URL it gave the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The relay token the agent presented (never a real key).
    pub token: String,
}

impl std::fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHead")
            .field("provider", &self.provider)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// The upstream's answer head as the host passes it back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResponseHead {
    /// HTTP status.
    pub status: u16,
    /// Response headers (hop-by-hop ones left out).
    pub headers: Vec<Header>,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones the relay
/// sets itself: never passed through.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "host"
    )
}

/// Headers that carry a credential: the relay token on the way in, the real key on the way out.
pub fn is_credential(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().as_str(), "authorization" | "x-api-key" | "proxy-authorization")
}

/// A model-API error body the agent understands (each vendor's own error shape), so its message reaches
/// the user as the agent prints API errors.
pub fn error_body(provider: &str, status: u16, message: &str) -> Vec<u8> {
    let v = if provider == "anthropic" {
        let kind = match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
    } else {
        let (kind, code) = match status {
            401 => ("invalid_request_error", "invalid_api_key"),
            429 => ("rate_limit_exceeded", "rate_limit_exceeded"),
            400..=499 => ("invalid_request_error", "sbx_relay"),
            _ => ("server_error", "sbx_relay"),
        };
        serde_json::json!({"error": {"message": message, "type": kind, "code": code, "param": null}})
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_short_ones_are_refused() {
        let f = Frame::new(FrameKind::ResponseBody, u64::MAX - 3, b"data: {}\n\n".to_vec());
        assert_eq!(Frame::decode(f.encode().into()), Ok(f));
        let e = Frame::empty(FrameKind::RequestEnd, 7);
        assert_eq!(Frame::decode(e.encode().into()).unwrap().payload.len(), 0);
        assert_eq!(Frame::decode(bytes::Bytes::from_static(b"\x01abc")), Err(FrameError::Short { len: 4 }));
        assert_eq!(Frame::decode(bytes::Bytes::from(vec![99u8; 9])), Err(FrameError::UnknownKind { kind: 99 }));
    }

    #[test]
    fn heads_keep_header_bytes_and_hide_the_token_when_printed() {
        let head = RequestHead {
            provider: "anthropic".into(),
            method: "POST".into(),
            path: "/v1/messages?beta=true".into(),
            headers: vec![Header { name: "x-odd".into(), value: vec![0xff, 0x00, b'a'] }],
            session: Some("ses_1".into()),
            token: "relay-secret".into(),
        };
        let f = Frame::json(FrameKind::RequestHead, 1, &head);
        let back: RequestHead = serde_json::from_slice(&Frame::decode(f.encode().into()).unwrap().payload).unwrap();
        assert_eq!(back, head);
        assert!(!format!("{head:?}").contains("relay-secret"));
    }

    #[test]
    fn error_bodies_speak_each_vendors_shape() {
        let a: serde_json::Value = serde_json::from_slice(&error_body("anthropic", 429, "slow down")).unwrap();
        assert_eq!(a["error"]["type"], "rate_limit_error");
        assert_eq!(a["error"]["message"], "slow down");
        let o: serde_json::Value = serde_json::from_slice(&error_body("openai", 401, "bad token")).unwrap();
        assert_eq!(o["error"]["code"], "invalid_api_key");
    }
}
