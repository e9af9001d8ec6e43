//! From a command's wishes to a ready sandbox recorded in host state, for `sbx up`, `sbx up --resume`,
//! `sbx run` and whatever else makes sandboxes: providers by name from the registry, a validated
//! [`Plan`], the agent credentials, progress drawing, and [`up`]/[`adopt`] on top of
//! [`sbx_providers::lifecycle`], the one lifecycle every provider and test shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use sbx_providers::lifecycle::{self, Event, Lifecycle, Observer, Outcome, Phase, PhaseRecorder, Phases};
use sbx_providers::local::LocalProvider;
use sbx_providers::registry::{self, ProviderInfo};
use sbx_providers::{bootstrap, labels, Endpoint, Network, Provider, SandboxSpec};

use crate::context::Ctx;
use crate::output::{usage, LayerBars, Output};
use crate::state::{now_secs, State};

/// A provider by name (from the registry); unknown names suggest the closest and list the valid ones.
pub async fn provider(name: &str) -> Result<Arc<dyn Provider>> {
    provider_with_pull_bars(name, None).await
}

/// A provider by name that draws image pulls (where it pulls images) with `bars`.
pub async fn provider_with_pull_bars(name: &str, bars: Option<Arc<LayerBars>>) -> Result<Arc<dyn Provider>> {
    let info = info(name)?;
    Ok(match info.name {
        n if n == registry::LOCAL.name => {
            let mut p = LocalProvider::new(crate::context::local_base());
            if let Ok(rt) = bootstrap::locate_runtime(false) {
                p = p.with_runtime(rt);
            }
            Arc::new(p)
        }
        n if n == registry::DOCKER.name => {
            let mut p = sbx_providers::docker::DockerProvider::connect().await?;
            if let Some(bars) = bars {
                p = p.with_pull_progress(move |ev| bars.update(ev));
            }
            Arc::new(p)
        }
        n if n == registry::E2B.name => {
            let key = crate::auth::require(crate::auth::provider_auth(n)?, None)?;
            Arc::new(sbx_providers::e2b::E2bProvider::new(key.key.expose())?)
        }
        n if n == registry::DAYTONA.name => {
            let key = crate::auth::require(crate::auth::provider_auth(n)?, None)?;
            Arc::new(sbx_providers::daytona::DaytonaProvider::from_env_with_key(key.key.expose())?)
        }
        n if n == registry::VERCEL.name => Arc::new(crate::context::vercel_provider()?),
        n if n == registry::SSH.name => Arc::new(ssh_provider(SSH_FLAGS.get())),
        n if n == registry::MODAL.name => {
            // `sbx auth` keeps the pair as `ID:SECRET`; the environment needs both variables.
            let key = crate::auth::require(crate::auth::provider_auth(n)?, None)?;
            Arc::new(sbx_providers::modal::ModalProvider::from_key(key.key.expose())?)
        }
        other => unreachable!("registered provider `{other}` has no constructor in provision::provider"),
    })
}

/// Where and how the SSH provider makes sandboxes: `sbx up --host --accept-new --isolation`, or one
/// host of an `sbx run` task's `hosts:` (flags win over the environment).
#[derive(Debug, Clone, Default)]
pub struct SshFlags {
    /// The host for new sandboxes.
    pub host: Option<String>,
    /// Learn an unknown host key.
    pub accept_new: bool,
    /// A directory or a container of the host's Docker engine (`None`: the environment's choice).
    pub isolation: Option<sbx_providers::ssh::Isolation>,
}

/// `sbx up`'s SSH flags for the SSH provider of this process.
static SSH_FLAGS: std::sync::OnceLock<SshFlags> = std::sync::OnceLock::new();

/// Records `sbx up --host HOST --accept-new --isolation I` before the SSH provider is made.
pub fn set_ssh_flags(flags: SshFlags) {
    let _ = SSH_FLAGS.set(flags);
}

