//! `vercel`: a sandbox is a [Vercel Sandbox](https://vercel.com/docs/vercel-sandbox) (a Firecracker
//! microVM), driven through the REST API the current official SDK speaks (`POST v3/sandboxes`, the
//! rest under `v2/sandboxes/…`; API facts: `shared/providers/vercel.md`).
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use sbx_providers::{Provider, SandboxSpec, vercel::VercelProvider};
//! let vercel = VercelProvider::from_env()?;   // VERCEL_TOKEN + VERCEL_TEAM_ID + VERCEL_PROJECT_ID, or VERCEL_OIDC_TOKEN
//! let sandbox = vercel.create(&SandboxSpec::named("demo")).await?;
//! vercel.destroy(&sandbox.id).await?;
//! # Ok(()) }
//! ```
//!
//! # Mapping
//!
//! - A sandbox's id is its Vercel *name* (`sbx-<name>-<4 hex>`); commands and files address its
//!   current *session*, looked up from the name (`currentSessionId`) and remembered.
//! - `create` → `POST v3/sandboxes` with `projectId`, `name`, `ports` (the runtime's port 2468 and the
//!   spec's; Vercel routes at most 4, declared at create), `timeout` (the spec's ttl, else
//!   `SBX_VERCEL_TIMEOUT` seconds, else [`DEFAULT_TIMEOUT`]), `resources` (`vcpus`, rounded up to cover
//!   the spec's cpus and memory, with Vercel's 2048 MB per vCPU), `env`, `tags` (the spec's labels plus
//!   sbx's), `image` (the spec's, else `SBX_VERCEL_IMAGE`, else Vercel's default), `region`
//!   (`VERCEL_REGION`) and `networkPolicy: deny-all` for `Network::None`. A `pending` sandbox is polled
//!   every 0.5 s until `running`, as the SDK does.
//! - `get` → `GET v2/sandboxes/{name}`; `list` → `GET v2/sandboxes?tags=dev.sbx.managed:true` (the
//!   API filters by one tag; the other labels are matched here), paginated by cursor.
//! - `exec` → start the command detached (`POST …/sessions/{sid}/cmd`), wait for it
//!   (`GET …/cmd/{id}?wait=true`), then read its logs (`GET …/cmd/{id}/logs`, NDJSON). Output records
//!   are text, so the command runs under a small `sh` wrapper that returns stdout and stderr
//!   base64-encoded (byte-exact, kept apart). `ExecSpec::timeout` is sent as the command's `timeout`
//!   (Vercel SIGKILLs it) and bounds the wait. The bootstrap's `sbx-agent daemon start …` is the
//!   exception: it runs as `sbx-agent server …`, a detached command Vercel keeps running (after killing
//!   a runtime the session still runs), and `exec` returns at once.
//! - `upload` → `POST …/fs/mkdir` of `dest`, then the tar stream gzip-compressed on the fly to
//!   `POST …/fs/write` with `x-cwd: dest` (the archive's entries unpack under it).
//! - `endpoint(port)` → the route Vercel made for the port (`routes[].url`, public HTTPS, no header:
//!   the runtime checks its own token).
//! - `destroy` → stop the session (`POST …/sessions/{sid}/stop`), then `DELETE v2/sandboxes/{name}`
//!   (404 is success).
//! - `pause`/`resume`: unsupported (a stopped Vercel session keeps nothing running).
//! - [`VercelProvider::keep_alive`] extends the session's timeout (`POST …/extend-timeout`) so that
//!   it ends no sooner than a given time from now; the CLI calls it on every command.
//!
//! # Failures
//!
//! Every request has a timeout; idempotent ones are retried on 429, 5xx and connection failures with
//! jittered exponential backoff honouring `Retry-After` ([`RetryPolicy`]). Starting a command is
//! retried only on 429, so a command never runs twice. A failed create is retried only after checking
//! that the failed attempt made no sandbox of its (unique) name, and when it gives up, that name is
//! deleted, so nothing is left behind. A 401/403 names `VERCEL_TOKEN`/`VERCEL_OIDC_TOKEN` and
//! `sbx auth login vercel`.

mod client;
mod commands;
pub mod credentials;
mod io;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

