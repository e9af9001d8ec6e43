//! A fake Modal control plane: the gRPC services the current SDK speaks (`modal.client.ModalClient`'s
//! V2 sandbox RPCs and `modal.task_command_router.TaskCommandRouter`, both on one port), backed by one
//! real Docker container per sandbox. It serves the very stubs sbx's provider is generated with
//! (`sbx_providers::modal::proto`), so messages cannot drift between the two; `tests/oracle/test_modal.py`
//! checks it against the official `modal` SDK.
//!
//! ```ignore
//! let fake = FakeModal::start().await;                 // 127.0.0.1:<free port>
//! // MODAL_SERVER_URL / SBX_MODAL_API_URL=fake.url()  MODAL_TOKEN_ID=…  MODAL_TOKEN_SECRET=…  (fake.env())
//! fake.fail_next("SandboxCreateV2", tonic::Code::Unavailable, 1);   // the next create answers UNAVAILABLE
//! fake.lose_answer("SandboxCreateV2", 1);              // carried out, but the answer is UNAVAILABLE
//! ```
//!
//! What it speaks is what `shared/providers/modal.md` records of SDK 1.6.4:
//! - Control plane ([`control`]): `AppGetOrCreate`, `EnvironmentGetOrCreate` (builder version
//!   2025.06), `ImageGetOrCreate` (`FROM <local image>` is used as is; further Dockerfile commands are
//!   built with `docker build`) and `ImageJoinStreaming`, `AuthTokenGet` (a JWT with `exp`),
//!   `SandboxCreateV2` (idempotent per `x-idempotency-key`; env from inline secret sources; workdir,
//!   cpu/memory, timeout, open ports, network access), `SandboxWaitV2` (long poll),
//!   `SandboxGetTaskIdV2`, `SandboxGetCommandRouterAccess` (this same port, a JWT per sandbox),
//!   `SandboxGetTunnelsV2`, `SandboxTerminateV2`, `SandboxListV2` (tags AND-ed, paged by
//!   `before_timestamp`), `SandboxTagsGetV2`, `ClientHello`. Sandbox ids are `sb-` + 32 hex (V2 shape).
//! - Router ([`router`]): `TaskExecStart` (`docker exec`; the SDK's in-sandbox file helper
//!   `/__modal/.bin/modal-sandbox-fs-tools` `WriteFile`/`ReadFile` is played by `sh`), `TaskExecStdioRead`
//!   (bytes from an offset, live until the stream closes), `TaskExecWait`, `TaskExecPoll`,
//!   `TaskExecStdinWriteStream`, `TaskExecStdinStatus`.
//! - Tunnels: each open port gets a loopback TCP listener forwarding to the container's port (no TLS:
//!   an "encrypted" tunnel here is plain TCP, so sbx points `SBX_MODAL_TUNNEL_SCHEME=http` at it).
//! - Network: `OPEN` is Docker's bridge; `BLOCKED` and `ALLOWLIST` put the container on an internal
//!   Docker network of the fake (no route out; the allowlist's CIDRs are recorded, not routed).
//! - Auth: control-plane calls want `x-modal-token-id`/`x-modal-token-secret`, V2 calls also an
//!   `x-modal-auth-token` the fake issued; router calls `authorization: Bearer <the sandbox's JWT>`.
//!   Otherwise UNAUTHENTICATED.
//!
//! Containers are named `fake-modal-<port>-<hex>` and labelled `dev.sbx.fake=modal`; they (and the
//! internal network) are removed on terminate and when the fake is dropped.

// The error of the fake's helpers is the gRPC status it answers with, as in tonic's own signatures.
#![allow(clippy::result_large_err)]

mod control;
mod router;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sbx_providers::modal::proto::client::modal_client_server::ModalClientServer;
use sbx_providers::modal::proto::client::GenericResult;
use sbx_providers::modal::proto::task_command_router::task_command_router_server::TaskCommandRouterServer;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::faults::Faults;

