//! `sbx up`: create a sandbox, put the runtime in it, start it, wait until it answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use sbx_providers::bootstrap;
use sbx_providers::{labels, Labels, Network, Provider, SandboxSpec};

use crate::context::{provider_with_pull_bars, Ctx};
use crate::output::{usage, Exit, Interrupted};
use crate::state::now_secs;

/// Test hook: milliseconds `sbx up` waits between creating the sandbox and uploading the runtime, so
/// tests can interrupt or kill it at that exact point (a local `up` is otherwise over in ~50 ms).
pub const ENV_TEST_PAUSE_AFTER_CREATE: &str = "SBX_TEST_PAUSE_AFTER_CREATE_MS";

/// `sbx up` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx up --provider local --name dev\n  sbx up --provider docker --name box --cpus 2 --memory 2g --env FOO=bar\n  sbx up --provider docker --network none      # no network; the runtime is reached over a Unix socket\n  sbx up --provider docker --ttl 2h            # `sbx gc` removes it after two hours\n  sbx up --provider docker --credentials claude,codex   # agent sessions get this machine's keys")]
pub struct UpArgs {
    /// Where to create it.
    #[arg(short, long, default_value = "local", env = "SBX_PROVIDER")]
    pub provider: String,
    /// Its name (letters, digits, `-`, `_`; default: generated).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Image or template (default: sbx's base image).
    #[arg(long)]
    pub image: Option<String>,
    /// An environment variable for everything in the sandbox (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file of K=V lines.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// CPU limit in cores (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory limit (e.g. 512m, 2g).
    #[arg(long)]
    pub memory: Option<String>,
    /// Network: `bridge` (default) or `none`.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "none"])]
    pub network: String,
    /// Expose another port of the sandbox (repeatable).
    #[arg(long = "port")]
    pub ports: Vec<u16>,
    /// A label (repeatable).
    #[arg(short, long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// How long it may live (e.g. 30m, 2h, 1d); `sbx gc` removes it afterwards.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Pass this machine's LLM credentials for these agents to the sandbox's agent sessions
    /// (claude, codex, opencode, amp; comma-separated). Nothing crosses in unless named here.
    #[arg(long, value_delimiter = ',', value_name = "AGENTS")]
    pub credentials: Vec<String>,
    /// Take over an existing sandbox of --provider by its id instead of making one: resume it if it is
    /// paused, start the runtime in it, and record it under --name (default: its sbx name).
    #[arg(long, value_name = "ID", conflicts_with_all = ["image", "env", "env_file", "cpus", "memory", "ports", "labels", "ttl"])]
    pub resume: Option<String>,
    /// Agents to put in the sandbox once it is up (claude, codex; comma-separated). With
    /// --agents-from and no --agents: both.
    #[arg(long, value_delimiter = ',', value_name = "AGENTS", help_heading = "Agents")]
    pub agents: Vec<String>,
    /// How agents get in: auto (image, then this machine's binary, then the vendor channel, then
    /// pip), from-host, vendor, image, pip, or mirror=URL.
    #[arg(long, value_name = "SOURCE", help_heading = "Agents")]
    pub agents_from: Option<crate::agents_setup::AgentsFrom>,
    /// The agents' version where the source has versions: stable, latest or e.g. 2.1.7.
    #[arg(long, value_name = "VERSION", help_heading = "Agents")]
    pub agent_version: Option<String>,
    /// The LLM endpoint the sandbox's agents use (a gateway or proxy): URL for every agent, or
    /// AGENT=URL (repeatable). sbx writes each agent's own configuration for it.
    #[arg(long, value_name = "URL", help_heading = "Agents")]
    pub llm_base_url: Vec<String>,
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

fn parse_kv(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(usage(format!("bad {what} `{s}`: expected KEY=VALUE"))),
    }
}

/// Parses `30s`, `15m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| usage(format!("bad duration `{s}`: use e.g. 90s, 30m, 2h, 1d")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(usage(format!("bad duration `{s}`: use e.g. 90s, 30m, 2h, 1d"))),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses `512m`, `2g`, `1024` (MiB).
pub fn parse_memory_mb(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match lower.chars().last() {
        Some('g') => (&lower[..lower.len() - 1], 1024),
        Some('m') => (&lower[..lower.len() - 1], 1),
        _ => (lower, 1),
    };
    let n: u64 = num.parse().map_err(|_| usage(format!("bad memory `{s}`: use e.g. 512m or 2g")))?;
    Ok(n * mult)
}