pub use crate::http::RetryPolicy;
use crate::http::{retryable_status, Http};
use client::Api;
pub use credentials::Credentials;

use crate::{
    labels, ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox,
    SandboxSpec, SandboxState,
};

const NAME: &str = "vercel";

/// Env var overriding [`DEFAULT_API_URL`] (the SDK has none; tests point it at the fake).
pub const ENV_API_URL: &str = "SBX_VERCEL_API_URL";
/// Env var naming the image when a spec names none (else Vercel's default image).
pub const ENV_IMAGE: &str = "SBX_VERCEL_IMAGE";
/// Env var with the default session timeout in seconds.
pub const ENV_TIMEOUT: &str = "SBX_VERCEL_TIMEOUT";
/// Env var naming the region to create sandboxes in (the SDK's too).
pub const ENV_REGION: &str = "VERCEL_REGION";
/// The API the official SDK talks to.
pub const DEFAULT_API_URL: &str = "https://vercel.com/api";
/// Session timeout when neither the spec nor `SBX_VERCEL_TIMEOUT` gives one: the longest every plan
/// allows (Hobby's cap); `keep_alive` extends it on use.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// Ports Vercel routes per sandbox.
pub const MAX_PORTS: usize = 4;
/// Memory Vercel gives each vCPU (MB).
pub const MB_PER_VCPU: u64 = 2048;

/// Limit of ordinary requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit of an upload (the SDK's file-transfer default).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default limit of an `exec`.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a new sandbox may stay `pending`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(180);

/// What sbx remembers of a sandbox between calls: its session and routes.
#[derive(Debug, Clone)]
struct Info {
    session: String,
    routes: Vec<(u16, String)>,
}

/// The Vercel provider. Cheap to clone.
#[derive(Clone)]
pub struct VercelProvider {
    api: Api,
    image: Option<String>,
    region: Option<String>,
    timeout: Duration,
    known: Arc<Mutex<HashMap<String, Info>>>,
}

