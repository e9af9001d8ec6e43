//! `daytona`: a sandbox is a Daytona sandbox, driven through its REST control plane and the toolbox
//! API of the daemon inside it (API facts: `shared/providers/daytona.md`).
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use sbx_providers::{Provider, SandboxSpec, daytona::DaytonaProvider};
//! let daytona = DaytonaProvider::from_env()?;    // DAYTONA_API_KEY, DAYTONA_API_URL
//! let sandbox = daytona.create(&SandboxSpec::named("demo")).await?;
//! daytona.destroy(&sandbox.id).await?;
//! # Ok(()) }
//! ```
//!
//! # What a sandbox is
//!
//! - Name `sbx-<name>-<4 hex>`; labels: the spec's, plus [`labels::MANAGED`], [`labels::NAME`],
//!   [`labels::EXPIRES_AT`] (when the spec has a ttl) and [`CREATE_NONCE_LABEL`]. `list` asks the API
//!   for sandboxes carrying `MANAGED` and the wanted labels; sandboxes without `MANAGED` are not sbx's.
//! - `spec.image`: a name with `:` or `/` (`debian:12`, `ghcr.io/x/y`) is an image, built by Daytona
//!   from a one-line Dockerfile (`buildInfo`), and only then are `cpus`/`memory_mb` sent (rounded up to
//!   whole cores and GiB; Daytona fixes a snapshot's resources). Any other name is a snapshot. Without
//!   one: [`DaytonaProvider::with_snapshot`] or `SBX_DAYTONA_SNAPSHOT`, else the organisation's default
//!   snapshot.
//! - Auto-stop after [`DEFAULT_AUTO_STOP_MINUTES`] of inactivity (Daytona's own default of 15 would stop
//!   long agent turns: processes are not activity, requests through the preview link are), auto-archive
//!   after Daytona's default (7 days stopped). `SBX_DAYTONA_AUTO_STOP` / `SBX_DAYTONA_AUTO_ARCHIVE`
//!   (minutes; `0` = never auto-stop / the platform maximum) or the `with_` methods change them.
//!
//! # Bootstrap channel
//!
//! - `exec`: `POST {toolbox}/{id}/process/execute`. That endpoint returns one combined output string,
//!   so the command is wrapped in `sh -c` with stdout and stderr sent to temporary files that come back
//!   base64-encoded (byte-exact, kept apart). Needs `sh`, `mktemp`, `base64` and `env` in the image.
//!   The wrapper script itself travels base64-encoded in one quoted word, so it works whether the
//!   daemon runs the command through a shell or splits it into arguments itself.
//! - `upload`: the tar stream goes as one file through `POST …/files/bulk-upload` (multipart, streamed,
//!   not retried: a stream cannot be replayed) to `/tmp`, then `tar -x` unpacks it under `dest`.
//! - `endpoint(port)`: the preview link (`GET /sandbox/{id}/ports/{port}/preview-url`) with its
//!   `X-Daytona-Preview-Token` header.
//!
//! # Pause is stop
//!
//! `pause` stops the sandbox (disk kept, processes gone, billing for compute stops); `resume` starts it
//! and starts the runtime again: when `exec` runs `sbx-agent daemon start`, the command is also written
//! to `~/.cache/sbx/daytona-autostart.sh` (mode 0700) in the sandbox, and `resume` runs that file. It
//! holds no secret (the runtime gets only its token's SHA-256; the host sends the session credentials
//! over the runtime's API when it next connects). `archive` moves a stopped sandbox to object storage
//! (slower start).
//!
//! # Failures
//!
//! Every request has a timeout; 429, 5xx and connection failures are retried with jittered exponential
//! backoff honouring `Retry-After` ([`RetryPolicy`]). A request that timed out is not retried (it may
//! have been carried out), and `exec` retries only 429 and the proxy's 502/503 (the command did not
//! run), so a command never runs twice. A create is retried only after checking (by its
//! nonce label) that the failed attempt left no sandbox; when it gives up, any sandbox with its nonce is
//! deleted, so a failed create leaves nothing behind. A 401 names `DAYTONA_API_KEY` and
//! `sbx auth login daytona`.

mod client;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

pub use crate::http::RetryPolicy;
use crate::http::{retryable_status, Http, Resend};
use client::Api;

