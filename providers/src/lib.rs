//! Sandbox providers behind one small trait, and the runtime bootstrap written once on top of it.
//!
//! A provider is only a control plane: make a sandbox, put a file in it, run a command, say where port N
//! is, pause/resume/destroy. Everything else goes through the `sbx-agent` runtime's HTTP API (see
//! [`bootstrap`]), which is the same on every provider.
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use sbx_providers::{Provider, SandboxSpec, local::LocalProvider};
//! let provider = LocalProvider::new(std::env::temp_dir().join("sbx-demo"));
//! let sandbox = provider.create(&SandboxSpec::named("demo")).await?;
//! provider.destroy(&sandbox.id).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

pub mod bootstrap;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod daytona;
pub mod docker;
pub mod e2b;
mod error;
pub mod http;
pub mod lifecycle;
pub mod local;
pub mod modal;
pub mod registry;
pub mod ssh;
mod util;
pub mod vercel;

pub use error::{Error, Result};

/// Labels (Docker labels, E2B metadata, Daytona labels…) as ordered key/value pairs.
pub type Labels = BTreeMap<String, String>;

/// A stream of bytes (tar archives and file contents), never held whole in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// Label keys sbx puts on everything it creates.
pub mod labels {
    /// Marks a sandbox as made by sbx (value `"true"`).
    pub const MANAGED: &str = "dev.sbx.managed";
    /// The sandbox's sbx name.
    pub const NAME: &str = "dev.sbx.name";
    /// The run (an `sbx up` invocation or an `sbx run`) that made it.
    pub const RUN_ID: &str = "dev.sbx.run-id";
    /// Unix seconds after which `sbx gc` may destroy it.
    pub const EXPIRES_AT: &str = "dev.sbx.expires-at";
    /// Pid of the `sbx` process that is creating it (lets `sbx gc` spot a creator that died).
    pub const CREATOR_PID: &str = "dev.sbx.creator-pid";
    /// Host name of the machine that created it.
    pub const CREATOR_HOST: &str = "dev.sbx.creator-host";
    /// Id of the host state database that records it (so `sbx gc` never takes another user's or another
    /// `XDG_STATE_HOME`'s sandboxes for orphans).
    pub const STATE_ID: &str = "dev.sbx.state-id";
    /// Which agents' LLM credentials the user passed in (`sbx up --credentials`): names only, never
    /// values; a runtime restart reads the values from the host again.
    pub const CREDENTIALS: &str = "dev.sbx.credentials";
}

/// Network access of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The provider's default network (outbound allowed).
    #[default]
    Bridge,
    /// No network at all; the runtime is reached over a Unix socket or the provider's own channel.
    None,
}

/// What to create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The sbx name (unique per host state); providers use it in their own naming where they can.
    pub name: String,
    /// Image or template; `None` means the provider's default (sbx's base image).
    pub image: Option<String>,
    /// Environment for everything that runs in the sandbox.
    pub env: BTreeMap<String, String>,
    /// Labels; sbx adds its own (see [`labels`]).
    pub labels: Labels,
    /// CPU limit (cores).
    pub cpus: Option<f64>,
    /// Memory limit in MiB.
    pub memory_mb: Option<u64>,
    /// Network mode.
    pub network: Network,
    /// Extra ports to expose (the runtime port is always exposed).
    pub ports: Vec<u16>,
    /// How long the sandbox may live; providers with a native timeout use it, others record it in a label.
    pub ttl: Option<Duration>,
}

impl SandboxSpec {
    /// A spec with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Default::default() }
    }
}

/// The state a provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Being created.
    Creating,
    /// Running.
    Running,
    /// Paused (memory kept) or stopped (disk kept).
    Paused,
    /// Stopped and not coming back by itself.
    Stopped,
    /// The provider said something we do not model.
    Unknown,
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Unknown => "unknown",
        };
        f.write_str(s)
    }
}

/// A sandbox as the provider sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    /// The provider's id for it.
    pub id: String,
    /// The provider's name (`local`, `docker`, …).
    pub provider: String,
    /// Its labels.
    pub labels: Labels,
    /// Its state.
    pub state: SandboxState,
    /// Image or template it was made from, when known.
    pub image: Option<String>,
    /// Unix seconds of creation, when known.
    pub created_at: Option<u64>,
}

impl Sandbox {
    /// The sbx name from its labels.
    pub fn sbx_name(&self) -> Option<&str> {
        self.labels.get(labels::NAME).map(String::as_str)
    }
}

/// A command for the bootstrap channel.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// argv; the first element is the program.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Give up after this long.
    pub timeout: Option<Duration>,
}

impl ExecSpec {
    /// A command from argv.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Default::default() }
    }
    /// Adds an env var.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
}

