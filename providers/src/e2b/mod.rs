//! `e2b`: a sandbox is an [E2B](https://e2b.dev) sandbox (a Firecracker microVM made from a template),
//! driven through E2B's REST control plane and, to bootstrap the runtime only, the sandbox's envd.
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use sbx_providers::{Provider, SandboxSpec, e2b::E2bProvider};
//! let e2b = E2bProvider::from_env()?;                   // E2B_API_KEY, E2B_API_URL, E2B_DOMAIN…
//! let sandbox = e2b.create(&SandboxSpec::named("demo")).await?;
//! e2b.destroy(&sandbox.id).await?;
//! # Ok(()) }
//! ```
//!
//! # Mapping
//!
//! - `create` → `POST /v2/sandboxes` with the template (the spec's image, else `SBX_E2B_TEMPLATE`,
//!   else [`DEFAULT_TEMPLATE`], sbx's template from `templates/e2b/`), `envVars` from the spec's env,
//!   `metadata` = the spec's labels plus sbx's own, `timeout` = the spec's ttl or `SBX_E2B_TIMEOUT`
//!   (default 1 h; E2B kills the sandbox when it runs out). An `Idempotency-Key` makes a retried create
//!   return the same sandbox; when a create still fails after its retries, every sandbox carrying its
//!   one-off `dev.sbx.create-key` metadata is killed, so nothing is left behind.
//! - `get` → `GET /sandboxes/{id}`; `list` → `GET /v2/sandboxes?metadata=…` (paginated by
//!   `x-next-token`), always filtered by `dev.sbx.managed=true`.
//! - `pause` → `POST /sandboxes/{id}/pause` (409 "already paused" is success); `resume` →
//!   `POST /v2/sandboxes/{id}/connect` with the timeout again (E2B resets it to 300 s otherwise).
//! - `destroy` → `DELETE /sandboxes/{id}` (404 is success).
//! - `exec`/`upload` go to envd (see [`envd`]): the upload is one tar file put to `/tmp` and unpacked
//!   with `tar` in the sandbox.
//! - `endpoint(port)` → `https://{port}-{id}.{domain}`, no header needed (the runtime has its own token).
//!   When `E2B_SANDBOX_URL` is set (a self-hosted edge, or the fake in tests), the URL is that one and
//!   the port is chosen with the `E2b-Sandbox-Id` / `E2b-Sandbox-Port` headers, the way E2B's shared
//!   edge routes envd requests.
//!
//! Control-plane requests time out after 60 s and are retried (4 tries) on 429, 5xx and transport
//! errors with jittered exponential backoff, honouring `Retry-After` and `Should-Retry`. A 401 names
//! `E2B_API_KEY` and `sbx auth login e2b`.

mod client;
pub mod envd;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub use crate::http::RetryPolicy;

use crate::{
    labels, ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox,
    SandboxSpec, SandboxState,
};
use crate::http::Http;
use crate::util::unix_now;
use client::{is_done, percent_encode, Api};

const NAME: &str = "e2b";

/// Env var holding the API key.
pub const ENV_API_KEY: &str = "E2B_API_KEY";
/// Env var overriding the control-plane URL (default `https://api.{domain}`).
pub const ENV_API_URL: &str = "E2B_API_URL";
/// Env var naming one URL for every sandbox's data plane (routed by headers).
pub const ENV_SANDBOX_URL: &str = "E2B_SANDBOX_URL";
/// Env var overriding the domain (default [`DEFAULT_DOMAIN`]).
pub const ENV_DOMAIN: &str = "E2B_DOMAIN";
/// Env var naming the default template.
pub const ENV_TEMPLATE: &str = "SBX_E2B_TEMPLATE";
/// Env var with the default sandbox timeout in seconds.
pub const ENV_TIMEOUT: &str = "SBX_E2B_TIMEOUT";
/// E2B's domain.
pub const DEFAULT_DOMAIN: &str = "e2b.app";
/// sbx's template (built from `templates/e2b/`, `sbx-agent` preinstalled).
pub const DEFAULT_TEMPLATE: &str = "sbx";
/// Sandbox timeout when neither the spec nor `SBX_E2B_TIMEOUT` gives one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// E2B's longest sandbox timeout (Pro; Hobby is 1 h).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Metadata key of the one-off key of the create that made a sandbox (finds leftovers of failed creates).
pub const CREATE_KEY: &str = "dev.sbx.create-key";

/// The E2B provider. Cheap to clone.
#[derive(Clone)]
pub struct E2bProvider {
    api: Api,
    sandbox_url: Option<String>,
    domain: String,
    template: String,
    timeout: Duration,
    /// envd access tokens by sandbox id (from create/connect/get).
    tokens: Arc<Mutex<HashMap<String, Option<String>>>>,
}

