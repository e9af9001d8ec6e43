//! One task of `sbx run`, start to end: up → workspace → setup → agent → check → collect → down,
//! writing everything it learns into the task's results directory as it goes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use sbx_agent::api::process::RunRequest;
use sbx_agent::api::session::Usage;
use sbx_agent::client::{Client, WriteOptions};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::config::Workspace;
use super::plan::PlannedTask;
use crate::context::Ctx;
use crate::output::Output;

/// The workspace inside every task's sandbox (relative: the runtime resolves it in its root or cwd).
pub const WORK: &str = "work";

/// How a task ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The agent finished and the check passed (or there was no check).
    Passed,
    /// The check failed, or the agent's turn failed.
    Failed,
    /// Something around the agent failed (sandbox, workspace, setup).
    Error,
    /// Ran out of time.
    TimedOut,
    /// Stopped by Ctrl-C.
    Cancelled,
}

/// What `task.json` holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    pub name: String,
    /// The task it came from (its name before matrix expansion).
    pub base: String,
    /// The matrix values that made it (empty without a matrix).
    pub matrix: BTreeMap<String, String>,
    pub status: Status,
    /// Why, for anything but `passed`.
    pub message: Option<String>,
    pub agent: String,
    pub provider: String,
    pub sandbox: Option<String>,
    pub attempts: u32,
    /// The phases that ran, in order; a stopped task's last one is `interrupted`.
    pub phases: Vec<Phase>,
    /// When this attempt started (Unix milliseconds), for the report's timeline.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub check_exit_code: Option<i32>,
    pub usage: Option<Usage>,
    /// What the agent said the turn cost in US dollars, when it says.
    pub cost_usd: Option<f64>,
    pub events: u64,
    pub artifacts: Vec<String>,
    /// The diff's size and where it is (`None` when the task did not get as far as a workspace).
    pub diff: Option<super::diff::DiffInfo>,
    pub kept: bool,
    /// Where the agent came from and how long that took (also the `agent_install` phase).
    pub agent_install: Option<crate::agents_setup::InstallReport>,
    /// The SSH host it ran on (`hosts:` of an ssh run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One phase of a task: `create`, `runtime_upload`, `start`, `healthy` (from the lifecycle, as
/// `sbx up --json` shows them), then `workspace`, `setup`, `agent_install`, `agent`, `diff`, `check`,
/// `collect`, `down`.
pub use sbx_providers::lifecycle::PhaseRecord as Phase;

/// How a phase ended.
pub use sbx_providers::lifecycle::Outcome as PhaseOutcome;

/// The error of a phase cut short by Ctrl-C or the timeout (the task's status says which).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Stopped {}

/// How long a stopped task may take to wind down (cancel the turn, fetch its last events, take the
/// diff) before it is dropped where it is.
const GRACE: Duration = Duration::from_secs(60);

/// Files of an attempt, removed before the next one so none is mistaken for the new attempt's.
const ATTEMPT_FILES: [&str; 6] = ["events.jsonl", "transcript.md", "diff.patch", "setup.log", "check.log", "exit_code"];

/// What every task shares.
pub struct TaskEnv<'a> {
    pub ctx: &'a Ctx,
    pub run_id: &'a str,
    pub results: &'a Path,
    pub keep: bool,
    pub keep_failed: bool,
    /// Diffs up to this many bytes are shown in `summary.md`.
    pub diff_inline_limit: u64,
    pub cancel: CancellationToken,
    pub progress: &'a dyn Fn(&str, &str),
    /// `hosts:` of the file, for `provider: ssh` tasks.
    pub hosts: Option<super::hosts::HostPool>,
}

