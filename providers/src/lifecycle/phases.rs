//! Per-phase timings: which phases ran, how long each took and how each ended. The same shape
//! (`[{name, durationMs, outcome}]`) is stored in host state, printed by `sbx up --json` and
//! `sbx status --json`, and written into each task of `sbx run`'s `task.json`.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::observer::{Event, Observer};
use crate::Error;

/// Env var (tests only): the named phase fails before it does anything (`SBX_TEST_FAIL_PHASE=healthy`).
pub const ENV_TEST_FAIL_PHASE: &str = "SBX_TEST_FAIL_PHASE";

/// A phase of getting a sandbox ready for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The provider makes the sandbox.
    Create,
    /// The runtime binary goes in (skipped when the right version is already there).
    RuntimeUpload,
    /// The runtime is started.
    Start,
    /// Until the runtime answers `/v1/health` (and has its session env).
    Healthy,
    /// The task's files go in (`sbx run`).
    Workspace,
    /// The task's setup commands (`sbx run`).
    Setup,
    /// The coding agent goes in.
    AgentInstall,
}

impl Phase {
    /// Every phase, in the order they run.
    pub const ALL: [Phase; 7] =
        [Self::Create, Self::RuntimeUpload, Self::Start, Self::Healthy, Self::Workspace, Self::Setup, Self::AgentInstall];

    /// The name used in JSON and in `SBX_TEST_FAIL_PHASE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::RuntimeUpload => "runtime_upload",
            Self::Start => "start",
            Self::Healthy => "healthy",
            Self::Workspace => "workspace",
            Self::Setup => "setup",
            Self::AgentInstall => "agent_install",
        }
    }

    /// What a progress line says while it runs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Create => "creating the sandbox",
            Self::RuntimeUpload => "uploading the runtime",
            Self::Start => "starting the runtime",
            Self::Healthy => "waiting until it is healthy",
            Self::Workspace => "putting the workspace in place",
            Self::Setup => "running the setup commands",
            Self::AgentInstall => "installing the agent",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            format!("unknown phase `{s}` (valid: {})", Self::ALL.map(Phase::as_str).join(", "))
        })
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did its job.
    Ok,
    /// It failed.
    Failed,
    /// Ctrl-C or a timeout stopped it while it ran.
    Interrupted,
    /// Nothing to do (e.g. the runtime was already in the image).
    Skipped,
}

/// One phase that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    /// The phase's name ([`Phase::as_str`], or a step of `sbx run` such as `agent`, `check`, `down`).
    pub name: String,
    /// How long it took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// The phases that ran, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phases(pub Vec<PhaseRecord>);

impl Phases {
    /// The record of `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&PhaseRecord> {
        self.0.iter().find(|p| p.name == name)
    }
    /// The total time of every phase.
    pub fn total(&self) -> Duration {
        Duration::from_millis(self.0.iter().map(|p| p.duration_ms).sum())
    }
}

/// Records phases as they run and tells an observer. Clones share one list, so a caller can keep a
/// clone and still read the phases of an operation that was cancelled half-way (the phase that was
/// running then is recorded as [`Outcome::Interrupted`]).
#[derive(Clone)]
pub struct PhaseRecorder {
    list: Arc<Mutex<Vec<PhaseRecord>>>,
    observer: Arc<dyn Observer>,
}

impl fmt::Debug for PhaseRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseRecorder").field("phases", &self.phases()).finish_non_exhaustive()
    }
}

impl Default for PhaseRecorder {
    fn default() -> Self {
        Self::new(Arc::new(super::observer::Silent))
    }
}

impl PhaseRecorder {
    /// A recorder that tells `observer`.
    pub fn new(observer: Arc<dyn Observer>) -> Self {
        Self { list: Arc::default(), observer }
    }

    /// The same list, telling another observer.
    pub fn with_observer(&self, observer: Arc<dyn Observer>) -> Self {
        Self { list: self.list.clone(), observer }
    }

