//! The sandbox's envd data plane, used only to bootstrap the runtime: `process.Process/Start`
//! (Connect-RPC server stream, JSON codec) to run a command, `POST /files` (octet-stream) to upload.
//!
//! Commands run as `root` (envd's `Authorization: Basic base64("root:")`), so the runtime can go to
//! `/usr/local/bin` as on every other provider.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};

use super::client::CONNECT_TIMEOUT;
use super::NAME;
use crate::http::{Http, Reply};
use crate::{ByteStream, Error, ExecOutput, ExecSpec, Result};

/// envd's port inside every sandbox.
pub const ENVD_PORT: u16 = 49983;
/// `base64("root:")`: envd runs the request as root.
const ROOT_USER: &str = "Basic cm9vdDo=";
/// A command without its own timeout may run this long.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(600);

/// Where one sandbox's envd is and the token it wants.
#[derive(Debug, Clone)]
pub(super) struct Envd {
    pub(super) http: Http,
    /// Base URL (`https://49983-{id}.{domain}` or `E2B_SANDBOX_URL`).
    pub(super) base: String,
    pub(super) id: String,
    pub(super) token: Option<String>,
}

/// One Connect envelope: flag byte, big-endian length, payload.
fn envelope(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl Envd {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .client
            .request(method, format!("{}{path}", self.base))
            .header("E2b-Sandbox-Id", &self.id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string())
            .header("Authorization", ROOT_USER);
        if let Some(t) = &self.token {
            r = r.header("X-Access-Token", t);
        }
        r
    }

    /// An envd answer that is not 2xx, as a typed error. The edge's 502 (a gone, expired or paused
    /// sandbox, or nothing listening on the port) stays an [`Error::Api`] with status 502: the
    /// provider asks the control plane which it is (`E2bProvider::explain_gone`) rather than read
    /// the message.
    async fn error(&self, what: &str, resp: reqwest::Response) -> Error {
        let (status, headers) = (resp.status(), resp.headers().clone());
        let reply = Reply { status, headers, body: resp.bytes().await.unwrap_or_default() };
        let status = status.as_u16();
        let body = reply.json();
        let message = reply.message();
        let code = body.get("code").and_then(Value::as_str).unwrap_or("");
        if status == 401 || code == "unauthenticated" {
            return Error::Auth {
                provider: NAME,
                message: format!("envd of `{}` refused the access token ({message})", self.id),
            };
        }
        self.http.error(&reply, &format!("{what} in `{}`", self.id), None)
    }

    /// Runs `cmd` to completion through `process.Process/Start`.
    pub(super) async fn exec(&self, cmd: &ExecSpec) -> Result<ExecOutput> {
        let Some((program, args)) = cmd.argv.split_first() else {
            return Err(Error::InvalidSpec("exec needs a program".into()));
        };
        let limit = cmd.timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT);
        let mut process = json!({"cmd": program, "args": args, "envs": cmd.env});
        if let Some(cwd) = &cmd.cwd {
            process["cwd"] = json!(cwd);
        }
        let msg = serde_json::to_vec(&json!({"process": process, "stdin": false})).expect("json");
        let run = async {
            let resp = self
                .request(reqwest::Method::POST, "/process.Process/Start")
                .header("Content-Type", "application/connect+json")
                .header("Connect-Protocol-Version", "1")
                .header("Connect-Timeout-Ms", limit.as_millis().to_string())
                .body(envelope(0, &msg))
                .send()
                .await
                .map_err(|e| self.http.transport(e, "running a command", &self.base, limit))?;
            if !resp.status().is_success() {
                return Err(self.error("running a command", resp).await);
            }
            read_process_stream(resp, &self.id).await
        };
        match tokio::time::timeout(limit + CONNECT_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { op: format!("`{}` in {}", cmd.argv.join(" "), self.id), after: limit }),
        }
    }

    /// Uploads `data` to `path` as one file (`POST /files`, `application/octet-stream`, envd ≥ 0.5.7).
    pub(super) async fn upload_file(&self, path: &str, data: ByteStream) -> Result<()> {
        let resp = self
            .request(reqwest::Method::POST, "/files")
            .query(&[("path", path), ("username", "root")])
            .header("Content-Type", "application/octet-stream")
            .timeout(DEFAULT_EXEC_TIMEOUT)
            .body(reqwest::Body::wrap_stream(data))
            .send()
            .await
            .map_err(|e| self.http.transport(e, "uploading a file", &self.base, DEFAULT_EXEC_TIMEOUT))?;
        if !resp.status().is_success() {
            return Err(self.error("uploading a file", resp).await);
        }
        Ok(())
    }
}

/// Reads `start`, `data`, `end` events until the end-stream envelope.
async fn read_process_stream(resp: reqwest::Response, id: &str) -> Result<ExecOutput> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = ExecOutput::default();
    let mut ended = false;
    let mut buf: Vec<u8> = Vec::new();
    let mut stream = resp.bytes_stream();
    let broken = |m: String| Error::Provider { provider: NAME, message: format!("command stream from `{id}`: {m}") };
    loop {
        // Take every complete envelope in the buffer.
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 5 + len {
                break;
            }
            let flags = buf[0];
            let msg: Value = serde_json::from_slice(&buf[5..5 + len]).map_err(|e| broken(format!("bad JSON: {e}")))?;
            buf.drain(..5 + len);
            if flags & 0x02 != 0 {
                if let Some(err) = msg.get("error") {
                    let code = err.get("code").and_then(Value::as_str).unwrap_or("unknown");
                    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
                    return Err(match code {
                        "not_found" => Error::NotFound { sandbox: id.to_owned() },
                        _ => broken(format!("{code}: {message}")),
                    });
                }
                if !ended {
                    return Err(broken("ended without an end event".into()));
                }
                return Ok(out);
            }
            let event = &msg["event"];
            if let Some(data) = event.get("data") {
                for (key, sink) in [("stdout", &mut out.stdout), ("stderr", &mut out.stderr)] {
                    if let Some(s) = data.get(key).and_then(Value::as_str) {
                        sink.extend(b64.decode(s).map_err(|e| broken(format!("bad base64: {e}")))?);
                    }
                }
            } else if let Some(end) = event.get("end") {
                ended = true;
                out.exit_code = match end.get("exitCode") {
                    Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
                    Some(Value::String(s)) => s.parse().unwrap_or(-1),
                    _ => 0,
                };
                if end.get("exited").and_then(Value::as_bool) == Some(false) && end.get("exitCode").is_none() {
                    out.exit_code = -1; // killed by a signal
                }
            }
        }
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(broken(e.to_string())),
            None if ended => return Ok(out),
            None => return Err(broken("closed without an end event".into())),
        }
    }
}
