//! `modal`: a sandbox is a [Modal Sandbox](https://modal.com/docs/guide/sandbox), driven over gRPC
//! the way the current official SDK does it: the `*V2` control-plane RPCs, and commands through the
//! sandbox's task command router (API facts: `shared/providers/modal.md`; schema: [`proto`]).
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use sbx_providers::{Provider, SandboxSpec, modal::ModalProvider};
//! let modal = ModalProvider::from_env()?;   // MODAL_TOKEN_ID + MODAL_TOKEN_SECRET
//! let sandbox = modal.create(&SandboxSpec::named("demo")).await?;
//! modal.destroy(&sandbox.id).await?;
//! # Ok(()) }
//! ```
//!
//! # Mapping
//!
//! - Every sandbox belongs to one app, found or created once (`AppGetOrCreate`, `SBX_MODAL_APP`,
//!   default `sbx`, in `MODAL_ENVIRONMENT`).
//! - The image is a registry image (the spec's, else `SBX_MODAL_IMAGE`, else [`DEFAULT_IMAGE`]):
//!   `ImageGetOrCreate` with `FROM <image>`, followed by `ImageJoinStreaming` until it is built. An
//!   image with `sbx-agent` at `/usr/local/bin` saves the upload.
//! - `create` → `SandboxCreateV2`: entrypoint `sleep infinity`, the spec's env as an inline secret
//!   (never on a command line), `timeout_secs` (the spec's ttl, else `SBX_MODAL_TIMEOUT`, else
//!   [`DEFAULT_TIMEOUT`]), `workdir` (`SBX_MODAL_WORKDIR`), `milli_cpu`/`memory_mb`, the runtime's port
//!   2468 and the spec's ports as encrypted ports (TLS at Modal's edge), the labels as tags, and the
//!   network: open, or for `Network::None` an outbound CIDR allowlist (`SBX_MODAL_CIDR_ALLOWLIST`,
//!   comma-separated; empty = no outbound traffic at all). Modal's `block_network` would also cut the
//!   tunnel the runtime is reached through, so it is not used.
//! - `get` → `SandboxWaitV2` (timeout 0) and `SandboxTagsGetV2`; a terminated sandbox is gone
//!   (`None`), one that timed out or whose entrypoint ended is `Stopped`. `list` →
//!   `SandboxListV2` of the app filtered by tags, paged by creation time.
//! - `exec`/`upload` go through the command router ([`router`]): `TaskExecStart` (env as an inline
//!   secret, workdir, timeout), stdout and stderr read at the same time as bytes, `TaskExecWait`.
//!   `upload` runs `tar -x` with the archive streamed to its stdin (`TaskExecStdinWriteStream`), the
//!   way the SDK's own file writes stream to an in-sandbox helper.
//! - `endpoint(port)` → `SandboxGetTunnelsV2`: `https://<host>[:<port>]` (`SBX_MODAL_TUNNEL_SCHEME`
//!   changes the scheme, for local fakes).
//! - `destroy` → `SandboxTerminateV2` (an unknown id is fine). `pause`/`resume`: unsupported.
//!
//! # Failures
//!
//! Every call has a limit; transient statuses (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN,
//! CANCELLED, RESOURCE_EXHAUSTED) are retried with the shared [`RetryPolicy`] backoff, each attempt
//! with the same `x-idempotency-key`, as the SDK does. A create that fails for good looks for a
//! sandbox of its (unique) name and terminates it. UNAUTHENTICATED names `MODAL_TOKEN_ID`,
//! `MODAL_TOKEN_SECRET` and `sbx auth login modal`.

mod grpc;
pub mod proto;
mod router;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tonic::transport::Channel;

pub use crate::http::RetryPolicy;
pub use grpc::Credentials;
use grpc::{Api, Call};
use proto::client as pb;
use router::{Access, Command};

use crate::{
    labels, ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox, SandboxSpec,
    SandboxState,
};

pub(crate) const NAME: &str = "modal";

