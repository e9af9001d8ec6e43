//! Opening the LLM relay (`GET /v1/llm/relay`, a WebSocket) as the host that serves it; the frames are
//! in [`crate::api::llm_relay`].

use reqwest::header::{CONNECTION, UPGRADE};
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::{Client, ClientError, Result};
use crate::api::llm_relay::RELAY_PATH;

/// The host's end of the relay.
pub type RelaySocket = WebSocketStream<reqwest::Upgraded>;

impl Client {
    /// `GET /v1/llm/relay`: attaches this host to the runtime's LLM relay (through this client's token,
    /// headers and Unix socket, since the upgrade goes through the same HTTP client).
    pub async fn llm_relay(&self) -> Result<RelaySocket> {
        let key = super::process::websocket_key();
        let rb = self
            .request(Method::GET, RELAY_PATH)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", &key);
        let resp = self.send(rb).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ClientError::Protocol(format!(
                "GET {RELAY_PATH} answered {} instead of switching to a WebSocket (a runtime older than the LLM relay?)",
                resp.status()
            )));
        }
        let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let accept = resp.headers().get("sec-websocket-accept").and_then(|v| v.to_str().ok());
        if accept != Some(expected.as_str()) {
            return Err(ClientError::Protocol("the WebSocket handshake's Sec-WebSocket-Accept is wrong".into()));
        }
        let upgraded = resp.upgrade().await.map_err(|e| ClientError::Transport { url: self.base_url().to_owned(), source: e })?;
        // Frames carry body pieces as the HTTP stack reads them (kilobytes): the default limits fit.
        Ok(WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await)
    }
}