/// Runs a task with its retries; never fails (failures are in the result). `index` is the task's
/// position in this run's plan (unique in the run; it keeps sandbox names apart).
pub async fn run(env: &TaskEnv<'_>, task: &PlannedTask, index: usize) -> TaskResult {
    let dir = env.results.join(&task.name);
    let _ = std::fs::create_dir_all(&dir);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut result = run_once(env, task, &dir, index, attempt).await;
        result.attempts = attempt;
        let retry = matches!(result.status, Status::Failed | Status::Error | Status::TimedOut)
            && attempt <= task.retries
            && !env.cancel.is_cancelled();
        write_json(&dir.join("task.json"), &result);
        // Only a check that ran has an exit code; task.json's status and message say why not.
        match result.check_exit_code {
            Some(code) => {
                let _ = std::fs::write(dir.join("exit_code"), format!("{code}\n"));
            }
            None => {
                let _ = std::fs::remove_file(dir.join("exit_code"));
            }
        }
        if !retry {
            return result;
        }
        (env.progress)(&task.name, &format!("retrying (attempt {} of {})", attempt + 1, task.retries + 1));
    }
}

async fn run_once(env: &TaskEnv<'_>, task: &PlannedTask, dir: &Path, index: usize, attempt: u32) -> TaskResult {
    // An ssh task waits for a host with a free slot before its clock starts; the lease is given back
    // when this attempt's sandbox is down.
    let lease = match &env.hosts {
        Some(pool) if task.provider == sbx_providers::registry::SSH.name => {
            tokio::select! {
                l = pool.acquire() => Some(l),
                _ = env.cancel.cancelled() => None,
            }
        }
        _ => None,
    };
    let started = Instant::now();
    for f in ATTEMPT_FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let mut r = TaskResult {
        name: task.name.clone(),
        base: task.base.clone(),
        matrix: task.matrix.clone(),
        status: Status::Error,
        message: None,
        agent: task.agent.clone(),
        provider: task.provider.clone(),
        sandbox: None,
        attempts: attempt,
        phases: Vec::new(),
        started_at_ms: now_ms(),
        duration_ms: 0,
        check_exit_code: None,
        usage: None,
        cost_usd: None,
        events: 0,
        artifacts: Vec::new(),
        diff: None,
        kept: false,
        agent_install: None,
        host: lease.as_ref().map(|l| l.host.clone()),
    };
    let name = sandbox_name(env.run_id, index, &task.name, attempt);
    r.sandbox = Some(name.clone());
    // Ctrl-C (the run's token) and the timeout both fire `stop`; the steps then wind down and still
    // write what they have (see `steps`), within GRACE.
    let stop = env.cancel.child_token();
    let mut timed_out = false;
    let outcome = {
        let work = steps(env, task, dir, &name, &mut r, &stop);
        tokio::pin!(work);
        let first = tokio::select! {
            o = &mut work => Some(o),
            _ = tokio::time::sleep(task.timeout) => None,
            _ = stop.cancelled() => None,
        };
        match first {
            Some(o) => o,
            None => {
                timed_out = !env.cancel.is_cancelled();
                stop.cancel();
                tokio::time::timeout(GRACE, work)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("did not wind down within {}s of being stopped", GRACE.as_secs())))
            }
        }
    };
    if let Err(e) = outcome {
        let during = r.phases.iter().find(|p| p.outcome == PhaseOutcome::Interrupted).map(|p| format!(" during {}", p.name)).unwrap_or_default();
        let why = if e.is::<Stopped>() { String::new() } else { format!(": {}", crate::output::error_line(&e)) };
        let (status, message) = if timed_out {
            (Status::TimedOut, format!("timed out after {}{during}{why}", humantime(task.timeout)))
        } else if env.cancel.is_cancelled() {
            (Status::Cancelled, format!("cancelled{during}{why}"))
        } else {
            (Status::Error, crate::output::error_line(&e))
        };
        r.status = status;
        r.message = Some(crate::redact::redact(&message));
    }
    // A task stopped before its agent ran still has a transcript that says so.
    if !dir.join("transcript.md").exists() {
        let why = r.message.clone().unwrap_or_default();
        let _ = std::fs::write(dir.join("transcript.md"), format!("# No agent session\n\nThe agent did not run: {why}\n"));
        let _ = std::fs::File::create(dir.join("events.jsonl"));
    }
    // Down, unless asked to keep it.
    let keep = env.keep || (env.keep_failed && r.status != Status::Passed);
    if env.ctx.state.get(&name).ok().flatten().is_some() {
        if keep && !env.cancel.is_cancelled() {
            r.kept = true;
        } else {
            (env.progress)(&task.name, "down");
            let t = Instant::now();
            destroy(env.ctx, &name).await;
            push(&mut r, "down", t, PhaseOutcome::Ok);
        }
    }
    r.duration_ms = started.elapsed().as_millis() as u64;
    r
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `90s`, `20m`, `1h30m`.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    let mut out = String::new();
    for (unit, n) in [("h", s / 3600), ("m", s % 3600 / 60), ("s", s % 60)] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { format!("{}ms", d.as_millis()) } else { out }
}