/// The SSH provider: hosts from the flags, `SBX_SSH_HOST` and the sandboxes recorded on this machine
/// (so `sbx ls`/`sbx gc` look at every host this machine made sandboxes on, and at the Docker engine
/// of those with containers); the runtime that `sbx up` would upload names the remote copy.
fn ssh_provider(flags: Option<&SshFlags>) -> sbx_providers::ssh::SshProvider {
    let mut p = sbx_providers::ssh::SshProvider::from_env();
    if let Some(f) = flags {
        if let Some(i) = f.isolation {
            p = p.with_isolation(i);
        }
        if let Some(h) = &f.host {
            p = p.with_host(h.clone());
        }
        if f.accept_new {
            p = p.accept_new();
        }
    }
    if let Ok(state) = State::open_default() {
        let recorded: Vec<String> = state.list().unwrap_or_default().into_iter().filter(|r| r.provider == registry::SSH.name).map(|r| r.id).collect();
        let containers = recorded.iter().filter_map(|id| id.split_once("/docker/").map(|(dest, _)| dest.to_owned()));
        p = p.also_list_containers(containers.collect::<Vec<_>>());
        p = p.also_list(recorded.iter().filter(|id| !id.contains("/docker/")).filter_map(|id| id.rsplit_once('/').map(|(dest, _)| dest.to_owned())));
    }
    if let Ok(rt) = bootstrap::locate_runtime(true) {
        p = p.with_runtime(&rt);
    }
    p
}

/// The registry entry of `name`, or a usage error that suggests the closest name.
pub fn info(name: &str) -> Result<&'static ProviderInfo> {
    registry::get(name).map_err(|e| usage(e.to_string()))
}

/// Checks a sandbox name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "bad sandbox name `{name}`: use 1-63 letters, digits, `-` or `_`, starting with a letter or digit"
        )))
    }
}

/// Everything needed to make one sandbox, checked before anything is created.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where.
    pub provider: &'static ProviderInfo,
    /// What (name, image, env, user labels, limits, network, ports, ttl); sbx's own labels are added
    /// by [`up`].
    pub sandbox: SandboxSpec,
    /// Agents whose LLM credentials this machine hands to the sandbox's sessions.
    pub credentials: Vec<String>,
    /// Keep the sandbox when making it fails half-way (`--keep`; `SBX_KEEP=1` also keeps).
    pub keep: bool,
    /// Keyless (`--keyless`, `keyless:` in sbx.yaml): the agents reach their model through the
    /// runtime's LLM relay served by this host, with a relay token instead of a key.
    pub keyless: Option<crate::keyless::Policy>,
    /// The run (an `sbx up`, an `sbx run`) it belongs to.
    pub run_id: String,
    /// For the ssh provider: the host and isolation of this sandbox (`None`: `sbx up`'s flags).
    pub ssh: Option<SshFlags>,
}

impl Plan {
    /// A plan for sandbox `name` on `provider` (checked against the registry), in a new run.
    pub fn new(provider: &str, name: impl Into<String>) -> Result<Self> {
        Ok(Self {
            provider: info(provider)?,
            sandbox: SandboxSpec::named(name),
            credentials: Vec::new(),
            keep: false,
            keyless: None,
            run_id: bootstrap::fresh_token()[..12].to_owned(),
            ssh: None,
        })
    }

    /// Refuses what cannot work, saying why: a bad name, a network mode or ports the provider cannot
    /// honour, limits that make no sense.
    pub fn validate(&self) -> Result<()> {
        let s = &self.sandbox;
        validate_name(&s.name)?;
        let caps = &self.provider.capabilities;
        if s.network == Network::None && !caps.network_none {
            return Err(usage(if caps.isolated {
                format!("the {} provider cannot cut a sandbox's network (--network none); use --provider docker", self.provider.name)
            } else {
                "--network none needs an isolating provider (e.g. --provider docker): local processes run on the host".to_owned()
            }));
        }
        if s.network == Network::None && !s.ports.is_empty() {
            return Err(usage(
                "--port needs a network: with --network none nothing outside the sandbox can reach its ports (the runtime alone is reached, over a Unix socket)",
            ));
        }
        if s.cpus.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err(usage("--cpus must be positive"));
        }
        if s.memory_mb == Some(0) {
            return Err(usage("--memory must be positive"));
        }
        if let Some(k) = s.labels.keys().find(|k| k.starts_with("dev.sbx.")) {
            return Err(usage(format!("label `{k}` is reserved for sbx")));
        }
        for agent in &self.credentials {
            if agent.is_empty() {
                return Err(usage("--credentials: an empty agent name"));
            }
        }
        Ok(())
    }

    /// Unix seconds after which `sbx gc` may remove it.
    fn expires_at(&self, now: u64) -> Option<u64> {
        self.sandbox.ttl.map(|t| now + t.as_secs())
    }

    /// The spec with sbx's labels (ownership, name, run, creator, state database, credentials, expiry).
    fn labelled_spec(&self, state_id: &str, expires_at: Option<u64>) -> SandboxSpec {
        let mut spec = self.sandbox.clone();
        let l = &mut spec.labels;
        l.insert(labels::MANAGED.into(), "true".into());
        l.insert(labels::NAME.into(), spec.name.clone());
        l.insert(labels::RUN_ID.into(), self.run_id.clone());
        l.insert(labels::CREATOR_PID.into(), std::process::id().to_string());
        l.insert(labels::CREATOR_HOST.into(), hostname());
        l.insert(labels::STATE_ID.into(), state_id.into());
        if !self.credentials.is_empty() {
            l.insert(labels::CREDENTIALS.into(), self.credentials.join(","));
        }
        if let Some(e) = expires_at {
            l.insert(labels::EXPIRES_AT.into(), e.to_string());
        }
        spec
    }
}

