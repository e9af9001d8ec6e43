//! Typed client methods for the file API (`/v1/fs/*`).
//!
//! Reads and batch downloads come back as byte streams and writes and batch uploads take any
//! [`reqwest::Body`] (wrap a stream with [`reqwest::Body::wrap_stream`]), so `sbx cp` can move files of
//! any size without holding them in memory.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::{header, Method, StatusCode};

use super::{Client, ClientError, Result};
use crate::api::fs::{
    ByteRange, DeleteQuery, Entry, EntryList, MkdirQuery, MoveRequest, PathQuery, UploadBatchResult, WriteQuery,
};

/// A stream of body chunks from the runtime.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Options for [`Client::write_bytes`] and [`Client::write_stream`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits for the file (default: keep the existing file's, or `0o644`).
    pub mode: Option<u32>,
    /// Create missing parent directories.
    pub parents: bool,
}

impl WriteOptions {
    /// Sets the permission bits.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }
    /// Creates missing parent directories.
    pub fn parents(mut self) -> Self {
        self.parents = true;
        self
    }
}

fn path_query(path: &str) -> PathQuery {
    PathQuery { path: path.to_owned() }
}

impl Client {
    /// `GET /v1/fs/entries`: a directory's entries, sorted by name.
    pub async fn list(&self, path: &str) -> Result<EntryList> {
        self.send_json(self.request(Method::GET, "/v1/fs/entries").query(&path_query(path))).await
    }

    /// `GET /v1/fs/stat`: one entry (a symlink itself, not its target).
    pub async fn stat(&self, path: &str) -> Result<Entry> {
        self.send_json(self.request(Method::GET, "/v1/fs/stat").query(&path_query(path))).await
    }

    /// `GET /v1/fs/file`, collected in memory. For big files use [`Client::read_stream`].
    pub async fn read_bytes(&self, path: &str) -> Result<Bytes> {
        let resp = self.send(self.request(Method::GET, "/v1/fs/file").query(&path_query(path))).await?;
        resp.bytes().await.map_err(|e| self.transport(e))
    }

    /// `GET /v1/fs/file` with a `Range` header: just those bytes. An unsatisfiable range is a
    /// [`ClientError::Api`] with status 416.
    pub async fn read_range(&self, path: &str, range: ByteRange) -> Result<Bytes> {
        let rb = self
            .request(Method::GET, "/v1/fs/file")
            .query(&path_query(path))
            .header(header::RANGE, range.header_value());
        let resp = self.send(rb).await?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(ClientError::Protocol(format!("expected 206 for a range read, got {}", resp.status())));
        }
        resp.bytes().await.map_err(|e| self.transport(e))
    }

    /// `GET /v1/fs/file` as a stream of chunks.
    pub async fn read_stream(&self, path: &str) -> Result<ByteStream> {
        let resp = self.send(self.request(Method::GET, "/v1/fs/file").query(&path_query(path))).await?;
        Ok(self.body_stream(resp))
    }

    /// `PUT /v1/fs/file` from memory; the file is replaced atomically.
    pub async fn write_bytes(&self, path: &str, data: impl Into<Bytes>, opts: WriteOptions) -> Result<Entry> {
        self.write_stream(path, reqwest::Body::from(data.into()), opts).await
    }

    /// `PUT /v1/fs/file` from any body, e.g. `reqwest::Body::wrap_stream(stream)`; the runtime streams
    /// it to disk and replaces the file atomically once it is complete.
    pub async fn write_stream(&self, path: &str, body: impl Into<reqwest::Body>, opts: WriteOptions) -> Result<Entry> {
        let query = WriteQuery {
            path: path.to_owned(),
            mode: opts.mode.map(|m| format!("{m:o}")),
            parents: opts.parents.then_some(true),
        };
        let rb = self
            .request(Method::PUT, "/v1/fs/file")
            .query(&query)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send_json(rb).await
    }

    /// `DELETE /v1/fs/entry`. A non-empty directory needs `recursive`.
    pub async fn delete(&self, path: &str, recursive: bool) -> Result<()> {
        let query = DeleteQuery { path: path.to_owned(), recursive: recursive.then_some(true) };
        self.send(self.request(Method::DELETE, "/v1/fs/entry").query(&query)).await.map(drop)
    }

    /// `POST /v1/fs/mkdir`. With `parents`, also creates missing parents and accepts an existing
    /// directory.
    pub async fn mkdir(&self, path: &str, parents: bool) -> Result<Entry> {
        let query = MkdirQuery { path: path.to_owned(), parents: parents.then_some(true) };
        self.send_json(self.request(Method::POST, "/v1/fs/mkdir").query(&query)).await
    }

    /// `POST /v1/fs/move`: rename `from` to `to` (`move` is a keyword, hence the name).
    pub async fn move_entry(&self, from: &str, to: &str, overwrite: bool) -> Result<Entry> {
        let body = MoveRequest { from: from.to_owned(), to: to.to_owned(), overwrite };
        self.send_json(self.request(Method::POST, "/v1/fs/move").json(&body)).await
    }

    /// `POST /v1/fs/upload-batch`: unpack a tar or tar.gz stream (gzip is detected) into `dir`.
    pub async fn upload_tar_stream(&self, dir: &str, body: impl Into<reqwest::Body>) -> Result<UploadBatchResult> {
        let rb = self
            .request(Method::POST, "/v1/fs/upload-batch")
            .query(&path_query(dir))
            .header(header::CONTENT_TYPE, "application/x-tar")
            .body(body);
        self.send_json(rb).await
    }

    /// `GET /v1/fs/download-batch`: `dir` as a tar stream (entry names relative to `dir`). A failure on
    /// the runtime's side mid-way shows up as an error item in the stream, never as a short archive.
    pub async fn download_tar_stream(&self, dir: &str) -> Result<ByteStream> {
        let resp = self.send(self.request(Method::GET, "/v1/fs/download-batch").query(&path_query(dir))).await?;
        Ok(self.body_stream(resp))
    }

    fn body_stream(&self, resp: reqwest::Response) -> ByteStream {
        let url = self.base_url().to_owned();
        resp.bytes_stream()
            .map_err(move |source| ClientError::Transport { url: url.clone(), source })
            .boxed()
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport { url: self.base_url().to_owned(), source }
    }
}