/// Env var with the token id.
pub const ENV_TOKEN_ID: &str = "MODAL_TOKEN_ID";
/// Env var with the token secret.
pub const ENV_TOKEN_SECRET: &str = "MODAL_TOKEN_SECRET";
/// Env var overriding [`DEFAULT_API_URL`] (tests point it at the fake).
pub const ENV_API_URL: &str = "SBX_MODAL_API_URL";
/// Env var naming the app sandboxes are made in.
pub const ENV_APP: &str = "SBX_MODAL_APP";
/// Env var naming the Modal environment (the SDK's too).
pub const ENV_ENVIRONMENT: &str = "MODAL_ENVIRONMENT";
/// Env var naming the image when a spec names none.
pub const ENV_IMAGE: &str = "SBX_MODAL_IMAGE";
/// Env var with the sandbox timeout in seconds.
pub const ENV_TIMEOUT: &str = "SBX_MODAL_TIMEOUT";
/// Env var with the sandbox's working directory (absolute).
pub const ENV_WORKDIR: &str = "SBX_MODAL_WORKDIR";
/// Env var with the outbound CIDR allowlist for `--network none` (comma-separated).
pub const ENV_CIDR_ALLOWLIST: &str = "SBX_MODAL_CIDR_ALLOWLIST";
/// Env var with the scheme of tunnel URLs (`https`, or `http` for a local fake).
pub const ENV_TUNNEL_SCHEME: &str = "SBX_MODAL_TUNNEL_SCHEME";
/// The API the official SDK talks to.
pub const DEFAULT_API_URL: &str = "https://api.modal.com";
/// The app sandboxes go in when `SBX_MODAL_APP` names none.
pub const DEFAULT_APP: &str = "sbx";
/// The image when neither the spec nor `SBX_MODAL_IMAGE` names one (the runtime is then uploaded).
pub const DEFAULT_IMAGE: &str = "debian:12-slim";
/// Modal's longest sandbox timeout, also the default: Modal cannot extend a running sandbox's
/// timeout, so a shorter default would end long agent sessions; `sbx down` and `sbx gc` end them.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// See [`MAX_TIMEOUT`].
pub const DEFAULT_TIMEOUT: Duration = MAX_TIMEOUT;
/// The image builder version asked for when the environment names none.
const BUILDER_VERSION: &str = "2025.06";

/// Limit of ordinary calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit of an `exec`.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Limit of an upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long an image build may take.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long a new sandbox may wait to be scheduled.
const SCHEDULE_TIMEOUT: Duration = Duration::from_secs(180);

/// What sbx remembers of a sandbox between calls.
#[derive(Debug, Clone, Default)]
struct Info {
    access: Option<Access>,
    tunnels: Vec<pb::TunnelData>,
}

/// The Modal provider. Cheap to clone.
#[derive(Clone)]
pub struct ModalProvider {
    api: Api,
    app_name: String,
    environment: String,
    image: Option<String>,
    timeout: Duration,
    workdir: Option<String>,
    cidr_allowlist: Vec<String>,
    tunnel_scheme: String,
    app_id: Arc<OnceCell<String>>,
    builder_version: Arc<OnceCell<String>>,
    images: Arc<Mutex<HashMap<String, String>>>,
    known: Arc<Mutex<HashMap<String, Info>>>,
    routers: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for ModalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModalProvider").field("api", &self.api).field("app", &self.app_name).field("image", &self.image).finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl ModalProvider {
    /// A provider for `credentials`, with the URL, app, image and the rest from the environment.
    pub fn new(credentials: Credentials) -> Result<Self> {
        if credentials.token_id.is_empty() || credentials.token_secret.is_empty() {
            return Err(Error::Auth {
                provider: NAME,
                message: format!("no token: set {ENV_TOKEN_ID} and {ENV_TOKEN_SECRET} (`modal token new` makes a pair) or run `sbx auth login modal`"),
            });
        }
        let timeout = match env(ENV_TIMEOUT) {
            Some(t) => Duration::from_secs(t.parse().map_err(|_| Error::InvalidSpec(format!("{ENV_TIMEOUT}=`{t}` is not a number of seconds")))?),
            None => DEFAULT_TIMEOUT,
        };
        let workdir = env(ENV_WORKDIR);
        if let Some(w) = workdir.as_deref().filter(|w| !w.starts_with('/')) {
            return Err(Error::InvalidSpec(format!("{ENV_WORKDIR}=`{w}` must be an absolute path")));
        }
        let url = env(ENV_API_URL).unwrap_or_else(|| DEFAULT_API_URL.into()).trim_end_matches('/').to_owned();
        Ok(Self {
            api: Api::new(url, credentials, REQUEST_TIMEOUT)?,
            app_name: env(ENV_APP).unwrap_or_else(|| DEFAULT_APP.into()),
            environment: env(ENV_ENVIRONMENT).unwrap_or_default(),
            image: env(ENV_IMAGE),
            timeout,
            workdir,
            cidr_allowlist: env(ENV_CIDR_ALLOWLIST)
                .map(|v| v.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect())
                .unwrap_or_default(),
            tunnel_scheme: env(ENV_TUNNEL_SCHEME).unwrap_or_else(|| "https".into()),
            app_id: Arc::default(),
            builder_version: Arc::default(),
            images: Arc::default(),
            known: Arc::default(),
            routers: Arc::default(),
        })
    }