    /// The observer.
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// What has been recorded so far.
    pub fn phases(&self) -> Phases {
        Phases(self.list.lock().expect("phase list").clone())
    }

    /// Takes what has been recorded so far, leaving the list empty.
    pub fn take(&self) -> Phases {
        Phases(std::mem::take(&mut *self.list.lock().expect("phase list")))
    }

    /// Appends a record (for steps measured elsewhere).
    pub fn push(&self, name: impl Into<String>, duration: Duration, outcome: Outcome) {
        self.list.lock().expect("phase list").push(PhaseRecord { name: name.into(), duration_ms: duration.as_millis() as u64, outcome });
    }

    /// Records `phase` as skipped (it had nothing to do).
    pub fn skipped(&self, phase: Phase) {
        self.push(phase.as_str(), Duration::ZERO, Outcome::Skipped);
        self.observer.event(&Event::PhaseFinished { phase, duration_ms: 0, outcome: Outcome::Skipped, error: None });
    }

    /// Runs `f` as `phase`: times it, records how it ended (also when the future is dropped half-way:
    /// interrupted) and tells the observer. With `SBX_TEST_FAIL_PHASE=<phase>` it fails instead.
    pub async fn run<T, E, F>(&self, phase: Phase, f: F) -> std::result::Result<T, E>
    where
        F: std::future::Future<Output = std::result::Result<T, E>>,
        E: From<Error> + fmt::Display,
    {
        let mut running = Running { recorder: self, phase, started: Instant::now(), done: false };
        self.observer.event(&Event::PhaseStarted { phase });
        let out = match injected_fault(phase) {
            Some(e) => Err(E::from(e)),
            None => f.await,
        };
        running.finish(match &out {
            Ok(_) => (Outcome::Ok, None),
            Err(e) => (Outcome::Failed, Some(e.to_string())),
        });
        out
    }
}

/// A phase in flight; recorded as interrupted if dropped before it finished.
struct Running<'a> {
    recorder: &'a PhaseRecorder,
    phase: Phase,
    started: Instant,
    done: bool,
}

impl Running<'_> {
    fn finish(&mut self, (outcome, error): (Outcome, Option<String>)) {
        self.done = true;
        let elapsed = self.started.elapsed();
        self.recorder.push(self.phase.as_str(), elapsed, outcome);
        self.recorder.observer.event(&Event::PhaseFinished { phase: self.phase, duration_ms: elapsed.as_millis() as u64, outcome, error });
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish((Outcome::Interrupted, None));
        }
    }
}

/// The fault `SBX_TEST_FAIL_PHASE` asks for in `phase`, if any.
pub fn injected_fault(phase: Phase) -> Option<Error> {
    let wanted = std::env::var(ENV_TEST_FAIL_PHASE).ok()?;
    wanted.split(',').any(|w| w.trim() == phase.as_str()).then(|| Error::TestFault { phase: phase.as_str() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serialize_as_task_json_does() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert!("upload".parse::<Phase>().unwrap_err().contains("runtime_upload"));
        let rec = PhaseRecord { name: "create".into(), duration_ms: 12, outcome: Outcome::Ok };
        assert_eq!(serde_json::to_string(&rec).unwrap(), r#"{"name":"create","durationMs":12,"outcome":"ok"}"#);
    }

    #[tokio::test]
    async fn a_dropped_phase_is_interrupted_and_clones_share_the_list() {
        let rec = PhaseRecorder::default();
        let keep = rec.clone();
        rec.run(Phase::Create, async { Ok::<_, Error>(()) }).await.unwrap();
        let slow = rec.run(Phase::Healthy, async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Error>(())
        });
        assert!(tokio::time::timeout(Duration::from_millis(10), slow).await.is_err());
        let got: Vec<_> = keep.phases().0.into_iter().map(|p| (p.name, p.outcome)).collect();
        assert_eq!(got, [("create".to_owned(), Outcome::Ok), ("healthy".to_owned(), Outcome::Interrupted)]);
    }
}