/// What a bootstrap-channel command returned.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// The remote exit code (`-1` when killed by a signal or unknown).
    pub exit_code: i64,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

/// How the host reaches a port of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Transport {
    /// Plain HTTP(S) at a URL.
    Http {
        /// Base URL, e.g. `http://127.0.0.1:49153`.
        url: String,
    },
    /// HTTP over a Unix socket on the host.
    Unix {
        /// Socket path.
        path: PathBuf,
    },
}

/// Where a sandbox port is, plus any headers the platform requires (preview tokens and the like).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// How to connect.
    pub transport: Transport,
    /// Headers to send with every request.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    /// An HTTP endpoint with no extra headers.
    pub fn http(url: impl Into<String>) -> Self {
        Self { transport: Transport::Http { url: url.into() }, headers: Vec::new() }
    }
    /// A runtime client for this endpoint with `token`.
    pub fn client(&self, token: Option<String>) -> std::result::Result<sbx_agent::client::Client, sbx_agent::client::ClientError> {
        let mut c = match &self.transport {
            Transport::Http { url } => sbx_agent::client::Client::new(url, token)?,
            Transport::Unix { path } => sbx_agent::client::Client::unix(path, token)?,
        };
        for (k, v) in &self.headers {
            c = c.with_header(k, v);
        }
        Ok(c)
    }
}

/// What a provider can do; the conformance suite and the CLI consult this instead of guessing. Each
/// provider's values are declared once, in its [`registry`] entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// `pause`/`resume` work.
    pub pause: bool,
    /// `Network::None` is honoured.
    pub network_none: bool,
    /// Ports are reachable from the host (or publicly).
    pub public_ports: bool,
    /// CPU/memory limits are enforced.
    pub resource_limits: bool,
    /// Processes are isolated from the host (false for `local`).
    pub isolated: bool,
    /// A running sandbox can be snapshotted and new ones made from the snapshot.
    pub snapshots: bool,
    /// Agents can reach an LLM without a key inside the sandbox (a relay on the host holds it).
    pub keyless_route: bool,
    /// The longest a sandbox may live, if the platform caps it.
    pub max_lifetime: Option<Duration>,
}

/// A sandbox provider's control plane.
///
/// Guarantees every implementation keeps (and the conformance suite checks):
/// - `create` returns a sandbox that is running and carries every label in the spec.
/// - `get` of an unknown id is `Ok(None)`, never an error.
/// - `list` returns exactly the sandboxes carrying all the given labels.
/// - `exec` returns the remote exit code; a non-zero exit is not an error.
/// - `upload` writes the tar stream's entries byte-exact under `dest` (created if missing).
/// - `destroy` is idempotent: destroying a gone sandbox is `Ok`.
/// - Operations the capabilities rule out return [`Error::Unsupported`].
#[async_trait::async_trait]
pub trait Provider: fmt::Debug + Send + Sync {
    /// The provider's name as the CLI spells it.
    fn name(&self) -> &'static str;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// Creates and starts a sandbox.
    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox>;
    /// Looks a sandbox up by id.
    async fn get(&self, id: &str) -> Result<Option<Sandbox>>;
    /// Lists sandboxes carrying all of `labels`.
    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>>;
    /// Runs a command to completion (bootstrap channel only).
    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput>;
    /// Unpacks a tar stream under `dest` (bootstrap channel only).
    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()>;
    /// Where `port` inside the sandbox is reachable from the host.
    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint>;
    /// Pauses (keeps state, stops compute).
    async fn pause(&self, id: &str) -> Result<()>;
    /// Resumes a paused sandbox.
    async fn resume(&self, id: &str) -> Result<()>;
    /// Destroys it and its volumes; Ok if already gone.
    async fn destroy(&self, id: &str) -> Result<()>;
    /// Where the runtime goes in sandbox `id`: binary path, listen address, port, root.
    async fn runtime_layout(&self, _id: &str) -> Result<bootstrap::RuntimeLayout> {
        Ok(bootstrap::RuntimeLayout::default())
    }
}

/// `bytes` random bytes from the OS source, as lowercase hex (twice as many characters).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("OS random source");
    hex::encode(b)
}

/// The label set that marks sandboxes as sbx's.
pub fn managed_labels() -> Labels {
    Labels::from([(labels::MANAGED.to_owned(), "true".to_owned())])
}

/// A tar stream holding one file at `name` with `mode`.
pub fn single_file_tar(name: &str, data: &[u8], mode: u32) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, name, data)?;
    builder.into_inner()
}

/// Wraps an in-memory buffer as a [`ByteStream`].
pub fn bytes_stream(data: impl Into<Bytes>) -> ByteStream {
    let b: Bytes = data.into();
    Box::pin(futures::stream::once(async move { Ok(b) }))
}