    /// Credentials from `MODAL_TOKEN_ID` and `MODAL_TOKEN_SECRET`.
    pub fn from_env() -> Result<Self> {
        Self::new(Credentials { token_id: env(ENV_TOKEN_ID).unwrap_or_default(), token_secret: env(ENV_TOKEN_SECRET).unwrap_or_default() })
    }

    /// A key as `sbx auth` stores it: `ID:SECRET`.
    pub fn from_key(key: &str) -> Result<Self> {
        let (id, secret) = key.split_once(':').unwrap_or((key, ""));
        Self::new(Credentials { token_id: id.trim().to_owned(), token_secret: secret.trim().to_owned() })
    }

    /// Uses `url` as the control-plane URL.
    pub fn with_api_url(mut self, url: impl Into<String>) -> Result<Self> {
        let url = url.into().trim_end_matches('/').to_owned();
        let retry = self.api.retry;
        self.api = Api::new(url, self.api.creds.clone(), REQUEST_TIMEOUT)?;
        self.api.retry = retry;
        Ok(self)
    }

    /// Retries calls by `policy`.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.api.retry = policy;
        self
    }

    /// Uses `image` when a spec names none.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Makes sandboxes in app `name`.
    pub fn with_app(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self.app_id = Arc::default();
        self
    }

    /// Uses `scheme` (`http` for a local fake) in tunnel URLs.
    pub fn with_tunnel_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.tunnel_scheme = scheme.into();
        self
    }

    /// Lets `Network::None` sandboxes reach exactly these CIDRs.
    pub fn with_cidr_allowlist(mut self, cidrs: Vec<String>) -> Self {
        self.cidr_allowlist = cidrs;
        self
    }

    /// The control-plane URL in use.
    pub fn api_url(&self) -> &str {
        &self.api.url
    }

    /// The app's id (found or created on first use).
    pub async fn app_id(&self) -> Result<String> {
        self.app_id
            .get_or_try_init(|| async {
                let req = pb::AppGetOrCreateRequest {
                    app_name: self.app_name.clone(),
                    environment_name: self.environment.clone(),
                    object_creation_type: pb::ObjectCreationType::CreateIfMissing as i32,
                };
                let r = self.api.call(Call::new("find or create the app"), req, |mut c, r| async move { c.app_get_or_create(r).await }).await?;
                Ok(r.app_id)
            })
            .await
            .cloned()
    }

    async fn builder_version(&self) -> Result<String> {
        self.builder_version
            .get_or_try_init(|| async {
                let req = pb::EnvironmentGetOrCreateRequest { deployment_name: self.environment.clone(), object_creation_type: 0 };
                let r = self.api.call(Call::new("look up the environment"), req, |mut c, r| async move { c.environment_get_or_create(r).await }).await?;
                let v = r.metadata.and_then(|m| m.settings).map(|s| s.image_builder_version).unwrap_or_default();
                Ok(if v.is_empty() { BUILDER_VERSION.to_owned() } else { v })
            })
            .await
            .cloned()
    }

    /// The id of registry image `image` in the app, built (and waited for) when new.
    async fn image_id(&self, app_id: &str, image: &str) -> Result<String> {
        if let Some(id) = self.images.lock().expect("images").get(image) {
            return Ok(id.clone());
        }
        let req = pb::ImageGetOrCreateRequest {
            image: Some(pb::Image { dockerfile_commands: vec![format!("FROM {image}")], version: String::new(), secret_ids: vec![] }),
            app_id: app_id.to_owned(),
            existing_image_id: String::new(),
            force_build: false,
            builder_version: self.builder_version().await?,
        };
        let r = self.api.call(Call::new("define the image"), req, |mut c, r| async move { c.image_get_or_create(r).await }).await?;
        let mut result = r.result.unwrap_or_default();
        let mut last_entry = String::new();
        let deadline = tokio::time::Instant::now() + IMAGE_TIMEOUT;
        while result.status == pb::generic_result::GenericStatus::Unspecified as i32 {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout { op: format!("building Modal image `{image}`"), after: IMAGE_TIMEOUT });
            }
            let req = pb::ImageJoinStreamingRequest { image_id: r.image_id.clone(), timeout: 55.0, last_entry_id: last_entry.clone(), include_logs_for_finished: false };
            let call = Call::new("wait for the image").timeout(Duration::from_secs(60));
            let msgs = self
                .api
                .call(call, req, |mut c, r| async move {
                    let mut s = c.image_join_streaming(r).await?.into_inner();
                    let mut all = Vec::new();
                    while let Some(m) = s.message().await? {
                        let done = m.eof || m.result.as_ref().is_some_and(|r| r.status != 0);
                        all.push(m);
                        if done {
                            break;
                        }
                    }
                    Ok(tonic::Response::new(all))
                })
                .await?;
            for m in msgs {
                if !m.entry_id.is_empty() {
                    last_entry = m.entry_id;
                }
                if let Some(r) = m.result.filter(|r| r.status != 0) {
                    result = r;
                }
            }
        }
        if result.status != pb::generic_result::GenericStatus::Success as i32 {
            return Err(Error::ImageNotFound {
                image: image.to_owned(),
                hint: format!(
                    "Modal could not build it ({}); name a registry image Modal can pull with --image or {ENV_IMAGE}",
                    if result.exception.is_empty() { "no reason given" } else { result.exception.as_str() }
                ),
            });
        }
        self.images.lock().expect("images").insert(image.to_owned(), r.image_id.clone());
        Ok(r.image_id)
    }

    fn tags(spec: &SandboxSpec) -> Labels {
        let mut tags = spec.labels.clone();
        tags.insert(labels::MANAGED.into(), "true".into());
        tags.insert(labels::NAME.into(), spec.name.clone());
        if let Some(ttl) = spec.ttl {
            tags.insert(labels::EXPIRES_AT.into(), (crate::util::unix_now() + ttl.as_secs()).to_string());
        }
        tags
    }

    fn definition(&self, spec: &SandboxSpec, image_id: String, name: &str) -> pb::Sandbox {
        let mut ports: Vec<u16> = spec.ports.clone();
        ports.push(sbx_agent::DEFAULT_PORT);
        ports.sort_unstable();
        ports.dedup();
        let open = pb::PortSpecs { ports: ports.iter().map(|p| pb::PortSpec { port: u32::from(*p), unencrypted: false, tunnel_type: None }).collect() };
        use pb::network_access::NetworkAccessType;
        let network = if spec.network == crate::Network::None || !self.cidr_allowlist.is_empty() {
            pb::NetworkAccess { network_access_type: NetworkAccessType::Allowlist as i32, allowed_cidrs: self.cidr_allowlist.clone(), allowed_domains: vec![] }
        } else {
            pb::NetworkAccess { network_access_type: NetworkAccessType::Open as i32, allowed_cidrs: vec![], allowed_domains: vec![] }
        };
        let timeout = spec.ttl.unwrap_or(self.timeout).min(MAX_TIMEOUT);
        pb::Sandbox {
            entrypoint_args: vec!["sleep".into(), "infinity".into()],
            image_id,
            resources: Some(pb::Resources {
                milli_cpu: spec.cpus.map(|c| (c * 1000.0).round() as u32).unwrap_or(0),
                memory_mb: spec.memory_mb.map(|m| u32::try_from(m).unwrap_or(u32::MAX)).unwrap_or(0),
                ..Default::default()
            }),
            timeout_secs: u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX),
            workdir: self.workdir.clone(),
            network_access: Some(network),
            name: Some(name.to_owned()),
            open_ports_oneof: Some(pb::sandbox::OpenPortsOneof::OpenPorts(open)),
            ..Default::default()
        }
    }

    /// Terminates what a failed create under `name` may have made.
    async fn cleanup_name(&self, name: &str) {
        let Ok(app_id) = self.app_id().await else { return };
        let req = pb::SandboxListRequest {
            app_id,
            before_timestamp: 0.0,
            environment_name: self.environment.clone(),
            include_finished: false,
            tags: vec![pb::SandboxTag { tag_name: labels::MANAGED.into(), tag_value: "true".into() }],
        };
        if let Ok(r) = self.api.call(Call::v2("list", None), req, |mut c, r| async move { c.sandbox_list_v2(r).await }).await {
            for sb in r.sandboxes.into_iter().filter(|s| s.name == name) {
                let _ = self.destroy(&sb.id).await;
            }
        }
    }

    /// How to reach sandbox `id`'s command router (remembered; asked for once it is scheduled).
    async fn access(&self, id: &str) -> Result<Access> {
        if let Some(a) = self.known.lock().expect("known").get(id).and_then(|i| i.access.clone()) {
            return Ok(a);
        }
        let deadline = tokio::time::Instant::now() + SCHEDULE_TIMEOUT;
        let task_id = loop {
            let req = pb::SandboxGetTaskIdRequest { sandbox_id: id.to_owned(), timeout: Some(10.0), wait_until_ready: false };
            let call = Call::v2("find the sandbox's task", Some(id)).timeout(Duration::from_secs(15));
            let r = self.api.call(call, req, |mut c, r| async move { c.sandbox_get_task_id_v2(r).await }).await.map_err(|e| not_found_if_invalid(e, id))?;
            if let Some(result) = r.task_result.filter(|r| r.status != 0) {
                return Err(finished(id, &result));
            }
            match r.task_id.filter(|t| !t.is_empty()) {
                Some(t) => break t,
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Timeout { op: format!("waiting for Modal sandbox `{id}` to be scheduled"), after: SCHEDULE_TIMEOUT })
                }
                None => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        let mut a = self.refresh_access(id).await?;
        a.task_id = task_id;
        self.known.lock().expect("known").entry(id.to_owned()).or_default().access = Some(a.clone());
        Ok(a)
    }

    /// Asks the control plane for the router's URL and a fresh JWT.
    async fn refresh_access(&self, id: &str) -> Result<Access> {
        use pb::sandbox_get_command_router_access_request::Target;
        let req = pb::SandboxGetCommandRouterAccessRequest { target: Some(Target::SandboxId(id.to_owned())) };
        let r = self
            .api
            .call(Call::v2("reach the command router", Some(id)), req, |mut c, r| async move { c.sandbox_get_command_router_access(r).await })
            .await
            .map_err(|e| not_found_if_invalid(e, id))?;
        let task_id = self.known.lock().expect("known").get(id).and_then(|i| i.access.as_ref().map(|a| a.task_id.clone())).unwrap_or_default();
        let a = Access { task_id, url: r.url, jwt: r.jwt };
        if !a.task_id.is_empty() {
            self.known.lock().expect("known").entry(id.to_owned()).or_default().access = Some(a.clone());
        }
        Ok(a)
    }

    async fn tunnels(&self, id: &str) -> Result<Vec<pb::TunnelData>> {
        let req = pb::SandboxGetTunnelsRequest { sandbox_id: id.to_owned(), timeout: 50.0 };
        let call = Call::v2("get the tunnels", Some(id)).timeout(Duration::from_secs(55));
        let r = self.api.call(call, req, |mut c, r| async move { c.sandbox_get_tunnels_v2(r).await }).await.map_err(|e| not_found_if_invalid(e, id))?;
        if let Some(result) = r.result.filter(|r| r.status != 0) {
            return Err(finished(id, &result));
        }
        self.known.lock().expect("known").entry(id.to_owned()).or_default().tunnels = r.tunnels.clone();
        Ok(r.tunnels)
    }

    fn tunnel_url(&self, t: &pb::TunnelData) -> String {
        let default = if self.tunnel_scheme == "https" { 443 } else { 80 };
        if t.port == default {
            format!("{}://{}", self.tunnel_scheme, t.host)
        } else {
            format!("{}://{}:{}", self.tunnel_scheme, t.host, t.port)
        }
    }
}