/// This machine's host name (for labels).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

/// The variables that hand `agents`' credentials to agent sessions (`ANTHROPIC_API_KEY`, …), pushed to
/// the runtime over its API once it answers; an error names an agent with none.
pub fn credential_env(agents: &[String]) -> Result<Vec<(String, String)>> {
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    let found = sbx_agent::credentials::for_agents(&sbx_agent::credentials::ExtractOptions::from_process(), agents).map_err(usage)?;
    Ok(found
        .into_iter()
        .map(|(var, value)| {
            crate::redact::register(value.expose());
            (var.to_string(), value.expose().to_owned())
        })
        .collect())
}

/// A sandbox that is up and recorded.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Its sbx name.
    pub name: String,
    /// Its provider.
    pub provider: &'static str,
    /// The provider's id.
    pub id: String,
    /// Where its runtime is.
    pub endpoint: Endpoint,
    /// Unix seconds after which `sbx gc` may remove it.
    pub expires_at: Option<u64>,
    /// How long each phase took.
    pub phases: Phases,
}

impl Provisioned {
    /// `sbx up --json`'s object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "provider": self.provider, "id": self.id, "endpoint": self.endpoint,
            "expiresAt": self.expires_at, "phases": self.phases,
        })
    }
}

/// How [`up`] reports.
#[derive(Clone)]
pub struct UpOptions {
    /// Progress (a [`Progress`] for commands, [`lifecycle::Silent`] for `sbx run`).
    pub observer: Arc<dyn Observer>,
    /// Image-pull progress (Docker).
    pub pull_bars: Option<Arc<LayerBars>>,
    /// Where phases are recorded (the caller keeps a clone to read them after an interruption).
    pub phases: PhaseRecorder,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self { observer: Arc::new(lifecycle::Silent), pull_bars: None, phases: PhaseRecorder::default() }
    }
}

/// Forgets a reserved name unless [`commit`](Self::commit)ted (also when the future holding it is
/// dropped by Ctrl-C).
struct Reservation<'a> {
    state: &'a State,
    name: String,
    done: bool,
}

impl Reservation<'_> {
    fn commit(mut self) {
        self.done = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.state.remove(&self.name);
        }
    }
}

/// Makes the planned sandbox ready and records it: reserve the name, create (guarded), bootstrap,
/// record. On failure, or when the future is dropped (Ctrl-C), nothing is left: not the sandbox (unless
/// kept), not the state row.
pub async fn up(ctx: &Ctx, plan: &Plan, opts: UpOptions) -> Result<Provisioned> {
    plan.validate()?;
    let name = plan.sandbox.name.clone();
    // Read the credentials first: a missing one fails before anything is created.
    let mut session_env = credential_env(&plan.credentials)?;
    let relay_token = match &plan.keyless {
        Some(policy) => {
            policy.check()?;
            let t = policy.mint(&name);
            session_env.extend(crate::keyless::session_env(&t));
            Some(t)
        }
        None => None,
    };
    let expires_at = plan.expires_at(now_secs());
    let spec = plan.labelled_spec(&ctx.state.instance_id()?, expires_at);
    let provider: Arc<dyn Provider> = match &plan.ssh {
        Some(flags) if plan.provider.name == registry::SSH.name => Arc::new(ssh_provider(Some(flags))),
        _ => provider_with_pull_bars(plan.provider.name, opts.pull_bars.clone()).await?,
    };
    let runtime = bootstrap::locate_runtime(plan.provider.capabilities.isolated)?;
    if !ctx.state.reserve(&name, plan.provider.name, &plan.run_id, &spec.labels, expires_at)? {
        return Err(usage(format!("a sandbox named `{name}` already exists; pick another --name or `sbx down {name}`")));
    }
    let reservation = Reservation { state: &ctx.state, name: name.clone(), done: false };
    if !plan.provider.capabilities.isolated {
        let text = format!(
            "note: the {} provider confines the file API to the sandbox directory, but commands run on this host as you (no isolation)",
            plan.provider.name
        );
        opts.observer.event(&Event::Message { text });
    }
    let lc = Lifecycle::new(provider)
        .with_runtime(runtime)
        .with_observer(opts.observer.clone())
        .with_phases(opts.phases.clone())
        .keep_on_failure(plan.keep)
        .with_session_env(session_env);
    // The id goes into the state inside the create phase, before anyone hears it is done: a `sbx up`
    // killed right after still leaves a row `sbx gc` can match to the sandbox.
    let mut recorded = Ok(());
    let guard = lc.create_then(&spec, |s| recorded = ctx.state.set_id(&name, &s.id)).await?;
    recorded?;
    let booted = match lc.bootstrap(&guard).await {
        Ok(b) => b,
        Err(e) => {
            let (id, kept) = (guard.id().to_owned(), guard.kept());
            if let Err(cleanup) = guard.discard().await {
                tracing::warn!(sandbox = %id, error = %cleanup, "could not destroy the half-made sandbox (`sbx gc` will)");
            }
            let e = anyhow::Error::new(e);
            if kept {
                ctx.state.set_status(&name, "kept")?;
                reservation.commit();
                return Err(e.context(format!("sandbox `{name}` ({id}) was kept for debugging; `sbx down {name}` removes it")));
            }
            return Err(e);
        }
    };
    crate::redact::register(&booted.runtime.token);
    let phases = guard.recorder().phases();
    ctx.state.set_phases(&name, &phases)?;
    ctx.state.set_ready(&name, &booted.runtime.endpoint, &booted.runtime.token, &booted.layout)?;
    if let Some(t) = &relay_token {
        ctx.state.put_relay_token(t)?;
    }
    let sandbox = guard.disarm();
    reservation.commit();
    Ok(Provisioned { name, provider: plan.provider.name, id: sandbox.id, endpoint: booted.runtime.endpoint, expires_at, phases })
}