fn read_env_file(path: &PathBuf, env: &mut BTreeMap<String, String>) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("--env-file {}: {e}", path.display())))?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = parse_kv(line, "line")
            .map_err(|e| usage(format!("{}:{}: {e}", path.display(), i + 1)))?;
        let v = v.trim_matches('"').to_owned();
        env.insert(k, v);
    }
    Ok(())
}

/// The spec `sbx up` asks the provider for, from the flags.
fn build_spec(a: &UpArgs, name: &str, run_id: &str, state_id: &str) -> Result<(SandboxSpec, Option<u64>)> {
    let mut env = BTreeMap::new();
    for f in &a.env_file {
        read_env_file(f, &mut env)?;
    }
    for e in &a.env {
        let (k, v) = parse_kv(e, "--env")?;
        env.insert(k, v);
    }
    env.extend(crate::agents_setup::sandbox_env(&a.llm_base_url).map_err(usage)?);
    let mut user_labels = Labels::new();
    for l in &a.labels {
        let (k, v) = parse_kv(l, "--label")?;
        if k.starts_with("dev.sbx.") {
            return Err(usage(format!("label `{k}` is reserved for sbx")));
        }
        user_labels.insert(k, v);
    }
    let ttl = a.ttl.as_deref().map(parse_duration).transpose()?;
    let expires_at = ttl.map(|t| now_secs() + t.as_secs());
    let mut lbl = user_labels;
    lbl.insert(labels::MANAGED.into(), "true".into());
    lbl.insert(labels::NAME.into(), name.into());
    lbl.insert(labels::RUN_ID.into(), run_id.into());
    lbl.insert(labels::CREATOR_PID.into(), std::process::id().to_string());
    lbl.insert(labels::CREATOR_HOST.into(), hostname());
    lbl.insert(labels::STATE_ID.into(), state_id.into());
    if !a.credentials.is_empty() {
        lbl.insert(labels::CREDENTIALS.into(), a.credentials.join(","));
    }
    if let Some(e) = expires_at {
        lbl.insert(labels::EXPIRES_AT.into(), e.to_string());
    }
    if a.cpus.is_some_and(|c| c <= 0.0) {
        return Err(usage("--cpus must be positive"));
    }
    let spec = SandboxSpec {
        name: name.into(),
        image: a.image.clone(),
        env,
        labels: lbl,
        cpus: a.cpus,
        memory_mb: a.memory.as_deref().map(parse_memory_mb).transpose()?,
        network: if a.network == "none" { Network::None } else { Network::Bridge },
        ports: a.ports.clone(),
        ttl,
    };
    Ok((spec, expires_at))
}

/// This machine's host name (for labels).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

/// Runs `sbx up`.
pub async fn run(ctx: &Ctx, a: UpArgs) -> Result<Exit> {
    if let Some(id) = a.resume.clone() {
        return adopt(ctx, &a, &id).await;
    }
    let name = a.name.clone().unwrap_or_else(|| format!("sbx-{}", &bootstrap::fresh_token()[..6]));
    validate_name(&name)?;
    if a.provider == "local" && a.network == "none" {
        return Err(usage("--network none needs an isolating provider (e.g. --provider docker): local processes run on the host"));
    }
    // Read the credentials first: a missing one fails before anything is created.
    let session_env = credential_env(&a.credentials)?;
    let run_id = bootstrap::fresh_token()[..12].to_owned();
    let (spec, expires_at) = build_spec(&a, &name, &run_id, &ctx.state.instance_id()?)?;
    let bars = std::sync::Arc::new(crate::output::LayerBars::new(&ctx.out));
    let provider = provider_with_pull_bars(&a.provider, Some(bars)).await?;
    let runtime = bootstrap::locate_runtime(provider.capabilities().isolated)?;
    if !ctx.state.reserve(&name, provider.name(), &run_id, &spec.labels, expires_at)? {
        return Err(usage(format!("a sandbox named `{name}` already exists; pick another --name or `sbx down {name}`")));
    }
    if !provider.capabilities().isolated {
        ctx.out.note("note: the local provider confines the file API to the sandbox directory, but commands run on this host as you (no isolation)");
    }
    let work = create_and_boot(ctx, &ctx.out, provider.as_ref(), &spec, &runtime, &session_env);
    let outcome = tokio::select! {
        r = work => r.map_err(Some),
        _ = tokio::signal::ctrl_c() => Err(None),
    };
    match outcome {
        Ok(id) => {
            crate::agents_setup::after_up(ctx, &name, &a).await?;
            let rec = ctx.state.get(&name)?.context("state lost the sandbox")?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({
                    "name": name, "provider": provider.name(), "id": id, "endpoint": rec.endpoint, "expiresAt": expires_at,
                }));
            } else {
                ctx.out.line(&name);
                ctx.out.note(format!(
                    "sandbox `{name}` is up on {}. Next:\n  sbx exec {name} -- <command>\n  sbx shell {name}\n  sbx down {name}",
                    provider.name()
                ));
            }
            Ok(Exit::Success)
        }
        Err(err) => {
            // Interrupted or failed half-way: destroy whatever this run created, found by its label.
            let cleanup = ctx.out.step("cleaning up the half-made sandbox");
            let by_run = Labels::from([(labels::RUN_ID.to_owned(), run_id.clone())]);
            if let Ok(found) = provider.list(&by_run).await {
                for s in found {
                    let _ = provider.destroy(&s.id).await;
                }
            }
            if let Ok(Some(rec)) = ctx.state.get(&name) {
                if !rec.id.is_empty() {
                    let _ = provider.destroy(&rec.id).await;
                }
            }
            ctx.state.remove(&name)?;
            cleanup.done();
            match err {
                Some(e) => Err(e),
                None => Err(Interrupted.into()),
            }
        }
    }
}