impl std::fmt::Debug for E2bProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2bProvider")
            .field("api_url", &self.api.base)
            .field("sandbox_url", &self.sandbox_url)
            .field("domain", &self.domain)
            .field("template", &self.template)
            .field("api_key", &"***")
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl E2bProvider {
    /// A provider using `api_key`, with URLs, template and timeout from the environment.
    pub fn new(api_key: impl Into<String>) -> Result<Self> {
        let domain = env(ENV_DOMAIN).unwrap_or_else(|| DEFAULT_DOMAIN.into());
        let api_url = env(ENV_API_URL).unwrap_or_else(|| format!("https://api.{domain}"));
        let timeout = match env(ENV_TIMEOUT) {
            Some(t) => Duration::from_secs(
                t.parse().map_err(|_| Error::InvalidSpec(format!("{ENV_TIMEOUT}=`{t}` is not a number of seconds")))?,
            ),
            None => DEFAULT_TIMEOUT,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(client::CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Provider { provider: NAME, message: format!("HTTP client: {e}") })?;
        let http = Http {
            client,
            provider: NAME,
            key_env: ENV_API_KEY,
            reach_hint: client::REACH_HINT,
            timeout: client::REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
        };
        Ok(Self {
            api: Api { http, base: api_url.trim_end_matches('/').to_owned(), key: api_key.into() },
            sandbox_url: env(ENV_SANDBOX_URL).map(|u| u.trim_end_matches('/').to_owned()),
            domain,
            template: env(ENV_TEMPLATE).unwrap_or_else(|| DEFAULT_TEMPLATE.into()),
            timeout,
            tokens: Arc::default(),
        })
    }

    /// A provider with the key from `E2B_API_KEY`.
    pub fn from_env() -> Result<Self> {
        let key = env(ENV_API_KEY).ok_or_else(|| Error::Auth {
            provider: NAME,
            message: format!("no API key: set {ENV_API_KEY} or run `sbx auth login e2b`"),
        })?;
        Self::new(key)
    }

    /// Uses `url` for the control plane.
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api.base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Uses `url` for every sandbox's data plane and ports (routed by `E2b-Sandbox-*` headers).
    pub fn with_sandbox_url(mut self, url: impl Into<String>) -> Self {
        self.sandbox_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Uses `template` when a spec names none.
    pub fn with_template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// Uses `timeout` when a spec has no ttl (and on resume).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries control-plane requests by `policy`.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.api.http.retry = policy;
        self
    }

    /// The timeout used when a spec has no ttl, and on resume.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets sandbox `id`'s timeout to `timeout` from now (E2B's `set_timeout`).
    pub async fn set_timeout(&self, id: &str, timeout: Duration) -> Result<()> {
        check_id(id)?;
        let secs = timeout.min(MAX_TIMEOUT).as_secs();
        let path = format!("/sandboxes/{id}/timeout");
        self.api.call_ok("set timeout", Method::POST, &path, Some(&json!({"timeout": secs})), Some(id)).await?;
        Ok(())
    }

    fn remember(&self, id: &str, body: &Value) {
        let token = body.get("envdAccessToken").and_then(Value::as_str).map(str::to_owned);
        self.tokens.lock().expect("tokens").insert(id.to_owned(), token);
    }

    /// envd of a sandbox that exists (its token from the cache, else from `GET /sandboxes/{id}`).
    async fn envd(&self, id: &str) -> Result<envd::Envd> {
        let cached = self.tokens.lock().expect("tokens").get(id).cloned();
        let token = match cached {
            Some(t) => t,
            None => {
                self.detail(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
                self.tokens.lock().expect("tokens").get(id).cloned().flatten()
            }
        };
        let base = self.sandbox_url.clone().unwrap_or_else(|| format!("https://{}-{id}.{}", envd::ENVD_PORT, self.domain));
        Ok(envd::Envd { http: self.api.http.clone(), base, id: id.to_owned(), token })
    }

    /// `GET /sandboxes/{id}`; `None` on 404 (or an id that cannot be one).
    async fn detail(&self, id: &str) -> Result<Option<Value>> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        let a = self.api.call("get", Method::GET, &format!("/sandboxes/{id}"), &[], None, &[]).await?;
        if a.status == StatusCode::NOT_FOUND {
            self.tokens.lock().expect("tokens").remove(id);
            return Ok(None);
        }
        let body = self.api.http.ok(a, "get", Some(id))?.json();
        self.remember(id, &body);
        Ok(Some(body))
    }

    /// E2B's edge answers 502 for a sandbox it cannot reach, gone and paused alike (and envd's
    /// `not_found` can mean the same): the control plane says which it is, and so what to do.
    async fn explain_gone<T>(&self, id: &str, result: Result<T>) -> Result<T> {
        let err = match result {
            Err(e @ (Error::NotFound { .. } | Error::Api { status: 502, .. })) => e,
            other => return other,
        };
        match self.detail(id).await {
            Ok(None) => Err(Error::NotFound { sandbox: id.to_owned() }),
            Ok(Some(d)) if d.get("state").and_then(Value::as_str) == Some("paused") => {
                Err(Error::NotRunning { sandbox: id.to_owned(), state: "paused".into() })
            }
            _ => Err(err),
        }
    }

    /// Kills every sandbox a failed create may have left (found by its create key); best effort.
    async fn clean_up_failed_create(&self, key: &str) {
        let leftovers = self.list(&Labels::from([(CREATE_KEY.to_owned(), key.to_owned())])).await;
        for s in leftovers.unwrap_or_default() {
            tracing::info!(sandbox = %s.id, "e2b: killing the leftover of a failed create");
            if let Err(e) = self.destroy(&s.id).await {
                tracing::warn!(sandbox = %s.id, error = %e, "e2b: could not kill the leftover of a failed create");
            }
        }
    }
}

/// Ids go into URL paths: allow only what E2B ids are made of.
fn check_id(id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
        Ok(())
    } else {
        Err(Error::NotFound { sandbox: id.to_owned() })
    }
}