impl std::fmt::Debug for VercelProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelProvider")
            .field("api_url", &self.api.base)
            .field("credentials", &self.api.creds)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl VercelProvider {
    /// A provider for `credentials`, with the API URL, image, region and timeout from the environment.
    pub fn new(credentials: Credentials) -> Result<Self> {
        let timeout = match env(ENV_TIMEOUT) {
            Some(t) => Duration::from_secs(
                t.parse().map_err(|_| Error::InvalidSpec(format!("{ENV_TIMEOUT}=`{t}` is not a number of seconds")))?,
            ),
            None => DEFAULT_TIMEOUT,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sbx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Unavailable { provider: NAME, message: format!("HTTP client: {e}") })?;
        let http = Http {
            client,
            provider: NAME,
            key_env: "VERCEL_TOKEN (or VERCEL_OIDC_TOKEN)",
            reach_hint: client::REACH_HINT,
            timeout: REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
        };
        let base = env(ENV_API_URL).unwrap_or_else(|| DEFAULT_API_URL.into()).trim_end_matches('/').to_owned();
        Ok(Self {
            api: Api { http, base, creds: credentials },
            image: env(ENV_IMAGE),
            region: env(ENV_REGION),
            timeout,
            known: Arc::default(),
        })
    }

    /// Credentials from the environment, in the SDK's order (see [`credentials`]).
    pub fn from_env() -> Result<Self> {
        Self::new(Credentials::from_env()?)
    }

    /// `token` (from `sbx auth login`, say) with the team and project from the environment or the
    /// token's claims.
    pub fn from_env_with_token(token: impl Into<String>) -> Result<Self> {
        Self::new(Credentials::from_token(token)?)
    }

    /// Uses `url` as the API base (e.g. `https://vercel.com/api`).
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api.base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Uses `image` when a spec names none.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Uses `timeout` when a spec has no ttl.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries requests by `policy`.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.api.http.retry = policy;
        self
    }

    /// The session timeout used when a spec has no ttl.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The API base URL in use.
    pub fn api_url(&self) -> &str {
        &self.api.base
    }

    /// Extends sandbox `id`'s session so that it ends no sooner than `at_least` from now (Vercel's
    /// `extend-timeout` adds to the timeout; nothing is sent when enough is left). Returns the
    /// extension asked for.
    pub async fn keep_alive(&self, id: &str, at_least: Duration) -> Result<Duration> {
        let v = self.fetch(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
        let session = v.get("session").filter(|s| s.is_object()).unwrap_or(&Value::Null);
        let sid = session_id(&v).ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
        let ms = |k: &str| session.get(k).or_else(|| v.pointer(&format!("/sandbox/{k}"))).and_then(Value::as_u64);
        let now = now_ms();
        let started = ms("startedAt").or_else(|| ms("requestedAt")).unwrap_or(now);
        let ends = started + ms("timeout").unwrap_or(0);
        let want = now + u64::try_from(at_least.as_millis()).unwrap_or(u64::MAX);
        if ends >= want {
            return Ok(Duration::ZERO);
        }
        let extra = want - ends;
        let path = format!("v2/sandboxes/sessions/{sid}/extend-timeout");
        let body = json!({"duration": extra});
        self.api.json("extend timeout", Some(id), || self.api.req(Method::POST, &path).json(&body)).await?;
        Ok(Duration::from_millis(extra))
    }

    /// `GET v2/sandboxes/{name}` (the envelope), `None` when there is no such sandbox. Remembers its
    /// session and routes.
    async fn fetch(&self, id: &str) -> Result<Option<Value>> {
        if check_name(id).is_err() {
            return Ok(None);
        }
        let path = format!("v2/sandboxes/{id}");
        let project = [("projectId", self.api.creds.project_id.as_str())];
        match self.api.json("get", Some(id), || self.api.req(Method::GET, &path).query(&project)).await {
            Ok(v) => {
                self.remember(id, &v);
                Ok(Some(v))
            }
            Err(e) if e.is_not_found() => {
                self.known.lock().expect("known").remove(id);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn remember(&self, id: &str, envelope: &Value) {
        let Some(session) = session_id(envelope) else { return };
        let routes = envelope
            .get("routes")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| {
                        let port = u16::try_from(r.get("port")?.as_u64()?).ok()?;
                        Some((port, r.get("url")?.as_str()?.trim_end_matches('/').to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.known.lock().expect("known").insert(id.to_owned(), Info { session, routes });
    }

    /// The current session and routes of sandbox `id` (from memory, else the API).
    async fn info(&self, id: &str) -> Result<Info> {
        check_name(id)?;
        let known = self.known.lock().expect("known").get(id).cloned();
        if let Some(i) = known {
            return Ok(i);
        }
        self.fetch(id).await?;
        self.known.lock().expect("known").get(id).cloned().ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })
    }

    fn create_body(&self, spec: &SandboxSpec, name: &str) -> Result<Value> {
        let mut tags = spec.labels.clone();
        tags.insert(labels::MANAGED.into(), "true".into());
        tags.insert(labels::NAME.into(), spec.name.clone());
        if let Some(ttl) = spec.ttl {
            tags.insert(labels::EXPIRES_AT.into(), (crate::util::unix_now() + ttl.as_secs()).to_string());
        }
        let mut ports: Vec<u16> = spec.ports.clone();
        ports.push(sbx_agent::DEFAULT_PORT);
        ports.sort_unstable();
        ports.dedup();
        if ports.len() > MAX_PORTS {
            return Err(Error::InvalidSpec(format!(
                "Vercel routes at most {MAX_PORTS} ports per sandbox, the runtime's {} included; asked for {ports:?}",
                sbx_agent::DEFAULT_PORT
            )));
        }
        let timeout = spec.ttl.unwrap_or(self.timeout);
        let mut body = json!({
            "projectId": self.api.creds.project_id,
            "name": name,
            "ports": ports,
            "timeout": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            "env": spec.env,
            "tags": tags,
        });
        if let Some(image) = spec.image.as_ref().or(self.image.as_ref()).filter(|i| !i.is_empty()) {
            body["image"] = json!(image);
        }
        if let Some(region) = &self.region {
            body["region"] = json!(region);
        }
        if spec.cpus.is_some() || spec.memory_mb.is_some() {
            let by_cpu = spec.cpus.map(|c| c.max(1.0).ceil() as u64).unwrap_or(1);
            let by_mem = spec.memory_mb.map(|m| m.div_ceil(MB_PER_VCPU)).unwrap_or(1);
            let vcpus = by_cpu.max(by_mem).max(1);
            body["resources"] = json!({"vcpus": vcpus, "memory": vcpus * MB_PER_VCPU});
        }
        if spec.network == crate::Network::None {
            body["networkPolicy"] = json!({"mode": "deny-all"});
        }
        Ok(body)
    }

    /// Polls a `pending` sandbox until it runs (the SDK's 0.5 s), failing on a terminal state.
    async fn wait_running(&self, id: &str) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
        loop {
            let v = self.fetch(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
            match status_of(&v) {
                "running" => return Ok(v),
                "pending" | "stopping" | "snapshotting" | "" => {}
                other => {
                    return Err(Error::Provider { provider: NAME, message: format!("sandbox `{id}` did not start: it is {other}") })
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout { op: format!("waiting for Vercel sandbox `{id}` to run"), after: CREATE_TIMEOUT });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Names go into URL paths: refuse anything that is not a plain name.
fn check_name(id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(())
    } else {
        Err(Error::NotFound { sandbox: id.to_owned() })
    }
}

/// The current session of an envelope (or a bare sandbox object).
fn session_id(v: &Value) -> Option<String> {
    v.pointer("/session/id")
        .or_else(|| v.pointer("/sandbox/currentSessionId"))
        .or_else(|| v.get("currentSessionId"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The status of an envelope: the session's when present (as the SDK reads it), else the sandbox's.
fn status_of(v: &Value) -> &str {
    v.pointer("/session/status").or_else(|| v.pointer("/sandbox/status")).and_then(Value::as_str).unwrap_or("")
}

fn state_of(s: &str) -> SandboxState {
    match s {
        "running" => SandboxState::Running,
        "pending" => SandboxState::Creating,
        "stopping" | "stopped" | "failed" | "aborted" | "snapshotting" => SandboxState::Stopped,
        _ => SandboxState::Unknown,
    }
}

/// A sandbox object (`sandbox` of an envelope, or an entry of a list) with its status.
fn to_sandbox(sb: &Value, status: &str) -> Sandbox {
    let labels: Labels = sb
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    Sandbox {
        id: sb.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        provider: NAME.into(),
        labels,
        state: state_of(status),
        image: sb.get("image").and_then(Value::as_str).map(str::to_owned),
        created_at: sb.get("createdAt").and_then(Value::as_u64).map(|ms| ms / 1000),
    }
}

fn from_envelope(v: &Value) -> Sandbox {
    to_sandbox(v.get("sandbox").unwrap_or(&Value::Null), status_of(v))
}

#[async_trait::async_trait]
impl Provider for VercelProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        crate::registry::VERCEL.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let name = crate::util::fresh_name(&spec.name, 40).to_ascii_lowercase();
        let body = self.create_body(spec, &name)?;
        let http = &self.api.http;
        let mut attempt = 0;
        // Not `send`: between tries, a create looks for what the failed try may have made (its name
        // is unique to this call, so a sandbox of that name is ours).
        let created: Result<Value> = loop {
            let last = attempt + 1 >= http.retry.attempts;
            let req = self.api.req(Method::POST, "v3/sandboxes").json(&body).timeout(CREATE_TIMEOUT);
            let (err, retry_after) = match http.once("create", req).await {
                Ok(r) if r.status.is_success() => break client::json_of(&r, "create"),
                Ok(r) if retryable_status(r.status) => {
                    let retry_after = r.retry_after();
                    (self.api.ok(r, "create", None).err(), retry_after)
                }
                Ok(r) => break self.api.ok(r, "create", None).and_then(|r| client::json_of(&r, "create")),
                Err(e) => (Some(e), None),
            };
            let err = err.unwrap_or_else(|| Error::Provider { provider: NAME, message: "create failed".into() });
            if !matches!(err, Error::RateLimited { .. }) {
                if let Ok(Some(v)) = self.fetch(&name).await {
                    break Ok(v);
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
                let _ = self.destroy(&name).await;
                return Err(e);
            }
        };
        self.remember(&name, &created);
        if status_of(&created) == "running" {
            return Ok(from_envelope(&created));
        }
        match self.wait_running(&name).await {
            Ok(v) => Ok(from_envelope(&v)),
            Err(e) => {
                let _ = self.destroy(&name).await;
                Err(e)
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        Ok(self.fetch(id).await?.as_ref().map(from_envelope))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut want = labels.clone();
        want.insert(labels::MANAGED.into(), "true".into());
        let project = self.api.creds.project_id.clone();
        let tag = format!("{}:true", labels::MANAGED);
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("project", project.clone()), ("limit", "100".to_owned()), ("tags", tag.clone())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let v = self.api.json("list", None, || self.api.req(Method::GET, "v2/sandboxes").query(&query)).await?;
            for sb in v.get("sandboxes").and_then(Value::as_array).into_iter().flatten() {
                let s = to_sandbox(sb, sb.get("status").and_then(Value::as_str).unwrap_or(""));
                if want.iter().all(|(k, v)| s.labels.get(k) == Some(v)) {
                    out.push(s);
                }
            }
            cursor = v.pointer("/pagination/next").and_then(Value::as_str).filter(|c| !c.is_empty()).map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        if cmd.argv.is_empty() {
            return Err(Error::InvalidSpec("exec needs a program".into()));
        }
        let info = self.info(id).await?;
        if commands::is_daemon_start(&cmd.argv) {
            return self.start_runtime(id, &info.session, cmd).await;
        }
        let limit = cmd.timeout.unwrap_or(EXEC_TIMEOUT);
        let started = tokio::time::Instant::now();
        let cmd_id = self.start_command(id, &info.session, cmd, limit).await?;
        // The wait itself gets some slack past the command's own limit (which Vercel enforces).
        let wait = limit + Duration::from_secs(30);
        let (code, logs) = match tokio::time::timeout(wait, self.finish_command(id, &info.session, &cmd_id, wait)).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout { op: format!("{NAME} exec {:?}", cmd.argv[0]), after: limit }),
        };
        if code == 137 && started.elapsed() >= limit {
            return Err(Error::Timeout { op: format!("{NAME} exec {:?}", cmd.argv[0]), after: limit });
        }
        match io::decode_output(&logs.stdout) {
            Some((stdout, stderr)) => Ok(ExecOutput { exit_code: code, stdout, stderr }),
            // The wrapper itself failed (no sh/mktemp/base64): pass on what was said.
            None => Ok(ExecOutput { exit_code: code, stdout: logs.stdout, stderr: logs.stderr }),
        }
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        let info = self.info(id).await?;
        let sid = info.session;
        let mkdir = format!("v2/sandboxes/sessions/{sid}/fs/mkdir");
        let body = json!({"path": dest, "recursive": true});
        self.api.send("mkdir", Some(id), || self.api.req(Method::POST, &mkdir).json(&body)).await?;
        // Not retried: a stream cannot be replayed.
        let req = self
            .api
            .req(Method::POST, &format!("v2/sandboxes/sessions/{sid}/fs/write"))
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .header("x-cwd", dest)
            .timeout(UPLOAD_TIMEOUT)
            .body(reqwest::Body::wrap_stream(io::gzip_stream(archive)));
        let reply = self.api.http.once("upload", req).await?;
        self.api.ok(reply, "upload", Some(id)).map(drop)
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        let mut info = self.info(id).await?;
        if !info.routes.iter().any(|(p, _)| *p == port) {
            // Remembered from before the routes were known (or stale): ask again.
            self.fetch(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
            info = self.info(id).await?;
        }
        match info.routes.iter().find(|(p, _)| *p == port) {
            Some((_, url)) => Ok(Endpoint::http(url.clone())),
            None => Err(Error::InvalidSpec(format!(
                "port {port} of Vercel sandbox `{id}` has no route: Vercel routes only the ports named at create \
                 (`sbx up --port {port}`)"
            ))),
        }
    }

    async fn pause(&self, _id: &str) -> Result<()> {
        Err(Error::Unsupported { op: "pause", provider: NAME })
    }

    async fn resume(&self, _id: &str) -> Result<()> {
        Err(Error::Unsupported { op: "resume", provider: NAME })
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        if check_name(id).is_err() {
            return Ok(());
        }
        let known = self.known.lock().expect("known").get(id).map(|i| i.session.clone());
        let sid = match known {
            Some(s) => Some(s),
            None => match self.fetch(id).await {
                Ok(Some(v)) => session_id(&v),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        // Stop the session first (as the SDK's context manager does), so nothing keeps running and
        // billing while the sandbox is deleted; a session that already ended is fine.
        if let Some(sid) = sid {
            let path = format!("v2/sandboxes/sessions/{sid}/stop");
            match self.api.send("stop", Some(id), || self.api.req(Method::POST, &path).json(&json!({}))).await {
                Ok(_) => {}
                Err(e @ Error::Auth { .. }) => return Err(e),
                Err(e) => tracing::debug!(sandbox = id, error = %e, "vercel: stopping the session before delete"),
            }
        }
        let path = format!("v2/sandboxes/{id}");
        let project = [("projectId", self.api.creds.project_id.as_str())];
        match self.api.send("delete", Some(id), || self.api.req(Method::DELETE, &path).query(&project)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.known.lock().expect("known").remove(id);
        Ok(())
    }

    async fn runtime_layout(&self, _id: &str) -> Result<crate::bootstrap::RuntimeLayout> {
        // Commands run as an unprivileged user: the binary goes where that user may write.
        Ok(crate::bootstrap::RuntimeLayout { binary_path: RUNTIME_PATH.into(), ..Default::default() })
    }
}

/// Where the runtime binary goes in a Vercel sandbox (writable without sudo, outside the user's
/// working directory `/vercel/sandbox`).
pub const RUNTIME_PATH: &str = "/tmp/sbx/bin/sbx-agent";

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> VercelProvider {
        VercelProvider::new(Credentials::new("t", "team_1", "prj_1")).expect("provider")
    }

    #[test]
    fn create_bodies_carry_ports_resources_and_tags() {
        let p = provider();
        let mut spec = SandboxSpec::named("a b");
        spec.ports = vec![3000, 2468];
        spec.cpus = Some(1.5);
        spec.memory_mb = Some(1000);
        spec.ttl = Some(Duration::from_secs(600));
        let b = p.create_body(&spec, "sbx-a-b-1234").expect("body");
        assert_eq!(b["ports"], json!([2468, 3000]));
        assert_eq!(b["resources"], json!({"vcpus": 2, "memory": 4096}));
        assert_eq!(b["timeout"], 600_000);
        assert_eq!(b["projectId"], "prj_1");
        assert_eq!(b["tags"][labels::MANAGED], "true");
        assert_eq!(b["tags"][labels::NAME], "a b");
        assert!(b.get("image").is_none() && b.get("networkPolicy").is_none());
        spec.memory_mb = Some(8192);
        spec.network = crate::Network::None;
        let b = p.create_body(&spec, "n").expect("body");
        assert_eq!(b["resources"]["vcpus"], 4);
        assert_eq!(b["networkPolicy"]["mode"], "deny-all");
        spec.ports = vec![1, 2, 3, 4];
        assert!(matches!(p.create_body(&spec, "n"), Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn envelopes_become_sandboxes() {
        let v = json!({
            "sandbox": {"name": "sbx-x-1", "currentSessionId": "sess_1", "status": "pending", "createdAt": 1_700_000_000_123u64,
                        "tags": {"dev.sbx.managed": "true"}},
            "session": {"id": "sess_1", "status": "running"},
            "routes": [{"url": "https://a.vercel.run/", "port": 2468, "subdomain": "a"}],
        });
        let s = from_envelope(&v);
        assert_eq!((s.id.as_str(), s.state, s.created_at), ("sbx-x-1", SandboxState::Running, Some(1_700_000_000)));
        assert_eq!(session_id(&v).as_deref(), Some("sess_1"));
        let p = provider();
        p.remember("sbx-x-1", &v);
        assert_eq!(p.known.lock().unwrap()["sbx-x-1"].routes, vec![(2468, "https://a.vercel.run".to_owned())]);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("sbx-demo-12ab").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("").is_err());
    }
}