/// Creates sandbox `name` for `sbx run` (run id `run_id`, so `sbx gc` and Ctrl-C find it), quietly.
/// On failure nothing of it is left behind (found by its name label, not the run's, which other
/// sandboxes of the run share).
pub async fn create_named(ctx: &Ctx, provider_name: &str, name: &str, run_id: &str, a: &UpArgs) -> Result<()> {
    validate_name(name)?;
    let session_env = credential_env(&a.credentials)?;
    let (spec, expires_at) = build_spec(a, name, run_id, &ctx.state.instance_id()?)?;
    let provider = crate::context::provider(provider_name).await?;
    let runtime = bootstrap::locate_runtime(provider.capabilities().isolated)?;
    if !ctx.state.reserve(name, provider.name(), run_id, &spec.labels, expires_at)? {
        return Err(usage(format!("a sandbox named `{name}` already exists")));
    }
    let quiet = crate::output::Output { json: false, quiet: 2, fancy: false };
    if let Err(e) = create_and_boot(ctx, &quiet, provider.as_ref(), &spec, &runtime, &session_env).await {
        let by_name = Labels::from([(labels::NAME.to_owned(), name.to_owned())]);
        if let Ok(found) = provider.list(&by_name).await {
            for s in found.into_iter().filter(|s| s.labels.get(labels::RUN_ID).map(String::as_str) == Some(run_id)) {
                let _ = provider.destroy(&s.id).await;
            }
        }
        if let Ok(Some(rec)) = ctx.state.get(name) {
            if !rec.id.is_empty() {
                let _ = provider.destroy(&rec.id).await;
            }
        }
        ctx.state.remove(name)?;
        return Err(e);
    }
    Ok(())
}

/// The variables that hand `agents`' credentials to agent sessions (`ANTHROPIC_API_KEY`, …), pushed to
/// the runtime with [`bootstrap::push_session_env`]; an error names an agent with none.
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

async fn create_and_boot(
    ctx: &Ctx,
    out: &crate::output::Output,
    provider: &dyn Provider,
    spec: &SandboxSpec,
    runtime: &std::path::Path,
    session_env: &[(String, String)],
) -> Result<String> {
    let step = out.step(&format!("creating sandbox on {}", provider.name()));
    let sandbox = match provider.create(spec).await {
        Ok(s) => s,
        Err(e) => {
            step.fail();
            return Err(e.into());
        }
    };
    ctx.state.set_id(&spec.name, &sandbox.id)?;
    step.done();
    if let Some(ms) = std::env::var(ENV_TEST_PAUSE_AFTER_CREATE).ok().and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    boot(ctx, out, provider, &spec.name, &sandbox.id, runtime, session_env, false).await?;
    Ok(sandbox.id)
}

