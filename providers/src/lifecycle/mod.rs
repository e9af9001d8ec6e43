//! The one path from "I want a sandbox" to "its runtime answers", shared by `sbx up`, `sbx run`, every
//! command that talks to an existing sandbox, the conformance suite and the fault tests:
//!
//! ```text
//! create ──▶ bootstrap (runtime_upload → start → healthy + session env) ──▶ ready
//!   │ SandboxGuard: destroyed on error, Ctrl-C or panic unless kept (--keep, SBX_KEEP=1)
//!   └ PhaseRecorder: per-phase timings; Observer: progress events
//! reconnect: the runtime answers? else follow a moved endpoint, else start it again (+ session env)
//! teardown: destroy
//! ```
//!
//! ```no_run
//! # async fn f() -> Result<(), sbx_providers::Error> {
//! use std::sync::Arc;
//! use sbx_providers::{lifecycle::Lifecycle, local::LocalProvider, SandboxSpec};
//! let lc = Lifecycle::new(Arc::new(LocalProvider::new("/tmp/sbx-demo"))).with_runtime("/usr/local/bin/sbx-agent");
//! let ready = lc.up(&SandboxSpec::named("demo")).await?;
//! println!("{:?} in {:?}", ready.runtime.endpoint, ready.phases.total());
//! lc.teardown(&ready.sandbox.id).await?;
//! # Ok(()) }
//! ```
//!
//! Test hooks (read from the environment, never set outside tests): `SBX_TEST_FAIL_PHASE=<phase>`
//! makes that phase fail ([`phases::ENV_TEST_FAIL_PHASE`]); `SBX_TEST_PAUSE_AFTER_CREATE=<secs>`
//! waits between create and bootstrap, so a test can interrupt there.

pub mod guard;
pub mod observer;
pub mod phases;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sbx_agent::client::Client;

pub use guard::{keep_from_env, SandboxGuard, ENV_KEEP};
pub use observer::{Event, Observer, Silent};
pub use phases::{Outcome, Phase, PhaseRecord, PhaseRecorder, Phases};

use crate::bootstrap::{self as boot, RuntimeHandle, RuntimeLayout};
use crate::{labels, ByteStream, Error, ExecSpec, Labels, Provider, Result, Sandbox, SandboxSpec, SandboxState};

/// Env var (tests only): seconds to wait between create and bootstrap (fractions allowed).
pub const ENV_TEST_PAUSE_AFTER_CREATE: &str = "SBX_TEST_PAUSE_AFTER_CREATE";

/// How long a runtime may take to answer after it was started.
pub const DEFAULT_HEALTHY_WITHIN: Duration = Duration::from_secs(60);