/// INVALID_ARGUMENT about an id (one Modal never made, e.g. another provider's) means: no such sandbox.
fn not_found_if_invalid(e: Error, id: &str) -> Error {
    match &e {
        Error::Provider { message, .. } if message.contains("InvalidArgument") => Error::NotFound { sandbox: id.to_owned() },
        _ => e,
    }
}

/// Whether `e` says there is no such sandbox.
fn is_gone(e: &Error) -> bool {
    e.is_not_found() || matches!(e, Error::Provider { message, .. } if message.contains("InvalidArgument"))
}

/// The error for using sandbox `id` that has ended with `result`.
fn finished(id: &str, result: &pb::GenericResult) -> Error {
    use pb::generic_result::GenericStatus as S;
    match S::try_from(result.status).unwrap_or(S::Unspecified) {
        S::Terminated => Error::NotFound { sandbox: id.to_owned() },
        S::Timeout => Error::NotRunning { sandbox: id.to_owned(), state: "stopped: its timeout ran out; `sbx down` it and make a new one".into() },
        s => Error::NotRunning { sandbox: id.to_owned(), state: format!("stopped ({}); `sbx down` it", s.as_str_name().trim_start_matches("GENERIC_STATUS_").to_ascii_lowercase()) },
    }
}

fn labels_of(tags: &[pb::SandboxTag]) -> Labels {
    tags.iter().map(|t| (t.tag_name.clone(), t.tag_value.clone())).collect()
}