use crate::{
    labels, ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox,
    SandboxSpec, SandboxState,
};

const NAME: &str = "daytona";

/// Env var holding the API key.
pub const ENV_API_KEY: &str = "DAYTONA_API_KEY";
/// Env var overriding [`DEFAULT_API_URL`] (also how tests reach the fake).
pub const ENV_API_URL: &str = "DAYTONA_API_URL";
/// Env var naming the region (`target`) to create sandboxes in.
pub const ENV_TARGET: &str = "DAYTONA_TARGET";
/// Env var naming the snapshot to use when a spec names no image.
pub const ENV_SNAPSHOT: &str = "SBX_DAYTONA_SNAPSHOT";
/// Env var: auto-stop interval in minutes.
pub const ENV_AUTO_STOP: &str = "SBX_DAYTONA_AUTO_STOP";
/// Env var: auto-archive interval in minutes.
pub const ENV_AUTO_ARCHIVE: &str = "SBX_DAYTONA_AUTO_ARCHIVE";
/// Daytona Cloud's API.
pub const DEFAULT_API_URL: &str = "https://app.daytona.io/api";
/// sbx's default auto-stop interval (minutes).
pub const DEFAULT_AUTO_STOP_MINUTES: u32 = 60;
/// The header preview links want.
pub const PREVIEW_TOKEN_HEADER: &str = "X-Daytona-Preview-Token";
/// A label unique to each create call, used to find what a failed create left behind.
pub const CREATE_NONCE_LABEL: &str = "dev.sbx.create-nonce";
/// Where (under `$HOME`) the runtime's start command is kept for `resume`.
pub const AUTOSTART_FILE: &str = ".cache/sbx/daytona-autostart.sh";

/// Limit of ordinary control-plane requests.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit of an upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default limit of an `exec` (the server's own default is 10 s, so one is always sent).
const EXEC_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long create/start/stop may take to reach their state.
const STATE_TIMEOUT: Duration = Duration::from_secs(180);

/// The Daytona provider.
pub struct DaytonaProvider {
    http: Api,
    snapshot: Option<String>,
    target: Option<String>,
    auto_stop: u32,
    auto_archive: Option<u32>,
    /// Toolbox proxy URL per sandbox id.
    toolbox: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for DaytonaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaytonaProvider")
            .field("api_url", &self.http.api_url)
            .field("api_key", &"***")
            .field("snapshot", &self.snapshot)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

impl DaytonaProvider {
    /// A provider for the API at `api_url` (e.g. `https://app.daytona.io/api`) with `api_key`.
    pub fn new(api_url: impl Into<String>, api_key: impl Into<String>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("sbx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Unavailable { provider: NAME, message: format!("HTTP client: {e}") })?;
        let http = Http {
            client,
            provider: NAME,
            key_env: ENV_API_KEY,
            reach_hint: client::REACH_HINT,
            timeout: REQUEST_TIMEOUT,
            // More patient than the default: creates and state changes queue behind others.
            retry: RetryPolicy { attempts: 5, max_delay: Duration::from_secs(30), ..RetryPolicy::default() },
        };
        Ok(Self {
            http: Api { http, api_url: api_url.into(), api_key: api_key.into() },
            snapshot: None,
            target: None,
            auto_stop: DEFAULT_AUTO_STOP_MINUTES,
            auto_archive: None,
            toolbox: Mutex::default(),
        })
    }

    /// From the environment: `DAYTONA_API_KEY` (required), `DAYTONA_API_URL`, `DAYTONA_TARGET`,
    /// `SBX_DAYTONA_SNAPSHOT`, `SBX_DAYTONA_AUTO_STOP`, `SBX_DAYTONA_AUTO_ARCHIVE`.
    pub fn from_env() -> Result<Self> {
        let key = env_nonempty(ENV_API_KEY).ok_or_else(|| Error::Auth {
            provider: NAME,
            message: format!("no API key: set {ENV_API_KEY} or run `sbx auth login daytona`"),
        })?;
        Self::from_env_with_key(key)
    }

    /// Like [`Self::from_env`] with the key from elsewhere (the keyring).
    pub fn from_env_with_key(key: impl Into<String>) -> Result<Self> {
        let url = env_nonempty(ENV_API_URL).unwrap_or_else(|| DEFAULT_API_URL.into());
        let mut p = Self::new(url, key)?;
        p.snapshot = env_nonempty(ENV_SNAPSHOT);
        p.target = env_nonempty(ENV_TARGET);
        let minutes = |name: &str| -> Result<Option<u32>> {
            env_nonempty(name)
                .map(|v| v.trim().parse::<u32>().map_err(|_| Error::InvalidSpec(format!("{name}=`{v}` is not a number of minutes"))))
                .transpose()
        };
        if let Some(m) = minutes(ENV_AUTO_STOP)? {
            p.auto_stop = m;
        }
        p.auto_archive = minutes(ENV_AUTO_ARCHIVE)?;
        Ok(p)
    }

    /// Uses `snapshot` when a spec names no image.
    pub fn with_snapshot(mut self, snapshot: impl Into<String>) -> Self {
        self.snapshot = Some(snapshot.into());
        self
    }

    /// Auto-stop after `minutes` of inactivity (`0` = never).
    pub fn with_auto_stop(mut self, minutes: u32) -> Self {
        self.auto_stop = minutes;
        self
    }

    /// Auto-archive after `minutes` stopped (`0` = the platform maximum).
    pub fn with_auto_archive(mut self, minutes: u32) -> Self {
        self.auto_archive = Some(minutes);
        self
    }

    /// Retries per this policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.http.http.retry = retry;
        self
    }