/// The runtime binary to put into sandboxes.
#[derive(Debug, Clone)]
pub enum RuntimeBinary {
    /// A file on the host (streamed, never read whole).
    Path(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

impl From<PathBuf> for RuntimeBinary {
    fn from(p: PathBuf) -> Self {
        Self::Path(p)
    }
}
impl From<&Path> for RuntimeBinary {
    fn from(p: &Path) -> Self {
        Self::Path(p.to_path_buf())
    }
}
impl From<&str> for RuntimeBinary {
    fn from(p: &str) -> Self {
        Self::Path(p.into())
    }
}
impl From<Bytes> for RuntimeBinary {
    fn from(b: Bytes) -> Self {
        Self::Bytes(b)
    }
}

impl RuntimeBinary {
    /// A tar stream holding the binary as `name` (mode 0755) and its size.
    async fn tar_stream(&self, name: &str) -> Result<(ByteStream, u64)> {
        match self {
            Self::Path(p) => {
                let len = tokio::fs::metadata(p).await.map_err(|e| Error::io(format!("stat {}", p.display()), e))?.len();
                Ok((boot::file_tar_stream(p, name).await?, len))
            }
            Self::Bytes(b) => {
                let tar = crate::single_file_tar(name, b, 0o755).map_err(|e| Error::io("tar of the runtime", e))?;
                Ok((crate::bytes_stream(tar), b.len() as u64))
            }
        }
    }
}

/// A sandbox whose runtime answers.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The sandbox.
    pub sandbox: Sandbox,
    /// Where its runtime is and its token.
    pub runtime: RuntimeHandle,
    /// How the runtime is laid out in it (to restart it later).
    pub layout: RuntimeLayout,
    /// The phases it took.
    pub phases: Phases,
}

/// A bootstrapped runtime.
#[derive(Debug, Clone)]
pub struct Booted {
    /// Where it is and its token.
    pub runtime: RuntimeHandle,
    /// How it is laid out.
    pub layout: RuntimeLayout,
}

/// An existing sandbox's runtime, reached again.
#[derive(Debug)]
pub struct Reconnected {
    /// A client that works.
    pub client: Client,
    /// Where it is now (the endpoint may have moved: Daytona issues new preview tokens on restart).
    pub runtime: RuntimeHandle,
    /// The runtime had stopped and was started again (it holds no session env but what was pushed).
    pub restarted: bool,
}

/// The lifecycle of sandboxes on one provider. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    provider: Arc<dyn Provider>,
    runtime: Option<RuntimeBinary>,
    observer: Arc<dyn Observer>,
    phases: Option<PhaseRecorder>,
    keep_on_failure: bool,
    session_env: Vec<(String, String)>,
    healthy_within: Duration,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("provider", &self.provider.name())
            .field("runtime", &self.runtime)
            .field("keep_on_failure", &self.keep_on_failure)
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// Sandboxes on `provider`, silent, destroyed on failure unless `SBX_KEEP=1`.
    pub fn new(provider: Arc<dyn Provider>) -> Self {
        Self {
            provider,
            runtime: None,
            observer: Arc::new(Silent),
            phases: None,
            keep_on_failure: keep_from_env(),
            session_env: Vec::new(),
            healthy_within: DEFAULT_HEALTHY_WITHIN,
        }
    }

    /// The runtime binary to upload (default: [`boot::locate_runtime`]).
    pub fn with_runtime(mut self, runtime: impl Into<RuntimeBinary>) -> Self {
        self.runtime = Some(runtime.into());
        self
    }

    /// Who hears about progress.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Record phases into `recorder` (the caller keeps a clone, and so sees the phases of an
    /// operation that was cancelled half-way).
    pub fn with_phases(mut self, recorder: PhaseRecorder) -> Self {
        self.phases = Some(recorder);
        self
    }

    /// Keep a half-made sandbox instead of destroying it (`--keep`); `SBX_KEEP=1` also keeps.
    pub fn keep_on_failure(mut self, keep: bool) -> Self {
        self.keep_on_failure = keep || keep_from_env();
        self
    }

    /// Agent-session secrets handed to the runtime over its API once it answers, and again after a
    /// restart (unprefixed names such as `ANTHROPIC_API_KEY`; they never go into the sandbox's env).
    pub fn with_session_env(mut self, env: Vec<(String, String)>) -> Self {
        self.session_env = env;
        self
    }