/// `sbx up --resume ID`: records an existing sandbox under a name, resumes it if paused, and starts the
/// runtime in it with a fresh token (stopping a runtime left running with a token nobody has).
async fn adopt(ctx: &Ctx, a: &UpArgs, id: &str) -> Result<Exit> {
    let session_env = credential_env(&a.credentials)?;
    let provider = provider_with_pull_bars(&a.provider, None).await?;
    let Some(sandbox) = provider.get(id).await? else {
        return Err(usage(format!("no {} sandbox `{id}` (`sbx ls --json` lists the ones sbx knows)", a.provider)));
    };
    if let Some(rec) = ctx.state.list()?.into_iter().find(|r| r.id == sandbox.id && r.provider == provider.name()) {
        return Err(usage(format!("sandbox `{id}` is already recorded as `{}`", rec.name)));
    }
    let name = a.name.clone().or_else(|| sandbox.sbx_name().map(str::to_owned)).unwrap_or_else(|| format!("sbx-{}", &bootstrap::fresh_token()[..6]));
    validate_name(&name)?;
    let runtime = bootstrap::locate_runtime(provider.capabilities().isolated)?;
    let run_id = sandbox.labels.get(labels::RUN_ID).cloned().unwrap_or_else(|| bootstrap::fresh_token()[..12].to_owned());
    let expires_at = sandbox.labels.get(labels::EXPIRES_AT).and_then(|e| e.parse().ok());
    if !ctx.state.reserve(&name, provider.name(), &run_id, &sandbox.labels, expires_at)? {
        return Err(usage(format!("a sandbox named `{name}` already exists; pick another --name")));
    }
    ctx.state.set_id(&name, &sandbox.id)?;
    let result = async {
        if sandbox.state == sbx_providers::SandboxState::Paused {
            let step = ctx.out.step(&format!("resuming sandbox {id} on {}", provider.name()));
            match provider.resume(id).await {
                Ok(()) => step.done(),
                Err(e) => {
                    step.fail();
                    return Err(e.into());
                }
            }
        }
        boot(ctx, &ctx.out, provider.as_ref(), &name, id, &runtime, &session_env, true).await
    }
    .await;
    if let Err(e) = result {
        // The sandbox is not ours to destroy: only forget it.
        ctx.state.remove(&name)?;
        return Err(e);
    }
    if ctx.out.json {
        let rec = ctx.state.get(&name)?.context("state lost the sandbox")?;
        ctx.out.json_value(&serde_json::json!({ "name": name, "provider": provider.name(), "id": id, "endpoint": rec.endpoint, "expiresAt": expires_at }));
    } else {
        ctx.out.line(&name);
        ctx.out.note(format!("sandbox `{name}` ({id}) is up on {}. Next:\n  sbx exec {name} -- <command>\n  sbx down {name}", provider.name()));
    }
    Ok(Exit::Success)
}

/// Installs (unless present), starts and waits for the runtime in sandbox `id`, then records it as ready.
#[allow(clippy::too_many_arguments)]
async fn boot(
    ctx: &Ctx,
    out: &crate::output::Output,
    provider: &dyn Provider,
    name: &str,
    id: &str,
    runtime: &std::path::Path,
    session_env: &[(String, String)],
    stop_old: bool,
) -> Result<()> {
    let layout = provider.runtime_layout(id).await?;
    let step = out.step("uploading the runtime");
    if let Err(e) = bootstrap::install(provider, id, runtime, &layout).await {
        step.fail();
        return Err(e.into());
    }
    step.done();

    let token = bootstrap::fresh_token();
    crate::redact::register(&token);
    if stop_old {
        // A runtime may still run from before, with a token this host does not have.
        let stop = [layout.binary_path.as_str(), "daemon", "stop", "--host", layout.listen_host.as_str(), "--port"];
        let mut argv: Vec<String> = stop.iter().map(|s| (*s).to_owned()).collect();
        argv.push(layout.port.to_string());
        let _ = provider.exec(id, &sbx_providers::ExecSpec::new(argv)).await;
    }
    let step = out.step("starting the runtime");
    if let Err(e) = bootstrap::start(provider, id, &layout, &token).await {
        step.fail();
        return Err(e.into());
    }
    step.done();

    let step = out.step("waiting until it is healthy");
    let endpoint = provider.endpoint(id, layout.port).await?;
    let handle = bootstrap::RuntimeHandle { endpoint, token };
    if let Err(e) = bootstrap::wait_healthy(&handle.client()?, Duration::from_secs(60)).await {
        step.fail();
        return Err(e.into());
    }
    // Credentials go over the authenticated API only, never into the runtime's start.
    bootstrap::push_session_env(&handle.client()?, session_env).await?;
    step.done();
    ctx.state.set_ready(name, &handle.endpoint, &handle.token, &layout)?;
    Ok(())
}