/// Destroys sandbox `name` and forgets it, for `sbx down`, `sbx run` and `sbx acp --rm`. Its relay
/// token is revoked first: a sandbox that cannot be destroyed still loses its way to the model. On
/// error it stays recorded, so `sbx down` or `sbx gc` can try again.
pub async fn down(ctx: &Ctx, name: &str) -> Result<()> {
    let rec = ctx.record(name)?;
    ctx.state.revoke_relay_token(name, now_secs())?;
    if !rec.id.is_empty() {
        provider(&rec.provider).await?.destroy(&rec.id).await?;
    }
    ctx.state.remove(name)?;
    Ok(())
}

/// `sbx up --resume ID`: records an existing sandbox under `name` (default: its sbx name), resumes it
/// if paused, and starts the runtime in it with a fresh token. It is not ours: a failure only forgets it.
pub async fn adopt(ctx: &Ctx, provider_name: &str, id: &str, name: Option<String>, credentials: &[String], observer: Arc<dyn Observer>) -> Result<Provisioned> {
    let info = info(provider_name)?;
    let session_env = credential_env(credentials)?;
    let provider = provider(info.name).await?;
    let Some(sandbox) = provider.get(id).await? else {
        return Err(usage(format!("no {} sandbox `{id}` (`sbx ls --json` lists the ones sbx knows)", info.name)));
    };
    if let Some(rec) = ctx.state.list()?.into_iter().find(|r| r.id == sandbox.id && r.provider == info.name) {
        return Err(usage(format!("sandbox `{id}` is already recorded as `{}`", rec.name)));
    }
    let name = name.or_else(|| sandbox.sbx_name().map(str::to_owned)).unwrap_or_else(|| format!("sbx-{}", &bootstrap::fresh_token()[..6]));
    validate_name(&name)?;
    let runtime = bootstrap::locate_runtime(info.capabilities.isolated)?;
    let run_id = sandbox.labels.get(labels::RUN_ID).cloned().unwrap_or_else(|| bootstrap::fresh_token()[..12].to_owned());
    let expires_at = sandbox.labels.get(labels::EXPIRES_AT).and_then(|e| e.parse().ok());
    if !ctx.state.reserve(&name, info.name, &run_id, &sandbox.labels, expires_at)? {
        return Err(usage(format!("a sandbox named `{name}` already exists; pick another --name")));
    }
    let reservation = Reservation { state: &ctx.state, name: name.clone(), done: false };
    ctx.state.set_id(&name, &sandbox.id)?;
    let lc = Lifecycle::new(provider).with_runtime(runtime).with_observer(observer).with_session_env(session_env);
    let ready = lc.adopt(id).await?;
    crate::redact::register(&ready.runtime.token);
    ctx.state.set_phases(&name, &ready.phases)?;
    ctx.state.set_ready(&name, &ready.runtime.endpoint, &ready.runtime.token, &ready.layout)?;
    reservation.commit();
    Ok(Provisioned { name, provider: info.name, id: id.to_owned(), endpoint: ready.runtime.endpoint, expires_at, phases: ready.phases })
}