    /// How long the runtime may take to answer after it was started.
    pub fn with_health_timeout(mut self, within: Duration) -> Self {
        self.healthy_within = within;
        self
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    fn recorder(&self) -> PhaseRecorder {
        match &self.phases {
            Some(r) => r.with_observer(self.observer.clone()),
            None => PhaseRecorder::new(self.observer.clone()),
        }
    }

    fn runtime_binary(&self) -> Result<RuntimeBinary> {
        match &self.runtime {
            Some(r) => Ok(r.clone()),
            None => boot::locate_runtime(self.provider.capabilities().isolated).map(RuntimeBinary::Path),
        }
    }

    /// Creates a sandbox and returns it guarded. The spec gets a run-id label when it has none and
    /// its name as a label, so a create that failed on the way back is still found and destroyed.
    pub async fn create(&self, spec: &SandboxSpec) -> Result<SandboxGuard> {
        self.create_then(spec, |_| {}).await
    }

    /// [`create`](Self::create), calling `made` with the sandbox as soon as the provider returns it,
    /// inside the create phase (before observers hear it is done): the place to record its id.
    pub async fn create_then(&self, spec: &SandboxSpec, made: impl FnOnce(&Sandbox)) -> Result<SandboxGuard> {
        let mut spec = spec.clone();
        let name = spec.name.clone();
        spec.labels.entry(labels::NAME.into()).or_insert(name);
        let run_id = spec.labels.entry(labels::RUN_ID.into()).or_insert_with(|| crate::random_hex(6)).clone();
        let identity = Labels::from([(labels::NAME.to_owned(), spec.name.clone()), (labels::RUN_ID.to_owned(), run_id)]);
        let recorder = self.recorder();
        let mut guard = SandboxGuard::pending(self.provider.clone(), identity, self.keep_on_failure, recorder.clone());
        let create = async {
            let sandbox = self.provider.create(&spec).await?;
            made(&sandbox);
            Ok(sandbox)
        };
        match recorder.run(Phase::Create, create).await {
            Ok(sandbox) => {
                guard.made(sandbox);
                Ok(guard)
            }
            Err(e) => {
                if let Err(cleanup) = guard.discard().await {
                    tracing::warn!(error = %cleanup, "could not clean up after a failed create");
                }
                Err(e)
            }
        }
    }

    /// Puts the runtime into the guarded sandbox, starts it and waits until it answers (then hands it
    /// the session env). The guard stays armed: the caller disarms it once it has recorded the result.
    pub async fn bootstrap(&self, guard: &SandboxGuard) -> Result<Booted> {
        pause_after_create().await;
        let runtime = self.runtime_binary()?;
        let id = guard.id();
        let layout = self.provider.runtime_layout(id).await?;
        let token = boot::fresh_token();
        let handle = bootstrap_runtime(
            self.provider.as_ref(),
            id,
            &runtime,
            &layout,
            token,
            &self.session_env,
            guard.recorder(),
            self.healthy_within,
        )
        .await?;
        Ok(Booted { runtime: handle, layout })
    }

    /// [`create`](Self::create) then [`bootstrap`](Self::bootstrap); on failure the sandbox is
    /// destroyed (unless kept) before the error is returned.
    pub async fn up(&self, spec: &SandboxSpec) -> Result<Ready> {
        let guard = self.create(spec).await?;
        match self.bootstrap(&guard).await {
            Ok(booted) => {
                let phases = guard.recorder().phases();
                let sandbox = guard.disarm();
                Ok(Ready { sandbox, runtime: booted.runtime, layout: booted.layout, phases })
            }
            Err(e) => {
                if let Err(cleanup) = guard.discard().await {
                    tracing::warn!(error = %cleanup, "could not destroy the half-made sandbox");
                }
                Err(e)
            }
        }
    }

    /// Takes over an existing sandbox by id (`sbx up --resume`): resumes it if paused, stops a runtime
    /// left running with a token nobody has, and bootstraps a fresh one. It is not ours: a failure
    /// leaves it as it was.
    pub async fn adopt(&self, id: &str) -> Result<Ready> {
        let sandbox = self.provider.get(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
        let recorder = self.recorder();
        if sandbox.state == SandboxState::Paused {
            let started = std::time::Instant::now();
            self.provider.resume(id).await?;
            recorder.push("resume", started.elapsed(), Outcome::Ok);
        }
        let runtime = self.runtime_binary()?;
        let layout = self.provider.runtime_layout(id).await?;
        let mut stop = vec![layout.binary_path.clone(), "daemon".into(), "stop".into(), "--host".into(), layout.listen_host.clone()];
        stop.extend(["--port".into(), layout.port.to_string()]);
        // Best effort: there may be no runtime (or no binary) yet.
        let _ = self.provider.exec(id, &ExecSpec::new(stop)).await;
        let token = boot::fresh_token();
        let handle = bootstrap_runtime(
            self.provider.as_ref(),
            id,
            &runtime,
            &layout,
            token,
            &self.session_env,
            &recorder,
            self.healthy_within,
        )
        .await?;
        let sandbox = self.provider.get(id).await?.unwrap_or(sandbox);
        Ok(Ready { sandbox, runtime: handle, layout, phases: recorder.phases() })
    }

    /// A client for an existing sandbox's runtime: as recorded when it answers; else at the endpoint
    /// the provider names now (it may have moved); else the runtime is started again with its old
    /// token and handed the session env.
    pub async fn reconnect(&self, id: &str, runtime: &RuntimeHandle, layout: &RuntimeLayout) -> Result<Reconnected> {
        let client = runtime.client()?;
        if boot::answers(&client).await {
            return Ok(Reconnected { client, runtime: runtime.clone(), restarted: false });
        }
        self.recover(id, runtime, layout).await
    }

    /// [`reconnect`](Self::reconnect) for a runtime the caller already found not answering at its
    /// recorded endpoint (so the provider is only opened when needed).
    pub async fn recover(&self, id: &str, runtime: &RuntimeHandle, layout: &RuntimeLayout) -> Result<Reconnected> {
        let mut handle = runtime.clone();
        if let Ok(endpoint) = self.provider.endpoint(id, layout.port).await {
            if endpoint != handle.endpoint {
                handle.endpoint = endpoint;
                let client = handle.client()?;
                if boot::answers(&client).await {
                    return Ok(Reconnected { client, runtime: handle, restarted: false });
                }
            }
        }
        tracing::info!(sandbox = id, "runtime not answering; starting it again");
        let client = handle.client()?;
        boot::start(self.provider.as_ref(), id, layout, &handle.token).await?;
        boot::wait_healthy(&client, self.healthy_within).await?;
        boot::push_session_env(&client, &self.session_env).await?;
        Ok(Reconnected { client, runtime: handle, restarted: true })
    }

    /// Destroys a sandbox (Ok when it is already gone).
    pub async fn teardown(&self, id: &str) -> Result<()> {
        self.provider.destroy(id).await
    }
}

/// THE runtime bootstrap: puts the binary in (unless this version is already there), starts it with
/// `token` (only the token's SHA-256 reaches the sandbox), waits until `/v1/health` answers, then
/// hands it `session_env` over the authenticated API. Each step is a [`Phase`] in `recorder`.
#[allow(clippy::too_many_arguments)]
pub async fn bootstrap_runtime(
    provider: &dyn Provider,
    id: &str,
    runtime: &RuntimeBinary,
    layout: &RuntimeLayout,
    token: String,
    session_env: &[(String, String)],
    recorder: &PhaseRecorder,
    healthy_within: Duration,
) -> Result<RuntimeHandle> {
    recorder.run(Phase::RuntimeUpload, install(provider, id, runtime, layout, recorder)).await?;
    recorder.run(Phase::Start, boot::start(provider, id, layout, &token)).await?;
    recorder
        .run(Phase::Healthy, async {
            let endpoint = provider.endpoint(id, layout.port).await?;
            let handle = RuntimeHandle { endpoint, token };
            let client = handle.client()?;
            boot::wait_healthy(&client, healthy_within).await?;
            // Credentials go over the authenticated API only, never into the runtime's start.
            boot::push_session_env(&client, session_env).await?;
            Ok(handle)
        })
        .await
}

/// Puts the binary at `layout.binary_path` unless a runtime of this version is already there (as in
/// a template that has it preinstalled, or the local provider running the host's binary in place).
async fn install(provider: &dyn Provider, id: &str, runtime: &RuntimeBinary, layout: &RuntimeLayout, recorder: &PhaseRecorder) -> Result<()> {
    if boot::installed(provider, id, layout).await {
        tracing::debug!(sandbox = id, "runtime {} already installed", sbx_agent::VERSION);
        return Ok(());
    }
    let (dir, name) = layout
        .binary_path
        .rsplit_once('/')
        .ok_or_else(|| Error::InvalidSpec(format!("runtime path `{}` is not absolute", layout.binary_path)))?;
    let dir = if dir.is_empty() { "/" } else { dir };
    let (stream, total) = runtime.tar_stream(name).await?;
    provider.upload(id, counted(stream, total, recorder.observer().clone()), dir).await
}

/// `stream`, telling `observer` how many bytes went by (about every MiB, and at the end).
fn counted(stream: ByteStream, total: u64, observer: Arc<dyn Observer>) -> ByteStream {
    const EVERY: u64 = 1 << 20;
    let mut done = 0u64;
    let mut told = 0u64;
    Box::pin(stream.inspect(move |chunk| {
        if let Ok(b) = chunk {
            done += b.len() as u64;
            if done - told >= EVERY || done >= total {
                told = done;
                observer.event(&Event::Progress { phase: Phase::RuntimeUpload, done: done.min(total), total: Some(total) });
            }
        }
    }))
}

/// Honours `SBX_TEST_PAUSE_AFTER_CREATE`.
async fn pause_after_create() {
    let secs = std::env::var(ENV_TEST_PAUSE_AFTER_CREATE).ok().and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(secs) = secs.filter(|s| s.is_finite() && *s > 0.0) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }
}