fn push(r: &mut TaskResult, name: &str, t: Instant, outcome: PhaseOutcome) {
    r.phases.push(Phase { name: name.to_owned(), duration_ms: t.elapsed().as_millis() as u64, outcome });
}

/// Runs one phase, recording it; `stop` cuts it short with [`Stopped`].
async fn phase<T>(r: &mut TaskResult, name: &str, stop: &CancellationToken, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let t = Instant::now();
    // `SBX_TEST_FAIL_PHASE` reaches the task's own phases too (tests only).
    let fault = name.parse::<sbx_providers::lifecycle::Phase>().ok().and_then(sbx_providers::lifecycle::phases::injected_fault);
    let out = match fault {
        Some(e) => Err(e.into()),
        None => tokio::select! {
            o = f => o,
            _ = stop.cancelled() => Err(Stopped.into()),
        },
    };
    let outcome = match &out {
        Ok(_) => PhaseOutcome::Ok,
        Err(e) if e.is::<Stopped>() => PhaseOutcome::Interrupted,
        Err(_) => PhaseOutcome::Failed,
    };
    push(r, name, t, outcome);
    out
}

/// A sandbox name for the task: `r<run>-<index>-<task>[-a<attempt>]`, lower case, within the
/// 63-character limit of the strictest provider. The run part is the run id's random suffix (not its
/// date: two runs on one day must not meet), and the task's index in the plan makes names unique in
/// the run however the task names are sanitised or cut; the task name is only there to be read.
pub(crate) fn sandbox_name(run_id: &str, index: usize, task: &str, attempt: u32) -> String {
    let run = run_id.rsplit('-').next().unwrap_or(run_id);
    let head = format!("r{}-{index}-", run.to_ascii_lowercase());
    let tail = if attempt > 1 { format!("-a{attempt}") } else { String::new() };
    let room = 63usize.saturating_sub(head.len() + tail.len());
    let slug: String = task.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(room).collect();
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() { format!("{}{tail}", head.trim_end_matches('-')) } else { format!("{head}{slug}{tail}") }
}