/// Draws lifecycle events: a spinner per phase on a TTY (with bytes for the upload), plain
/// `<phase> ... done (N ms)` lines off it, JSON lines on stderr under `--json`, nothing with `-q`.
pub struct Progress {
    out: Output,
    provider: &'static str,
    bars: Mutex<HashMap<Phase, indicatif::ProgressBar>>,
}

impl Progress {
    /// Progress of making a sandbox on `provider`.
    pub fn new(out: &Output, provider: &'static str) -> Self {
        Self { out: out.clone(), provider, bars: Mutex::default() }
    }

    fn label(&self, phase: Phase) -> String {
        match phase {
            Phase::Create => format!("creating sandbox on {}", self.provider),
            other => other.describe().to_owned(),
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event) {
        if self.out.quiet > 0 {
            return;
        }
        if self.out.json {
            if let Ok(line) = serde_json::to_string(event) {
                eprintln!("{line}");
            }
            return;
        }
        let mut bars = self.bars.lock().expect("progress bars");
        match event {
            Event::PhaseStarted { phase } if self.out.fancy => {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.set_style(indicatif::ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}").expect("valid template"));
                pb.set_message(self.label(*phase));
                pb.enable_steady_tick(Duration::from_millis(80));
                bars.insert(*phase, pb);
            }
            Event::PhaseStarted { .. } => {}
            Event::Progress { phase, done, total } => {
                if let Some(pb) = bars.get(phase) {
                    let of = total.map(|t| format!(" of {:.1} MB", t as f64 / 1e6)).unwrap_or_default();
                    pb.set_message(format!("{} ({:.1} MB{of})", self.label(*phase), *done as f64 / 1e6));
                }
            }
            Event::PhaseFinished { phase, duration_ms, outcome, .. } => {
                let what = self.label(*phase);
                let word = match outcome {
                    Outcome::Ok => "done",
                    Outcome::Failed => "failed",
                    Outcome::Interrupted => "interrupted",
                    Outcome::Skipped => "skipped",
                };
                match bars.remove(phase) {
                    Some(pb) if *outcome == Outcome::Ok => pb.finish_with_message(format!("✓ {what} ({duration_ms} ms)")),
                    Some(pb) => pb.abandon_with_message(format!("✗ {what} ({word})")),
                    None if *outcome == Outcome::Ok => eprintln!("{what} ... done ({duration_ms} ms)"),
                    None => eprintln!("{what} ... {word}"),
                }
            }
            Event::Message { text } => eprintln!("{text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(provider: &str) -> Plan {
        Plan::new(provider, "ok-name").expect("registered")
    }

    #[test]
    fn plans_refuse_what_cannot_work_and_say_why() {
        plan("docker").validate().expect("a plain plan");
        let mut p = plan("local");
        p.sandbox.network = Network::None;
        assert!(p.validate().unwrap_err().to_string().contains("local processes run on the host"));
        let mut p = plan("docker");
        p.sandbox.network = Network::None;
        p.sandbox.ports = vec![8080];
        assert!(p.validate().unwrap_err().to_string().contains("--port needs a network"));
        let mut p = plan("e2b");
        p.sandbox.network = Network::None;
        assert!(p.validate().unwrap_err().to_string().contains("cannot cut"));
        let mut p = plan("docker");
        p.sandbox.name = "-bad".into();
        assert!(p.validate().is_err());
        let e = Plan::new("kubernetes", "x").unwrap_err().to_string();
        assert_eq!(e, "unknown provider `kubernetes`; valid providers: local, docker, e2b, daytona, vercel, ssh, modal");
    }

    #[test]
    fn sbx_labels_mark_ownership_and_expiry() {
        let mut p = plan("docker");
        p.credentials = vec!["claude".into()];
        let spec = p.labelled_spec("state-1", Some(99));
        assert_eq!(spec.labels[labels::MANAGED], "true");
        assert_eq!(spec.labels[labels::NAME], "ok-name");
        assert_eq!(spec.labels[labels::RUN_ID], p.run_id);
        assert_eq!(spec.labels[labels::STATE_ID], "state-1");
        assert_eq!(spec.labels[labels::CREDENTIALS], "claude");
        assert_eq!(spec.labels[labels::EXPIRES_AT], "99");
    }
}
