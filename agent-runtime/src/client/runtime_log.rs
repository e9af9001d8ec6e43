//! Typed client method for the runtime's own log (`GET /v1/runtime/logs`).

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;

use super::{ByteStream, Client, ClientError, Result};
use crate::api::runtime_log::RuntimeLogQuery;

impl Client {
    /// `GET /v1/runtime/logs`: the runtime's log as a stream of text chunks; `tail` starts with the last
    /// that many lines, `follow` keeps the stream open for appended lines (it ends when the runtime
    /// stops). A runtime that logs to stdout answers 404 ([`ClientError::Api`]).
    pub async fn runtime_log(&self, follow: bool, tail: Option<u64>) -> Result<ByteStream> {
        let query = RuntimeLogQuery { follow: follow.then_some(true), tail };
        let resp = self.send(self.request(Method::GET, "/v1/runtime/logs").query(&query)).await?;
        let url = self.base_url().to_owned();
        Ok(resp.bytes_stream().map_err(move |source| ClientError::Transport { url: url.clone(), source }).boxed())
    }
}