    /// The API URL in use.
    pub fn api_url(&self) -> &str {
        &self.http.api_url
    }

    /// Archives a stopped sandbox (moves it to object storage; `resume` restores it, more slowly).
    pub async fn archive(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = format!("/sandbox/{id}/archive");
        self.http.send("archive", id, || self.http.api(Method::POST, &path)).await?;
        Ok(())
    }

    fn create_body(&self, spec: &SandboxSpec, name: &str, nonce: &str) -> Result<Value> {
        let mut all = spec.labels.clone();
        all.insert(labels::MANAGED.into(), "true".into());
        all.insert(labels::NAME.into(), spec.name.clone());
        all.insert(CREATE_NONCE_LABEL.into(), nonce.into());
        if let Some(ttl) = spec.ttl {
            all.insert(labels::EXPIRES_AT.into(), (crate::util::unix_now() + ttl.as_secs()).to_string());
        }
        let mut body = json!({
            "name": name,
            "env": spec.env,
            "labels": all,
            "volumes": [],
            "autoStopInterval": self.auto_stop,
        });
        if let Some(m) = self.auto_archive {
            body["autoArchiveInterval"] = json!(m);
        }
        if let Some(t) = &self.target {
            body["target"] = json!(t);
        }
        if spec.network == crate::Network::None {
            body["networkBlockAll"] = json!(true);
        }
        match spec.image.as_deref().filter(|s| !s.is_empty()) {
            Some(image) if image.contains(':') || image.contains('/') => {
                body["buildInfo"] = json!({"dockerfileContent": format!("FROM {image}\n")});
                if let Some(c) = spec.cpus {
                    body["cpu"] = json!(c.ceil().max(1.0) as u64);
                }
                if let Some(m) = spec.memory_mb {
                    body["memory"] = json!(m.div_ceil(1024).max(1));
                }
            }
            Some(snapshot) => body["snapshot"] = json!(snapshot),
            None => {
                if let Some(s) = &self.snapshot {
                    body["snapshot"] = json!(s);
                }
            }
        }
        Ok(body)
    }