/// The Docker label every container of the fake carries (value `modal`).
pub const CONTAINER_LABEL: &str = "dev.sbx.fake";

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The token pair it accepts.
    pub token_id: String,
    /// See [`Self::token_id`].
    pub token_secret: String,
    /// Where to listen.
    pub bind: SocketAddr,
    /// The longest a long poll (`SandboxWaitV2`, `TaskExecWait`) is held before it answers without a
    /// result.
    pub max_wait: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            token_id: format!("ak-{}", &crate::random_token()[..16]),
            token_secret: format!("as-{}", &crate::random_token()[..16]),
            bind: ([127, 0, 0, 1], 0).into(),
            max_wait: Duration::from_secs(50),
        }
    }
}

/// A running fake Modal. Dropping it removes every container it made.
pub struct FakeModal {
    state: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub(crate) struct Shared {
    pub(crate) config: FakeConfig,
    pub(crate) port: u16,
    pub(crate) apps: Mutex<HashMap<String, String>>,
    /// image id → (Docker image, build result).
    pub(crate) images: Mutex<HashMap<String, (String, GenericResult)>>,
    pub(crate) sandboxes: Mutex<HashMap<String, control::Sb>>,
    /// `x-idempotency-key` of a create → its sandbox id.
    pub(crate) idempotent: Mutex<HashMap<String, String>>,
    pub(crate) auth_tokens: Mutex<HashSet<String>>,
    /// Router JWT → sandbox id.
    pub(crate) router_jwts: Mutex<HashMap<String, String>>,
    pub(crate) execs: Mutex<HashMap<(String, String), Arc<router::Exec>>>,
    pub(crate) faults: Faults,
    /// RPC → how many more answers to lose after carrying the call out.
    pub(crate) lost: Mutex<HashMap<String, usize>>,
    pub(crate) network: tokio::sync::OnceCell<String>,
}

impl FakeModal {
    /// Starts on loopback with the default config.
    pub async fn start() -> Self {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts with `config`.
    pub async fn start_with(config: FakeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind(config.bind).await.expect("fake modal: bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Shared {
            config,
            port: addr.port(),
            apps: Mutex::default(),
            images: Mutex::default(),
            sandboxes: Mutex::default(),
            idempotent: Mutex::default(),
            auth_tokens: Mutex::default(),
            router_jwts: Mutex::default(),
            execs: Mutex::default(),
            faults: Faults::default(),
            lost: Mutex::default(),
            network: tokio::sync::OnceCell::new(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let control = ModalClientServer::new(control::Control(state.clone())).max_decoding_message_size(64 << 20);
        let router = TaskCommandRouterServer::new(router::Router(state.clone())).max_decoding_message_size(64 << 20);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(control)
                .add_service(router)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.await;
                })
                .await;
        });
        control::spawn_reaper(Arc::downgrade(&state));
        Self { state, addr, shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:<port>` (the SDK's `MODAL_SERVER_URL`, sbx's `SBX_MODAL_API_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token id it accepts.
    pub fn token_id(&self) -> &str {
        &self.state.config.token_id
    }

    /// The token secret it accepts.
    pub fn token_secret(&self) -> &str {
        &self.state.config.token_secret
    }

    /// The environment that points sbx (and the SDK) at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SBX_MODAL_API_URL".into(), self.url()),
            ("MODAL_SERVER_URL".into(), self.url()),
            ("MODAL_TOKEN_ID".into(), self.token_id().into()),
            ("MODAL_TOKEN_SECRET".into(), self.token_secret().into()),
            ("SBX_MODAL_TUNNEL_SCHEME".into(), "http".into()),
            ("SBX_MODAL_IMAGE".into(), base_image()),
        ]
    }

    /// Makes the next `times` calls of `rpc` (e.g. `"SandboxCreateV2"`) fail with `code`, not carried out.
    pub fn fail_next(&self, rpc: &str, code: Code, times: usize) {
        self.state.faults.push(rpc, code as i32 as u16, None, times);
    }

    /// Makes the next `times` calls of `rpc` carried out, but answered UNAVAILABLE (a lost answer).
    pub fn lose_answer(&self, rpc: &str, times: usize) {
        *self.state.lost.lock().unwrap().entry(rpc.to_owned()).or_default() += times;
    }

    /// How many calls reached `rpc` (faulted ones included).
    pub fn hits(&self, rpc: &str) -> usize {
        self.state.faults.hits(rpc)
    }

