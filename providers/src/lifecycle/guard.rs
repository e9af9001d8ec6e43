//! [`SandboxGuard`]: a sandbox that is not ready yet, destroyed unless the operation that makes it
//! finishes (then it is [`disarm`](SandboxGuard::disarm)ed) or the user asked to keep it.

use std::sync::Arc;
use std::time::Duration;

use super::phases::PhaseRecorder;
use crate::{Labels, Provider, Result, Sandbox};

/// Env var: `SBX_KEEP=1` keeps half-made sandboxes for debugging (as `--keep` does).
pub const ENV_KEEP: &str = "SBX_KEEP";

/// How long the clean-up of a dropped guard may take before it gives up (`sbx gc` finds the rest
/// by its labels).
const DROP_CLEANUP_LIMIT: Duration = Duration::from_secs(60);

/// Whether `SBX_KEEP` asks to keep half-made sandboxes.
pub fn keep_from_env() -> bool {
    std::env::var(ENV_KEEP).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// What the guard will destroy.
#[derive(Debug, Clone)]
enum Target {
    /// Creation is in flight: whatever the provider lists with these labels (a create that timed out
    /// on the way back may still have made one).
    Pending(Labels),
    /// The sandbox.
    Made(Sandbox),
}

/// A sandbox being made ready. Until [`disarm`](Self::disarm)ed it is destroyed when the guard is
/// dropped (an error returned with `?`, Ctrl-C dropping the future, a panic), unless kept with
/// [`keep`](Self::keep) (`--keep`, `SBX_KEEP=1`). Dropping works from async code on a multi-thread
/// runtime and from sync code: the destroy runs on a scoped thread with a small runtime of its own.
/// On error paths prefer [`discard`](Self::discard), which does the same without blocking.
#[must_use = "a guard destroys its sandbox when dropped; call disarm() once it is ready"]
pub struct SandboxGuard {
    provider: Arc<dyn Provider>,
    target: Target,
    armed: bool,
    keep: bool,
    phases: PhaseRecorder,
}

impl std::fmt::Debug for SandboxGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxGuard")
            .field("provider", &self.provider.name())
            .field("target", &self.target)
            .field("armed", &self.armed)
            .field("keep", &self.keep)
            .finish()
    }
}

impl SandboxGuard {
    /// A guard for a sandbox about to be created with `labels` (those that identify it: its name and
    /// run id). Until [`made`](Self::made) is called, cleaning up destroys whatever carries them.
    pub fn pending(provider: Arc<dyn Provider>, labels: Labels, keep: bool, phases: PhaseRecorder) -> Self {
        Self { provider, target: Target::Pending(labels), armed: true, keep, phases }
    }

    /// A guard for an existing sandbox.
    pub fn new(provider: Arc<dyn Provider>, sandbox: Sandbox, keep: bool, phases: PhaseRecorder) -> Self {
        Self { provider, target: Target::Made(sandbox), armed: true, keep, phases }
    }

    /// The sandbox exists now.
    pub fn made(&mut self, sandbox: Sandbox) {
        self.target = Target::Made(sandbox);
    }

    /// The sandbox (panics while it is still being created: only [`super::Lifecycle::create`] sees
    /// a guard in that state).
    pub fn sandbox(&self) -> &Sandbox {
        match &self.target {
            Target::Made(s) => s,
            Target::Pending(_) => panic!("SandboxGuard::sandbox before the sandbox was made"),
        }
    }

    /// The provider's id of the sandbox.
    pub fn id(&self) -> &str {
        &self.sandbox().id
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// The phases recorded for this sandbox so far.
    pub fn recorder(&self) -> &PhaseRecorder {
        &self.phases
    }

    /// Whether a failure keeps the sandbox.
    pub fn kept(&self) -> bool {
        self.keep
    }

    /// Keep (or not) the sandbox on failure.
    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// The sandbox is ready: it is the caller's now.
    pub fn disarm(mut self) -> Sandbox {
        self.armed = false;
        match std::mem::replace(&mut self.target, Target::Pending(Labels::new())) {
            Target::Made(s) => s,
            Target::Pending(_) => panic!("SandboxGuard::disarm before the sandbox was made"),
        }
    }

    /// Destroys the sandbox now (unless kept), without blocking the runtime; returns whether it was
    /// destroyed.
    pub async fn discard(mut self) -> Result<bool> {
        self.armed = false;
        if self.keep {
            tracing::warn!(target = ?self.target, "keeping the half-made sandbox (--keep / SBX_KEEP)");
            return Ok(false);
        }
        cleanup(self.provider.as_ref(), &self.target).await?;
        Ok(true)
    }
}

async fn cleanup(provider: &dyn Provider, target: &Target) -> Result<()> {
    match target {
        Target::Made(s) => provider.destroy(&s.id).await,
        Target::Pending(labels) if labels.is_empty() => Ok(()),
        Target::Pending(labels) => {
            for s in provider.list(labels).await? {
                provider.destroy(&s.id).await?;
            }
            Ok(())
        }
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.keep {
            tracing::warn!(target = ?self.target, "keeping the half-made sandbox (--keep / SBX_KEEP)");
            return;
        }
        let (provider, target) = (self.provider.as_ref(), &self.target);
        // A runtime of our own on a thread of our own: this may run inside an async context (where
        // blocking on the caller's runtime would deadlock) or outside any.
        let destroy = || {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                        // The timer must be made inside the runtime (it registers with its driver).
                        rt.block_on(async { tokio::time::timeout(DROP_CLEANUP_LIMIT, cleanup(provider, target)).await }).ok()
                    })
                    .join()
                    .ok()
                    .flatten()
            })
        };
        let result = match tokio::runtime::Handle::try_current() {
            // Let the caller's runtime move its other tasks (the provider's connections) elsewhere
            // while this thread waits.
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(destroy),
            _ => destroy(),
        };
        match result {
            Some(Ok(())) => tracing::debug!(target = ?self.target, "destroyed the half-made sandbox"),
            Some(Err(e)) => tracing::warn!(target = ?self.target, error = %e, "could not destroy the half-made sandbox (`sbx gc` will)"),
            None => tracing::warn!(target = ?self.target, "destroying the half-made sandbox took too long (`sbx gc` will)"),
        }
    }
}
