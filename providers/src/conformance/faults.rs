//! Fault tests every provider must pass: when bootstrap fails half-way (the runtime upload fails, the
//! health check never answers, the control-plane connection drops) or the caller gives up mid-way
//! (Ctrl-C drops the future), [`Lifecycle`] leaves nothing behind.
//!
//! [`Faulty`] wraps a real provider and breaks one thing; everything else goes to the real one, so
//! the sandbox is really made and must really be destroyed. Each function returns the tag label
//! value it used (`conformance::TEST_LABEL`), so a test can also ask the platform itself (e.g. `docker
//! ps -a --filter label=...`) that nothing is left.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{spec_for, tag_labels, unique};
use crate::bootstrap::RuntimeLayout;
use crate::lifecycle::Lifecycle;
use crate::{ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox, SandboxSpec};

/// What [`Faulty`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every upload fails.
    Upload,
    /// The runtime's endpoint is a port where nothing answers, so the health check never passes.
    Health,
    /// The control-plane connection drops when the runtime is started.
    DropConnection,
    /// Uploads never finish (for giving up mid-bootstrap).
    HangUpload,
}

/// A provider that breaks one thing ([`Fault`]) and passes everything else to `inner`.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn Provider>,
    fault: Fault,
    hung: AtomicBool,
}

impl Faulty {
    /// `inner` with `fault`.
    pub fn new(inner: Arc<dyn Provider>, fault: Fault) -> Self {
        Self { inner, fault, hung: AtomicBool::new(false) }
    }

    /// Whether a hanging upload ([`Fault::HangUpload`]) has been reached.
    pub fn hung(&self) -> bool {
        self.hung.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Provider for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        self.inner.create(spec).await
    }
    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        self.inner.get(id).await
    }
    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        self.inner.list(labels).await
    }
    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        let starts_runtime = cmd.argv.iter().any(|a| a == "daemon") && cmd.argv.iter().any(|a| a == "start");
        if self.fault == Fault::DropConnection && starts_runtime {
            return Err(Error::Unavailable { provider: self.inner.name(), message: "connection reset by peer (injected)".into() });
        }
        // The runtime is never "already installed": uploads always happen, so upload faults fire.
        if matches!(self.fault, Fault::Upload | Fault::HangUpload) && cmd.argv.get(1).is_some_and(|a| a == "--version") {
            return Ok(ExecOutput { exit_code: 127, ..Default::default() });
        }
        self.inner.exec(id, cmd).await
    }
    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        match self.fault {
            Fault::Upload => Err(Error::Provider { provider: self.inner.name(), message: "upload failed (injected)".into() }),
            Fault::HangUpload => {
                self.hung.store(true, Ordering::SeqCst);
                std::future::pending().await
            }
            _ => self.inner.upload(id, archive, dest).await,
        }
    }
    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        if self.fault == Fault::Health {
            // Port 1 on loopback: nothing of ours listens there, so every health check is refused.
            return Ok(Endpoint::http("http://127.0.0.1:1"));
        }
        self.inner.endpoint(id, port).await
    }
    async fn pause(&self, id: &str) -> Result<()> {
        self.inner.pause(id).await
    }
    async fn resume(&self, id: &str) -> Result<()> {
        self.inner.resume(id).await
    }
    async fn destroy(&self, id: &str) -> Result<()> {
        self.inner.destroy(id).await
    }
    async fn runtime_layout(&self, id: &str) -> Result<RuntimeLayout> {
        let mut layout = self.inner.runtime_layout(id).await?;
        if self.fault == Fault::Health {
            // A Unix-socket endpoint would bypass the faulty `endpoint`.
            layout.unix_socket = None;
        }
        Ok(layout)
    }
}

/// Every fault: upload, health, dropped connection, and giving up mid-bootstrap. Returns the tags.
pub async fn run_all(provider: Arc<dyn Provider>, runtime: &Path, base: &SandboxSpec) -> Vec<String> {
    let mut tags = Vec::new();
    for fault in [Fault::Upload, Fault::Health, Fault::DropConnection] {
        tags.push(failed_bootstrap_leaves_nothing(provider.clone(), runtime, base, fault).await);
    }
    tags.push(abandoned_bootstrap_leaves_nothing(provider, runtime, base).await);
    tags
}

/// `up` through a provider with `fault` fails with an error that says what failed, and afterwards the
/// provider lists nothing with the test's tag.
pub async fn failed_bootstrap_leaves_nothing(provider: Arc<dyn Provider>, runtime: &Path, base: &SandboxSpec, fault: Fault) -> String {
    let tag = unique();
    let spec = spec_for(base, &format!("fault-{tag}"), &tag);
    let faulty: Arc<dyn Provider> = Arc::new(Faulty::new(provider.clone(), fault));
    let lc = Lifecycle::new(faulty).with_runtime(runtime).keep_on_failure(false).with_health_timeout(Duration::from_secs(3));
    let err = lc.up(&spec).await.expect_err("bootstrap through a faulty provider must fail");
    let text = err.to_string();
    let expected = match fault {
        Fault::Upload => "upload failed",
        Fault::Health => "healthy",
        Fault::DropConnection => "connection reset",
        Fault::HangUpload => unreachable!("not a failing fault"),
    };
    assert!(text.contains(expected), "{fault:?}: the error should say what failed: {text}");
    let left = provider.list(&tag_labels(&tag)).await.expect("list");
    assert!(left.is_empty(), "{fault:?} left sandboxes behind: {left:?}");
    tag
}

/// The caller gives up while the runtime upload hangs (as Ctrl-C drops `sbx up`'s future): the
/// guard's drop destroys the sandbox before the drop returns.
pub async fn abandoned_bootstrap_leaves_nothing(provider: Arc<dyn Provider>, runtime: &Path, base: &SandboxSpec) -> String {
    let tag = unique();
    let spec = spec_for(base, &format!("fault-{tag}"), &tag);
    let faulty = Arc::new(Faulty::new(provider.clone(), Fault::HangUpload));
    let lc = Lifecycle::new(faulty.clone()).with_runtime(runtime).keep_on_failure(false);
    let mut up = Box::pin(lc.up(&spec));
    // Run it until the upload hangs (the sandbox exists and bootstrap is under way), then give up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !faulty.hung() {
        tokio::select! {
            r = &mut up => panic!("bootstrap with a hanging upload ended: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "the upload was never reached");
    }
    assert_eq!(provider.list(&tag_labels(&tag)).await.expect("list").len(), 1, "the sandbox exists mid-bootstrap");
    drop(up);
    let left = provider.list(&tag_labels(&tag)).await.expect("list");
    assert!(left.is_empty(), "an abandoned bootstrap left sandboxes behind: {left:?}");
    tag
}