    /// Ids of the sandboxes that are running (not terminated, timed out or exited).
    pub fn running_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.state.sandboxes.lock().unwrap().values().filter(|s| s.result.is_none()).map(|s| s.id.clone()).collect();
        ids.sort();
        ids
    }

    /// The Docker container behind sandbox `id`.
    pub fn container_of(&self, id: &str) -> Option<String> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.container.clone())
    }

    /// The network access sandbox `id` was created with (type as Modal's enum number, CIDRs).
    pub fn network_of(&self, id: &str) -> Option<(i32, Vec<String>)> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| (s.network.network_access_type, s.network.allowed_cidrs.clone()))
    }

    /// Containers of this fake that still exist, asked of Docker itself.
    pub async fn containers(&self) -> Vec<String> {
        let filter = format!("name=^fake-modal-{}-", self.state.port);
        docker(&["ps", "-aq", "--filter", &filter]).await.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
    }

    /// Stops serving and removes every container.
    pub fn shutdown(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let containers: Vec<String> = self.state.sandboxes.lock().unwrap().drain().map(|(_, s)| s.container).collect();
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new("docker")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        if let Some(net) = self.state.network.get() {
            quiet(&["network", "rm", net]);
        }
    }
}

impl Drop for FakeModal {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The image sandboxes use when a test names none: `$SBX_BASE_IMAGE` or `sbx-base:latest`.
pub fn base_image() -> String {
    std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into())
}

fn header<'a>(md: &'a MetadataMap, k: &str) -> Option<&'a str> {
    md.get(k).and_then(|v| v.to_str().ok())
}

impl Shared {
    /// Before every control-plane call: count it, check the token pair (and for V2 calls the auth
    /// JWT), then use up an injected fault.
    pub(crate) fn gate(&self, rpc: &str, md: &MetadataMap, v2: bool) -> Result<(), Status> {
        self.faults.count(rpc);
        if std::env::var("SBX_FAKE_MODAL_LOG").is_ok_and(|v| v == "1") {
            eprintln!("fake-modal: {rpc}");
        }
        if header(md, "x-modal-token-id") != Some(self.config.token_id.as_str())
            || header(md, "x-modal-token-secret") != Some(self.config.token_secret.as_str())
        {
            return Err(Status::unauthenticated("Token ID or secret is invalid. Please check your Modal credentials."));
        }
        if v2 && !header(md, "x-modal-auth-token").is_some_and(|t| self.auth_tokens.lock().unwrap().contains(t)) {
            return Err(Status::unauthenticated("missing or invalid x-modal-auth-token"));
        }
        self.fault(rpc)
    }

    fn fault(&self, rpc: &str) -> Result<(), Status> {
        match self.faults.take(rpc) {
            Some((code, _)) => Err(Status::new(Code::from(i32::from(code)), format!("injected fault on {rpc}"))),
            None => Ok(()),
        }
    }

    /// After a call was carried out: whether its answer is to be lost.
    pub(crate) fn lose(&self, rpc: &str) -> Result<(), Status> {
        let mut lost = self.lost.lock().unwrap();
        match lost.get_mut(rpc) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(Status::unavailable(format!("connection reset (injected: {rpc} was carried out)")))
            }
            _ => Ok(()),
        }
    }

    /// Before every router call: count it, find the sandbox its bearer JWT is for, use up a fault.
    pub(crate) fn router_gate(&self, rpc: &str, md: &MetadataMap) -> Result<String, Status> {
        self.faults.count(rpc);
        let jwt = header(md, "authorization").and_then(|v| v.strip_prefix("Bearer "));
        let Some(sandbox) = jwt.and_then(|j| self.router_jwts.lock().unwrap().get(j).cloned()) else {
            return Err(Status::unauthenticated("invalid or expired command router token"));
        };
        self.fault(rpc)?;
        Ok(sandbox)
    }

    /// A fresh JWT-shaped token valid for an hour (signature unchecked by clients).
    pub(crate) fn jwt(&self) -> String {
        use base64::Engine;
        let enc = |v: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let exp = now() as u64 + 3600;
        format!("{}.{}.{}", enc(r#"{"alg":"HS256","typ":"JWT"}"#.into()), enc(format!(r#"{{"exp":{exp},"jti":"{}"}}"#, crate::random_token())), &crate::random_token()[..22])
    }
}

/// Runs `docker args…`: stdout (trimmed) on success, stderr on failure.
pub(crate) async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Seconds since the epoch, as Modal's timestamps are.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