fn to_tags(labels: &Labels) -> Vec<pb::SandboxTag> {
    labels.iter().map(|(k, v)| pb::SandboxTag { tag_name: k.clone(), tag_value: v.clone() }).collect()
}

#[async_trait::async_trait]
impl Provider for ModalProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        crate::registry::MODAL.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let name = crate::util::fresh_name(&spec.name, 55);
        let app_id = self.app_id().await?;
        let image = spec.image.clone().or_else(|| self.image.clone()).unwrap_or_else(|| DEFAULT_IMAGE.into());
        let image_id = self.image_id(&app_id, &image).await?;
        let tags = Self::tags(spec);
        let secret_sources = if spec.env.is_empty() {
            vec![]
        } else {
            let contents = spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            vec![pb::SecretSource { source: Some(pb::secret_source::Source::Env(pb::StringMap { contents })) }]
        };
        let req = pb::SandboxCreateV2Request { app_id, definition: Some(self.definition(spec, image_id, &name)), tags: to_tags(&tags), secret_sources };
        let created = match self.api.call(Call::v2("create", None), req, |mut c, r| async move { c.sandbox_create_v2(r).await }).await {
            Ok(r) => r,
            Err(e) => {
                // The server may have carried out an attempt whose answer was lost: nothing may be left.
                self.cleanup_name(&name).await;
                return Err(e);
            }
        };
        let id = created.sandbox_id.clone();
        let mut info = Info { access: None, tunnels: created.tunnels.clone() };
        if let (false, Some(a)) = (created.task_id.is_empty(), created.command_router_access.as_ref()) {
            info.access = Some(Access { task_id: created.task_id.clone(), url: a.url.clone(), jwt: a.jwt.clone() });
        }
        self.known.lock().expect("known").insert(id.clone(), info);
        Ok(Sandbox { id, provider: NAME.into(), labels: tags, state: SandboxState::Running, image: Some(image), created_at: Some(crate::util::unix_now()) })
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        let req = pb::SandboxWaitRequest { sandbox_id: id.to_owned(), timeout: 0.0 };
        let waited = match self.api.call(Call::v2("get", Some(id)), req, |mut c, r| async move { c.sandbox_wait_v2(r).await }).await {
            Ok(r) => r,
            Err(e) if is_gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        use pb::generic_result::GenericStatus as S;
        let state = match waited.result.map(|r| S::try_from(r.status).unwrap_or(S::Unspecified)).unwrap_or(S::Unspecified) {
            S::Unspecified => SandboxState::Running,
            // Terminated is what `destroy` does: the sandbox is gone.
            S::Terminated => {
                self.known.lock().expect("known").remove(id);
                return Ok(None);
            }
            _ => SandboxState::Stopped,
        };
        let req = pb::SandboxTagsGetRequest { sandbox_id: id.to_owned() };
        let tags = self.api.call(Call::v2("get tags", Some(id)), req, |mut c, r| async move { c.sandbox_tags_get_v2(r).await }).await?;
        Ok(Some(Sandbox { id: id.to_owned(), provider: NAME.into(), labels: labels_of(&tags.tags), state, image: None, created_at: None }))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut want = labels.clone();
        want.insert(labels::MANAGED.into(), "true".into());
        let app_id = self.app_id().await?;
        let mut out = Vec::new();
        let mut before = 0.0;
        loop {
            let req = pb::SandboxListRequest {
                app_id: app_id.clone(),
                before_timestamp: before,
                environment_name: self.environment.clone(),
                include_finished: false,
                tags: to_tags(&want),
            };
            let page = self.api.call(Call::v2("list", None), req, |mut c, r| async move { c.sandbox_list_v2(r).await }).await?.sandboxes;
            if page.is_empty() {
                break;
            }
            before = page.iter().map(|s| s.created_at).fold(f64::INFINITY, f64::min);
            for sb in page {
                let l = labels_of(&sb.tags);
                if want.iter().all(|(k, v)| l.get(k) == Some(v)) {
                    let finished = sb.task_info.as_ref().and_then(|t| t.result.as_ref()).is_some_and(|r| r.status != 0);
                    out.push(Sandbox {
                        id: sb.id,
                        provider: NAME.into(),
                        labels: l,
                        state: if finished { SandboxState::Stopped } else { SandboxState::Running },
                        image: None,
                        created_at: Some(sb.created_at as u64),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        if cmd.argv.is_empty() {
            return Err(Error::InvalidSpec("exec needs a program".into()));
        }
        let limit = cmd.timeout.unwrap_or(EXEC_TIMEOUT);
        self.run(id, Command { argv: &cmd.argv, env: &cmd.env, cwd: cmd.cwd.as_deref(), limit, stdin: None }).await
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        let argv: Vec<String> =
            ["sh", "-c", "mkdir -p -- \"$1\" && exec tar -x -o -f - -C \"$1\"", "sh", dest].iter().map(|s| (*s).to_owned()).collect();
        let env = BTreeMap::new();
        let out = self.run(id, Command { argv: &argv, env: &env, cwd: None, limit: UPLOAD_TIMEOUT, stdin: Some(archive) }).await?;
        if out.exit_code != 0 {
            return Err(Error::Provider {
                provider: NAME,
                message: format!("upload to {dest} failed (tar exit {}): {}", out.exit_code, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        Ok(())
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        let known = self.known.lock().expect("known").get(id).map(|i| i.tunnels.clone()).unwrap_or_default();
        let tunnels = if known.iter().any(|t| t.container_port == u32::from(port)) { known } else { self.tunnels(id).await? };
        match tunnels.iter().find(|t| t.container_port == u32::from(port)) {
            Some(t) => Ok(Endpoint::http(self.tunnel_url(t))),
            None => Err(Error::InvalidSpec(format!(
                "port {port} of Modal sandbox `{id}` has no tunnel: Modal tunnels only the ports named at create (`sbx up --port {port}`)"
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
        let req = pb::SandboxTerminateRequest { sandbox_id: id.to_owned() };
        match self.api.call(Call::v2("terminate", Some(id)), req, |mut c, r| async move { c.sandbox_terminate_v2(r).await }).await {
            Ok(_) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
        self.known.lock().expect("known").remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