/// The pipeline; records phases into `r` and sets the status when it gets that far. Once the
/// workspace's baseline exists, the diff is taken whatever happens next (an error, Ctrl-C, the timeout).
async fn steps(env: &TaskEnv<'_>, task: &PlannedTask, dir: &Path, name: &str, r: &mut TaskResult, stop: &CancellationToken) -> Result<()> {
    let quiet = Output { json: false, quiet: 2, fancy: false };

    (env.progress)(&task.name, "up");
    // The lifecycle's phases (create, runtime_upload, start, healthy) become the task's first ones,
    // also when Ctrl-C or the timeout cuts them short (the one running then is `interrupted`).
    let mut plan = up_plan(task, name, env)?;
    if let Some(host) = &r.host {
        plan.ssh = Some(crate::provision::SshFlags { host: Some(host.clone()), ..Default::default() });
    }
    let recorder = sbx_providers::lifecycle::PhaseRecorder::default();
    let opts = crate::provision::UpOptions { phases: recorder.clone(), ..Default::default() };
    let up = tokio::select! {
        o = crate::provision::up(env.ctx, &plan, opts) => o.map(drop),
        _ = stop.cancelled() => Err(Stopped.into()),
    };
    r.phases.extend(recorder.take().0);
    up?;
    let rec = env.ctx.record(name)?;
    let client = env.ctx.client(&rec).await?;

    (env.progress)(&task.name, "workspace");
    let base = phase(r, "workspace", stop, workspace(&client, &quiet, task)).await?;

    let ran = setup_and_agent(env, &client, task, dir, r, stop).await;

    // The diff against the baseline: the agent's commits, edits and new files (also after a stop).
    let t = Instant::now();
    match super::diff::take(&client, &base, &task.name, dir, env.diff_inline_limit).await {
        Ok(d) => {
            r.diff = Some(d);
            push(r, "diff", t, PhaseOutcome::Ok);
        }
        Err(e) => {
            push(r, "diff", t, PhaseOutcome::Failed);
            if ran.is_ok() {
                return Err(e);
            }
        }
    }
    let agent_ok = ran?;

    (env.progress)(&task.name, "check");
    let mut passed = agent_ok;
    if let Some(check) = &task.check {
        let out = phase(r, "check", stop, async {
            let out = shell(&client, check, &task.env, task.timeout).await?;
            let log = [format!("$ {check}\n").as_bytes(), &out.stdout, &out.stderr, format!("(exit {})\n", out.exit_code.unwrap_or(-1)).as_bytes()].concat();
            std::fs::write(dir.join("check.log"), log)?;
            Ok(out)
        })
        .await?;
        r.check_exit_code = out.exit_code;
        passed = passed && out.exit_code == Some(0);
    }

    if !task.artifacts.is_empty() {
        (env.progress)(&task.name, "collect");
        r.artifacts = phase(r, "collect", stop, collect(&client, &quiet, task, &dir.join("artifacts"))).await?;
    }
    r.status = if passed { Status::Passed } else { Status::Failed };
    if !passed {
        r.message = Some(match (agent_ok, r.check_exit_code) {
            (false, _) => "the agent's turn did not complete (see events.jsonl)".into(),
            (true, Some(c)) => format!("the check exited with {c} (see check.log)"),
            (true, None) => "the check was killed (see check.log)".into(),
        });
    }
    Ok(())
}

/// `setup` commands, then the agent's turn; `Ok(true)` when the turn completed.
async fn setup_and_agent(env: &TaskEnv<'_>, client: &Client, task: &PlannedTask, dir: &Path, r: &mut TaskResult, stop: &CancellationToken) -> Result<bool> {
    (env.progress)(&task.name, "setup");
    phase(r, "setup", stop, async {
        let mut setup_log = std::fs::File::create(dir.join("setup.log"))?;
        for cmd in &task.setup {
            let out = shell(client, cmd, &task.env, task.timeout).await?;
            writeln!(setup_log, "$ {cmd}")?;
            setup_log.write_all(&out.stdout)?;
            setup_log.write_all(&out.stderr)?;
            writeln!(setup_log, "(exit {})", out.exit_code.unwrap_or(-1))?;
            if out.exit_code != Some(0) {
                anyhow::bail!("setup command `{cmd}` exited with {:?} (see setup.log)", out.exit_code);
            }
        }
        Ok(())
    })
    .await?;

    (env.progress)(&task.name, &format!("agent install ({})", task.agent));
    let from: crate::agents_setup::AgentsFrom = task.agent_install.parse().map_err(anyhow::Error::msg)?;
    let installed = phase(r, "agent_install", stop, crate::agents_setup::ensure_agent(client, &task.agent, &from, task.agent_version.as_deref())).await?;
    r.agent_install = Some(installed);

    (env.progress)(&task.name, &format!("agent ({})", task.agent));
    let t = Instant::now();
    let out = super::agent::run(env, client, task, dir, r, stop).await;
    let outcome = match &out {
        Ok(_) => PhaseOutcome::Ok,
        Err(e) if e.is::<Stopped>() => PhaseOutcome::Interrupted,
        Err(_) => PhaseOutcome::Failed,
    };
    push(r, "agent", t, outcome);
    out
}