    /// Sandboxes carrying `labels` (all pages; the ones being destroyed left out).
    async fn list_raw(&self, labels: &Labels) -> Result<Vec<Value>> {
        let filter = serde_json::to_string(labels).expect("labels serialize");
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("labels", filter.clone()), ("limit", "200".to_owned())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page = self.http.json("list", "", || self.http.api(Method::GET, "/sandbox").query(&query)).await?;
            // Older deployments answer a bare array.
            let items = match &page {
                Value::Array(a) => a.clone(),
                v => v.get("items").and_then(Value::as_array).cloned().unwrap_or_default(),
            };
            out.extend(items.into_iter().filter(|s| !gone(s)));
            cursor = page.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()).map(str::to_owned);
            if cursor.is_none() {
                return Ok(out);
            }
        }
    }

    /// The sandbox's JSON, `None` when missing or being destroyed.
    async fn get_raw(&self, id: &str) -> Result<Option<Value>> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        let path = format!("/sandbox/{id}");
        match self.http.json("get", id, || self.http.api(Method::GET, &path)).await {
            Ok(v) if gone(&v) => Ok(None),
            Ok(v) => {
                if let Some(url) = v.get("toolboxProxyUrl").and_then(Value::as_str).filter(|u| !u.is_empty()) {
                    self.toolbox.lock().unwrap().insert(id.to_owned(), url.to_owned());
                }
                Ok(Some(v))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls until the sandbox is in `want` (failing on error states).
    async fn wait_state(&self, id: &str, want: &str) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + STATE_TIMEOUT;
        let mut delay = Duration::from_millis(100);
        loop {
            let v = self.get_raw(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
            let state = v.get("state").and_then(Value::as_str).unwrap_or("unknown");
            if state == want {
                return Ok(v);
            }
            if matches!(state, "error" | "build_failed") {
                let reason = v.get("errorReason").and_then(Value::as_str).unwrap_or("no reason given");
                return Err(Error::Provider { provider: NAME, message: format!("sandbox `{id}` is in state {state}: {reason}") });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout { op: format!("waiting for daytona sandbox `{id}` to be {want}"), after: STATE_TIMEOUT });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// The toolbox base URL of sandbox `id` (`{toolboxProxyUrl}/{id}`).
    async fn toolbox_base(&self, id: &str) -> Result<String> {
        check_id(id)?;
        let cached = self.toolbox.lock().unwrap().get(id).cloned();
        let proxy = match cached {
            Some(u) => u,
            None => {
                let v = self.get_raw(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
                match v.get("toolboxProxyUrl").and_then(Value::as_str).filter(|u| !u.is_empty()) {
                    Some(u) => u.to_owned(),
                    None => {
                        let path = format!("/sandbox/{id}/toolbox-proxy-url");
                        let v = self.http.json("toolbox-proxy-url", id, || self.http.api(Method::GET, &path)).await?;
                        let u = v.get("url").and_then(Value::as_str).unwrap_or_default().to_owned();
                        self.toolbox.lock().unwrap().insert(id.to_owned(), u.clone());
                        u
                    }
                }
            }
        };
        Ok(format!("{}/{id}", proxy.trim_end_matches('/')))
    }

    /// Runs a shell `command` through the toolbox; returns (exit code, combined output).
    async fn execute(&self, id: &str, command: &str, timeout: Duration) -> Result<(i64, String)> {
        let url = format!("{}/process/execute", self.toolbox_base(id).await?);
        let secs = timeout.as_secs().max(1);
        let body = json!({"command": command, "timeout": secs});
        // A command is not idempotent: only answers that say it did not run are retried (429, and
        // 502/503 from the proxy while the sandbox changes state), never a timeout.
        let make = || self.http.url(Method::POST, &url).json(&body).timeout(timeout + Duration::from_secs(5));
        let timed_out = || Error::Timeout { op: format!("exec in daytona sandbox `{id}`"), after: timeout };
        let reply = match self.http.http.send("execute", make, client::execute_not_run, Resend::Never).await {
            Ok(r) => r,
            Err(Error::Timeout { .. }) => return Err(timed_out()),
            Err(e) => return Err(e),
        };
        match reply.status.as_u16() {
            200..=299 => {}
            // The toolbox's own limit on the command ran out.
            408 => return Err(timed_out()),
            // The proxy refuses a sandbox that is not started (stopped, archived): say so.
            400 => {
                let state = self.get_raw(id).await.ok().flatten().and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_owned));
                return Err(match state {
                    Some(state) if state != "started" => Error::NotRunning { sandbox: id.to_owned(), state },
                    _ => self.http.http.error(&reply, "execute", Some(id)),
                });
            }
            _ => return Err(self.http.http.error(&reply, "execute", Some(id))),
        }
        let v = client::json_of(&reply, "execute")?;
        let code = v.get("exitCode").and_then(Value::as_i64).unwrap_or(-1);
        Ok((code, v.get("result").and_then(Value::as_str).unwrap_or_default().to_owned()))
    }

    /// Uploads `body` as the file `path` (multipart `files[0]`, streamed).
    async fn upload_file(&self, id: &str, path: &str, body: ByteStream) -> Result<()> {
        let url = format!("{}/files/bulk-upload", self.toolbox_base(id).await?);
        let boundary = format!("sbx-{}", crate::random_hex(12));
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n{path}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"files[0].file\"; filename=\"{path}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
            .chain(body)
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
        let req = self
            .http
            .url(Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .timeout(UPLOAD_TIMEOUT)
            .body(reqwest::Body::wrap_stream(stream));
        let reply = self.http.http.once("upload", req).await?;
        self.http.http.ok(reply, "upload", Some(id)).map(drop)
    }
}

/// Ids go into URL paths: refuse anything that is not a plain name.
fn check_id(id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(())
    } else {
        Err(Error::NotFound { sandbox: id.to_owned() })
    }
}

fn gone(v: &Value) -> bool {
    matches!(v.get("state").and_then(Value::as_str), Some("destroyed" | "destroying"))
}

fn state_of(s: &str) -> SandboxState {
    match s {
        "started" => SandboxState::Running,
        "creating" | "starting" | "restoring" | "pending_build" | "building_snapshot" | "pulling_snapshot" | "resuming" => {
            SandboxState::Creating
        }
        "stopped" | "stopping" | "archived" | "archiving" | "paused" | "pausing" => SandboxState::Paused,
        "destroyed" | "destroying" | "error" | "build_failed" => SandboxState::Stopped,
        _ => SandboxState::Unknown,
    }
}

fn to_sandbox(v: &Value) -> Sandbox {
    let labels: Labels = v
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    Sandbox {
        id: v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        provider: NAME.into(),
        labels,
        state: state_of(v.get("state").and_then(Value::as_str).unwrap_or("unknown")),
        image: v.get("snapshot").and_then(Value::as_str).map(str::to_owned),
        created_at: v.get("createdAt").and_then(Value::as_str).and_then(crate::util::parse_rfc3339),
    }
}

/// `s` quoted for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell command that runs `cmd` (env, cwd) and prints its stdout and stderr base64-encoded on two
/// lines, exiting with its code.
fn exec_script(cmd: &ExecSpec) -> String {
    let mut inner = String::new();
    if let Some(cwd) = &cmd.cwd {
        inner.push_str(&format!("cd {} && ", sh_quote(cwd)));
    }
    inner.push_str("exec env");
    for (k, v) in &cmd.env {
        inner.push(' ');
        inner.push_str(&sh_quote(&format!("{k}={v}")));
    }
    for a in &cmd.argv {
        inner.push(' ');
        inner.push_str(&sh_quote(a));
    }
    let mut script = String::new();
    let is_daemon_start = cmd.argv.get(1).map(String::as_str) == Some("daemon") && cmd.argv.get(2).map(String::as_str) == Some("start");
    if is_daemon_start {
        // Kept for `resume` (see the module docs). It holds no secret: the bootstrap passes only the
        // SHA-256 of the runtime's token, and the session credentials go over the runtime's API.
        let file = format!("#!/bin/sh\n({inner}) >/dev/null 2>&1 </dev/null\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(file);
        script.push_str(&format!(
            "f=\"$HOME/{AUTOSTART_FILE}\"; mkdir -p \"$(dirname \"$f\")\" && (umask 077; printf %s {b64} | base64 -d > \"$f\") && chmod 700 \"$f\"\n"
        ));
    }
    script.push_str(&format!(
        "o=$(mktemp) && e=$(mktemp) || exit 125\n({inner}) >\"$o\" 2>\"$e\" </dev/null\nc=$?\n\
         base64 -w0 \"$o\"; echo; base64 -w0 \"$e\"; echo\nrm -f \"$o\" \"$e\"\nexit $c\n"
    ));
    sh_command(&script)
}

/// The `process/execute` command that runs `script` with `sh`. The daemon may hand the command to a
/// shell, or split it into arguments itself (on spaces, with `'`/`"` grouping and no backslash escapes)
/// and run those without one: so the script travels base64-encoded (no space, quote or backslash) in
/// one single-quoted word, which both ways read alike.
fn sh_command(script: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(script);
    format!("sh -c 'eval \"$(printf %s {b64} | base64 -d)\"'")
}

/// Splits the two base64 lines [`exec_script`] prints.
fn decode_output(result: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut lines = result.lines();
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = b64.decode(lines.next()?.trim()).ok()?;
    let err = b64.decode(lines.next().unwrap_or("").trim()).ok()?;
    Some((out, err))
}

#[async_trait::async_trait]
impl Provider for DaytonaProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        crate::registry::DAYTONA.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let name = crate::util::fresh_name(&spec.name, 40);
        let nonce = crate::random_hex(8);
        let body = self.create_body(spec, &name, &nonce)?;
        let nonce_labels = Labels::from([(CREATE_NONCE_LABEL.to_owned(), nonce.clone())]);
        let http = &self.http.http;
        let mut attempt = 0;
        // Not `send`: between tries, a create looks for what the failed try may have made.
        let created: Result<Value> = loop {
            let last = attempt + 1 >= http.retry.attempts;
            let req = self.http.api(Method::POST, "/sandbox").json(&body).timeout(STATE_TIMEOUT);
            let (err, retry_after) = match http.once("create", req).await {
                Ok(r) if r.status.is_success() => break client::json_of(&r, "create"),
                Ok(r) if retryable_status(r.status) => (http.error(&r, "create", None), r.retry_after()),
                Ok(r) if r.status == reqwest::StatusCode::NOT_FOUND => {
                    let image = spec.image.clone().or_else(|| self.snapshot.clone()).unwrap_or_else(|| "(default snapshot)".into());
                    break Err(Error::ImageNotFound {
                        image,
                        hint: format!(
                            "Daytona says: {}. Create the snapshot (templates/daytona/build.sh --push) or name an image with a tag (`debian:12`)",
                            r.message()
                        ),
                    });
                }
                Ok(r) => break Err(http.error(&r, "create", None)),
                Err(e) => (e, None),
            };
            // A 5xx or a lost answer may still have made it: adopt that one rather than make a second.
            if !matches!(err, Error::RateLimited { .. }) {
                if let Ok(found) = self.list_raw(&nonce_labels).await {
                    if let Some(v) = found.into_iter().next() {
                        break Ok(v);
                    }
                }
            }
            match http.retry.wait(attempt, retry_after) {
                Some(wait) if !last => tokio::time::sleep(wait).await,
                _ => break Err(err),
            }
            attempt += 1;
        };
        let created = match created {
            Ok(v) => v,
            Err(e) => {
                // Nothing may be left behind by a create that failed.
                if let Ok(found) = self.list_raw(&nonce_labels).await {
                    for v in found {
                        if let Some(id) = v.get("id").and_then(Value::as_str) {
                            let _ = self.destroy(id).await;
                        }
                    }
                }
                return Err(e);
            }
        };
        let id = created.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(url) = created.get("toolboxProxyUrl").and_then(Value::as_str).filter(|u| !u.is_empty()) {
            self.toolbox.lock().unwrap().insert(id.clone(), url.to_owned());
        }
        if created.get("state").and_then(Value::as_str) == Some("started") {
            return Ok(to_sandbox(&created));
        }
        match self.wait_state(&id, "started").await {
            Ok(v) => Ok(to_sandbox(&v)),
            Err(e) => {
                let _ = self.destroy(&id).await;
                Err(e)
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        Ok(self.get_raw(id).await?.as_ref().map(to_sandbox))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut want = labels.clone();
        want.insert(labels::MANAGED.into(), "true".into());
        let mut out: Vec<Sandbox> = self
            .list_raw(&want)
            .await?
            .iter()
            .map(to_sandbox)
            // The API filters already; this keeps a deployment that ignores `labels` honest.
            .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        if cmd.argv.is_empty() {
            return Err(Error::InvalidSpec("exec needs a program".into()));
        }
        let (code, result) = self.execute(id, &exec_script(cmd), cmd.timeout.unwrap_or(EXEC_TIMEOUT)).await?;
        match decode_output(&result) {
            Some((stdout, stderr)) => Ok(ExecOutput { exit_code: code, stdout, stderr }),
            // The wrapper itself failed (no sh/mktemp/base64): pass on what the shell said.
            None => Ok(ExecOutput { exit_code: code, stdout: Vec::new(), stderr: result.into_bytes() }),
        }
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        let tmp = format!("/tmp/sbx-upload-{}.tar", crate::random_hex(8));
        self.upload_file(id, &tmp, archive).await?;
        let script = format!(
            "mkdir -p {d} && tar -xf {t} -C {d} --no-same-owner; c=$?; rm -f {t}; exit $c",
            d = sh_quote(dest),
            t = sh_quote(&tmp)
        );
        let (code, out) = self.execute(id, &sh_command(&script), EXEC_TIMEOUT).await?;
        if code != 0 {
            return Err(Error::Provider { provider: NAME, message: format!("unpacking into {dest} failed (exit {code}): {}", out.trim()) });
        }
        Ok(())
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        check_id(id)?;
        let path = format!("/sandbox/{id}/ports/{port}/preview-url");
        let v = self.http.json("preview-url", id, || self.http.api(Method::GET, &path)).await?;
        let url = v.get("url").and_then(Value::as_str).unwrap_or_default().trim_end_matches('/').to_owned();
        if url.is_empty() {
            return Err(Error::Provider { provider: NAME, message: format!("no preview URL for port {port} of `{id}`") });
        }
        let mut ep = Endpoint::http(url);
        if let Some(token) = v.get("token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            ep.headers.push((PREVIEW_TOKEN_HEADER.into(), token.into()));
        }
        ep.headers.push(("X-Daytona-Skip-Preview-Warning".into(), "true".into()));
        Ok(ep)
    }

    async fn pause(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = format!("/sandbox/{id}/stop");
        self.http.send("stop", id, || self.http.api(Method::POST, &path).timeout(STATE_TIMEOUT)).await?;
        self.wait_state(id, "stopped").await?;
        Ok(())
    }

    async fn resume(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = format!("/sandbox/{id}/start");
        self.http.send("start", id, || self.http.api(Method::POST, &path).timeout(STATE_TIMEOUT)).await?;
        self.wait_state(id, "started").await?;
        let again = format!("f=\"$HOME/{AUTOSTART_FILE}\"; if [ -x \"$f\" ]; then \"$f\"; fi");
        let (code, out) = self.execute(id, &sh_command(&again), Duration::from_secs(60)).await?;
        if code != 0 {
            tracing::warn!(sandbox = id, code, output = out.trim(), "daytona: restarting the runtime after resume failed");
        }
        Ok(())
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        if check_id(id).is_err() {
            return Ok(());
        }
        let path = format!("/sandbox/{id}");
        match self.http.send("delete", id, || self.http.api(Method::DELETE, &path)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.toolbox.lock().unwrap().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_round_trips() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let result = format!("{}\n{}\n", b64.encode([0u8, 255, 10]), b64.encode("oops\n"));
        assert_eq!(decode_output(&result), Some((vec![0, 255, 10], b"oops\n".to_vec())));
        assert_eq!(decode_output("\n\n"), Some((vec![], vec![])));
        assert_eq!(decode_output("sh: base64: not found"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        let s = exec_script(&ExecSpec::new(["echo", "a b"]).env("K", "v'1"));
        assert!(s.starts_with("sh -c '"), "{s}");
        // One single-quoted word with nothing a splitting daemon could cut or unescape differently.
        let word = s.strip_prefix("sh -c '").and_then(|w| w.strip_suffix('\'')).unwrap();
        assert!(!word.contains(['\'', '\\', '\n']), "{word}");
    }

    #[test]
    fn images_and_snapshots() {
        let p = DaytonaProvider::new("http://x/api", "k").unwrap();
        let mut spec = SandboxSpec::named("a");
        spec.image = Some("debian:12".into());
        spec.cpus = Some(1.5);
        spec.memory_mb = Some(1500);
        let b = p.create_body(&spec, "n", "x").unwrap();
        assert_eq!(b["buildInfo"]["dockerfileContent"], "FROM debian:12\n");
        assert_eq!((b["cpu"].as_u64(), b["memory"].as_u64()), (Some(2), Some(2)));
        spec.image = Some("my-snapshot".into());
        let b = p.create_body(&spec, "n", "x").unwrap();
        assert_eq!(b["snapshot"], "my-snapshot");
        assert!(b.get("cpu").is_none());
        assert_eq!(b["labels"][labels::MANAGED], "true");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("0b1c-2d").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id("").is_err());
    }
}