fn str_map(v: &Value) -> Labels {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// A `SandboxDetail`/`ListedSandbox` as a [`Sandbox`].
fn from_detail(v: &Value) -> Sandbox {
    let state = match v.get("state").and_then(Value::as_str) {
        Some("running") => SandboxState::Running,
        Some("paused") => SandboxState::Paused,
        _ => SandboxState::Unknown,
    };
    Sandbox {
        id: v.get("sandboxID").and_then(Value::as_str).unwrap_or_default().to_owned(),
        provider: NAME.into(),
        labels: str_map(&v["metadata"]),
        state,
        image: v.get("templateID").and_then(Value::as_str).map(str::to_owned),
        created_at: v.get("startedAt").and_then(Value::as_str).and_then(crate::util::parse_rfc3339),
    }
}

#[async_trait::async_trait]
impl Provider for E2bProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        crate::registry::E2B.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        if spec.network == crate::Network::None {
            return Err(Error::Unsupported { op: "--network none", provider: NAME });
        }
        let template = spec.image.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| self.template.clone());
        let timeout = spec.ttl.unwrap_or(self.timeout).min(MAX_TIMEOUT).max(Duration::from_secs(1));
        let key = format!("sbx-{}", crate::random_hex(12));
        let mut metadata = spec.labels.clone();
        metadata.insert(labels::MANAGED.into(), "true".into());
        if !spec.name.is_empty() {
            metadata.entry(labels::NAME.into()).or_insert_with(|| spec.name.clone());
        }
        if let Some(ttl) = spec.ttl {
            metadata.entry(labels::EXPIRES_AT.into()).or_insert_with(|| (unix_now() + ttl.as_secs()).to_string());
        }
        metadata.insert(CREATE_KEY.into(), key.clone());
        let body = json!({
            "templateID": template,
            "timeout": timeout.as_secs(),
            "metadata": metadata,
            "envVars": spec.env,
        });
        let answer = self.api.call("create", Method::POST, "/v2/sandboxes", &[], Some(&body), &[("Idempotency-Key", key.clone())]).await;
        let a = match answer {
            Ok(a) if a.status.is_success() => a,
            Ok(a) if a.status == StatusCode::NOT_FOUND => {
                return Err(Error::ImageNotFound {
                    image: template,
                    hint: format!(
                        "E2B has no such template ({}); build sbx's from templates/e2b/ (see docs/providers/e2b.md) \
                         or name an existing one with --image",
                        a.message()
                    ),
                })
            }
            Ok(a) => {
                if a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS {
                    self.clean_up_failed_create(&key).await;
                }
                return Err(self.api.http.error(&a, "create", None));
            }
            Err(e) => {
                self.clean_up_failed_create(&key).await;
                return Err(e);
            }
        };
        let v = a.json();
        let Some(id) = v.get("sandboxID").and_then(Value::as_str).map(str::to_owned) else {
            return Err(Error::Provider { provider: NAME, message: format!("create answered without a sandboxID: {v}") });
        };
        self.remember(&id, &v);
        Ok(Sandbox {
            id,
            provider: NAME.into(),
            labels: metadata,
            state: SandboxState::Running,
            image: Some(template),
            created_at: Some(unix_now()),
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        Ok(self.detail(id).await?.as_ref().map(from_detail))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut wanted = labels.clone();
        wanted.entry(labels::MANAGED.into()).or_insert_with(|| "true".into());
        let metadata: Vec<String> = wanted.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
        let metadata = metadata.join("&");
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut query = vec![("metadata", metadata.clone()), ("state", "running,paused".into()), ("limit", "100".into())];
            if let Some(t) = &next {
                query.push(("nextToken", t.clone()));
            }
            let a = self.api.call("list", Method::GET, "/v2/sandboxes", &query, None, &[]).await?;
            let a = self.api.http.ok(a, "list", None)?;
            let items = a.json();
            for item in items.as_array().into_iter().flatten() {
                let s = from_detail(item);
                if wanted.iter().all(|(k, v)| s.labels.get(k) == Some(v)) {
                    out.push(s);
                }
            }
            next = a.headers.get("x-next-token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()).map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        check_id(id)?;
        let result = self.envd(id).await?.exec(cmd).await;
        self.explain_gone(id, result).await
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        check_id(id)?;
        let envd = self.envd(id).await?;
        let tmp = format!("/tmp/sbx-upload-{}.tar", crate::random_hex(8));
        let sent = envd.upload_file(&tmp, archive).await;
        self.explain_gone(id, sent).await?;
        let script = r#"mkdir -p "$1" && tar -xf "$2" -C "$1"; rc=$?; rm -f "$2"; exit $rc"#;
        let out = envd.exec(&ExecSpec::new(["sh", "-c", script, "sh", dest, &tmp])).await?;
        if out.exit_code != 0 {
            return Err(Error::Provider {
                provider: NAME,
                message: format!(
                    "unpacking the upload into {dest} in `{id}` failed (exit {}): {}",
                    out.exit_code,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        let Some(detail) = self.detail(id).await? else {
            return Err(Error::NotFound { sandbox: id.to_owned() });
        };
        // A sandbox may live on another domain than the API's (the `domain` field, when set).
        let domain = detail.get("domain").and_then(Value::as_str).filter(|d| !d.is_empty()).unwrap_or(&self.domain);
        Ok(match &self.sandbox_url {
            Some(url) => Endpoint {
                transport: crate::Transport::Http { url: url.clone() },
                headers: vec![("E2b-Sandbox-Id".into(), id.to_owned()), ("E2b-Sandbox-Port".into(), port.to_string())],
            },
            None => Endpoint::http(format!("https://{port}-{id}.{domain}")),
        })
    }

    async fn pause(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let a = self.api.call("pause", Method::POST, &format!("/sandboxes/{id}/pause"), &[], Some(&json!({})), &[]).await?;
        if is_done(&a, StatusCode::CONFLICT) {
            return Ok(()); // 409: already paused
        }
        Err(self.api.http.error(&a, "pause", Some(id)))
    }

    async fn resume(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let body = json!({"timeout": self.timeout.min(MAX_TIMEOUT).as_secs()});
        let a = self.api.call_ok("resume", Method::POST, &format!("/v2/sandboxes/{id}/connect"), Some(&body), Some(id)).await?;
        self.remember(id, &a.json());
        Ok(())
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        if check_id(id).is_err() {
            return Ok(());
        }
        let a = self.api.call("kill", Method::DELETE, &format!("/sandboxes/{id}"), &[], None, &[]).await?;
        self.tokens.lock().expect("tokens").remove(id);
        if is_done(&a, StatusCode::NOT_FOUND) {
            return Ok(()); // 404: already gone
        }
        Err(self.api.http.error(&a, "kill", Some(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_be_sandboxes_are_refused() {
        assert!(check_id("i1a2b3c4d5e6f7g8h9j0").is_ok());
        assert!(check_id("../templates").is_err());
        assert!(check_id("").is_err());
    }

    #[test]
    fn details_become_sandboxes() {
        let s = from_detail(&json!({
            "sandboxID": "iabc", "templateID": "sbx", "state": "paused",
            "startedAt": "2024-05-01T12:34:56Z", "metadata": {"dev.sbx.name": "demo"}
        }));
        assert_eq!((s.id.as_str(), s.state, s.image.as_deref()), ("iabc", SandboxState::Paused, Some("sbx")));
        assert_eq!(s.sbx_name(), Some("demo"));
        assert_eq!(s.created_at, Some(1_714_566_896));
    }
}