/// The sandbox plan of a task: its image, limits, network and ttl, a `sbx-task` label, its agent's
/// LLM endpoint as sandbox env, and the credentials it names. It belongs to the run (its run id), so
/// `sbx gc` and Ctrl-C find it.
fn up_plan(task: &PlannedTask, name: &str, env: &TaskEnv<'_>) -> Result<crate::provision::Plan> {
    let mut plan = crate::provision::Plan::new(&task.provider, name)?;
    plan.run_id = env.run_id.to_owned();
    let s = &mut plan.sandbox;
    s.image = task.image.clone();
    s.cpus = task.cpus;
    s.memory_mb = task.memory.map(|m| m.bytes().div_ceil(1 << 20));
    s.network = match task.network {
        super::values::NetworkMode::None => sbx_providers::Network::None,
        super::values::NetworkMode::Bridge => sbx_providers::Network::Bridge,
    };
    s.ttl = task.ttl.map(|t| t.0);
    s.labels.insert("sbx-task".into(), task.name.clone());
    let llm = &task.llm;
    let urls: Vec<String> = [(None, &llm.base_url), (Some("claude"), &llm.claude), (Some("codex"), &llm.codex)]
        .into_iter()
        .filter_map(|(agent, url)| url.as_ref().filter(|u| !u.trim().is_empty()).map(|u| agent.map(|a| format!("{a}={u}")).unwrap_or_else(|| u.clone())))
        .collect();
    s.env.extend(crate::agents_setup::sandbox_env(&urls).map_err(crate::output::usage)?);
    plan.credentials = task.credentials.clone();
    if task.keyless {
        if !crate::keyless::AGENTS.iter().any(|(a, _)| *a == task.agent) {
            return Err(crate::output::usage(format!("task `{}`: keyless needs a claude or codex agent, not `{}`", task.name, task.agent)));
        }
        plan.keyless = Some(crate::keyless::Policy { agents: vec![task.agent.clone()], ..Default::default() });
    }
    // A task whose sandbox would be kept on failure keeps a half-made one too.
    plan.keep = env.keep || env.keep_failed;
    Ok(plan)
}

/// Puts the workspace in place and commits it as the baseline the diff is taken against; returns
/// the baseline's commit id.
async fn workspace(client: &Client, quiet: &Output, task: &PlannedTask) -> Result<String> {
    match &task.workspace {
        Some(Workspace::Dir(local)) => {
            let local = PathBuf::from(local);
            anyhow::ensure!(local.is_dir(), "workspace `{}` is not a directory", local.display());
            client.mkdir(WORK, true).await?;
            crate::commands::fs::transfer::upload_dir(client, quiet, &local, WORK).await?;
        }
        Some(Workspace::Git(g)) => {
            let checkout = g.git_ref.as_deref().map(|r| format!(" && git -C {WORK} checkout -q {}", sh_quote(r))).unwrap_or_default();
            let out = shell_in(client, None, &format!("git clone -q {} {WORK}{checkout}", sh_quote(&g.git)), &BTreeMap::new(), Duration::from_secs(600)).await?;
            anyhow::ensure!(out.exit_code == Some(0), "git clone {} failed: {}", g.git, out.stderr.trim_ascii().escape_ascii());
        }
        None => {
            client.mkdir(WORK, true).await?;
        }
    }
    if let Some(file) = &task.instructions {
        let text = std::fs::read(file).with_context(|| format!("instructions {}", file.display()))?;
        let target = if task.agent == "claude" { "CLAUDE.md" } else { "AGENTS.md" };
        client.write_bytes(&format!("{WORK}/{target}"), text, WriteOptions::default()).await?;
    }
    for skill in &task.skills {
        let base = skill.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "skill".into());
        crate::commands::fs::transfer::upload_dir(client, quiet, skill, &format!(".sbx-run/skills/{base}")).await?;
    }
    // A baseline commit (in a repository of its own when the workspace is not one), so the diff shows
    // exactly what the task changed.
    let base = "git rev-parse --git-dir >/dev/null 2>&1 || git init -q; git add -A && \
                git -c user.email=sbx@localhost -c user.name=sbx commit -q --allow-empty -m 'sbx baseline' && git rev-parse HEAD";
    let out = shell(client, base, &BTreeMap::new(), Duration::from_secs(120)).await?;
    anyhow::ensure!(out.exit_code == Some(0), "could not record the workspace baseline (is git installed in the image?): {}", out.stderr.trim_ascii().escape_ascii());
    Ok(String::from_utf8_lossy(out.stdout.trim_ascii()).into_owned())
}

/// Downloads the workspace files matching the task's globs.
async fn collect(client: &Client, quiet: &Output, task: &PlannedTask, into: &Path) -> Result<Vec<String>> {
    let patterns: Vec<glob::Pattern> = task
        .artifacts
        .iter()
        .map(|g| glob::Pattern::new(g).map_err(|e| anyhow::anyhow!("artifact glob `{g}`: {e}")))
        .collect::<Result<_>>()?;
    let listing = shell(client, "find . -path ./.git -prune -o -type f -print", &BTreeMap::new(), Duration::from_secs(60)).await?;
    let mut got = Vec::new();
    // Names that are not UTF-8 cannot match a glob: they are skipped, not mangled.
    let names = listing.stdout.split(|&b| b == b'\n').filter_map(|l| std::str::from_utf8(l).ok()).filter(|l| !l.is_empty());
    for path in names.map(|l| l.trim_start_matches("./")) {
        if !patterns.iter().any(|p| p.matches(path)) {
            continue;
        }
        let remote = format!("{WORK}/{path}");
        let local = into.join(path);
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let entry = client.stat(&remote).await?;
        crate::commands::fs::transfer::download_file(client, quiet, &remote, &local, &entry).await?;
        got.push(path.to_owned());
    }
    Ok(got)
}

async fn shell(client: &Client, cmd: &str, env: &BTreeMap<String, String>, timeout: Duration) -> Result<sbx_agent::api::process::RunResponse> {
    shell_in(client, Some(WORK), cmd, env, timeout).await
}

async fn shell_in(client: &Client, cwd: Option<&str>, cmd: &str, env: &BTreeMap<String, String>, timeout: Duration) -> Result<sbx_agent::api::process::RunResponse> {
    let mut req = RunRequest::shell(cmd);
    req.cwd = cwd.map(str::to_owned);
    req.env = env.clone();
    req.timeout_ms = Some(timeout.as_millis().min(3_600_000) as u64);
    Ok(client.run(&req).await?)
}

fn sh_quote(s: &str) -> String {
    sbx_agent::credentials::shell_quote(s)
}

/// Destroys a sandbox by name and forgets it (errors are left for `sbx gc`).
pub async fn destroy(ctx: &Ctx, name: &str) {
    if let Err(e) = crate::provision::down(ctx, name).await {
        tracing::debug!(error = %e, sandbox = name, "left for sbx gc");
    }
}

fn write_json(path: &Path, v: &impl Serialize) {
    if let Ok(text) = serde_json::to_string_pretty(v) {
        let _ = std::fs::write(path, text + "\n");
    }
}
