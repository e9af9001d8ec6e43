//! `sbx up`: parse the flags into a [`Plan`], make it ready with [`provision::up`], render. The
//! lifecycle itself (create, bootstrap, cleanup, timings) is `sbx_providers::lifecycle`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use sbx_providers::{bootstrap, Labels, Network};

use crate::context::Ctx;
use crate::output::{usage, Exit, Interrupted};
use crate::provision::{self, Plan, Progress, UpOptions};

/// `sbx up` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx up --provider local --name dev\n  sbx up --provider docker --name box --cpus 2 --memory 2g --env FOO=bar\n  sbx up --provider docker --network none      # no network; the runtime is reached over a Unix socket\n  sbx up --provider docker --ttl 2h            # `sbx gc` removes it after two hours\n  sbx up --provider docker --credentials claude,codex   # agent sessions get this machine's keys")]
pub struct UpArgs {
    /// Where to create it.
    #[arg(short, long, default_value = "local", env = "SBX_PROVIDER", value_name = "PROVIDER", help = provider_help(),
          value_parser = crate::provider_arg::ProviderArg::Any, hide_possible_values = true)]
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
    /// Keep the sandbox when making it fails half-way or is interrupted (for debugging; `sbx down`
    /// removes it). `SBX_KEEP=1` does the same.
    #[arg(long)]
    pub keep: bool,
    /// Pass this machine's LLM credentials for these agents to the sandbox's agent sessions
    /// (claude, codex, opencode, amp, vibe, gemini; comma-separated). Nothing crosses in unless named here.
    #[arg(long, value_delimiter = ',', value_name = "AGENTS")]
    pub credentials: Vec<String>,
    /// `--provider ssh`: the host, `[user@]host[:port]` or an alias from ~/.ssh/config
    /// (default: the first of $SBX_SSH_HOST).
    #[arg(long, value_name = "DEST", help_heading = "SSH")]
    pub host: Option<String>,
    /// `--provider ssh`: learn the host's key when known_hosts does not know it yet (trust on first
    /// use; a changed key is refused all the same). SBX_SSH_ACCEPT_NEW=1 does the same.
    #[arg(long, help_heading = "SSH")]
    pub accept_new: bool,
    /// `--provider ssh`: `docker` makes the sandbox a container of the host's Docker engine, reached
    /// through the same SSH connection (the SSH user must be allowed to use Docker there); `none`
    /// (default) makes it a directory of the SSH user's. SBX_SSH_ISOLATION does the same.
    #[arg(long, value_name = "KIND", value_parser = ["docker", "none"], help_heading = "SSH")]
    pub isolation: Option<String>,
    /// Take over an existing sandbox of --provider by its id instead of making one: resume it if it is
    /// paused, start the runtime in it, and record it under --name (default: its sbx name).
    #[arg(long, value_name = "ID", conflicts_with_all = ["image", "env", "env_file", "cpus", "memory", "ports", "labels", "ttl"])]
    pub resume: Option<String>,
    /// Agents to put in the sandbox once it is up (claude, codex; comma-separated). With
    /// --agents-from and no --agents: both.
    #[arg(long, alias = "agent", value_delimiter = ',', value_name = "AGENTS", help_heading = "Agents")]
    pub agents: Vec<String>,
    /// Keyless: no model key enters the sandbox. Its agents call their model on the sandbox's own
    /// runtime with a relay token; this host (while `sbx attach`, `sbx session`, `sbx prompt` or
    /// `sbx run` runs) checks the token, adds the real key and forwards. For claude, codex (default:
    /// --agents, else those whose key this machine has). See docs/keyless.md.
    #[arg(long, value_name = "AGENTS", num_args = 0.., value_delimiter = ',', require_equals = true, help_heading = "Keyless")]
    pub keyless: Option<Vec<String>>,
    /// How long the relay token lives (renewed while a host serves the relay).
    #[arg(long, value_name = "DURATION", default_value = "1h", help_heading = "Keyless")]
    pub keyless_ttl: String,
    /// At most this many model requests per minute (HTTP 429 beyond).
    #[arg(long, value_name = "N", requires = "keyless", help_heading = "Keyless")]
    pub keyless_rpm: Option<u32>,
    /// At most this many tokens (input + output) over the sandbox's life (HTTP 429 beyond).
    #[arg(long, value_name = "N", requires = "keyless", help_heading = "Keyless")]
    pub keyless_max_tokens: Option<u64>,
    /// How long a model request waits for a host to serve the relay before it fails (HTTP 503).
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Keyless")]
    pub keyless_wait: String,
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

fn provider_help() -> String {
    format!("Where to create it: {}.", sbx_providers::registry::names().join(", "))
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

/// The plan `sbx up` makes ready, from the flags.
fn plan(a: &UpArgs, name: String) -> Result<Plan> {
    let mut plan = Plan::new(&a.provider, name)?;
    let s = &mut plan.sandbox;
    for f in &a.env_file {
        read_env_file(f, &mut s.env)?;
    }
    for e in &a.env {
        let (k, v) = parse_kv(e, "--env")?;
        s.env.insert(k, v);
    }
    s.env.extend(crate::agents_setup::sandbox_env(&a.llm_base_url).map_err(usage)?);
    let mut user_labels = Labels::new();
    for l in &a.labels {
        let (k, v) = parse_kv(l, "--label")?;
        user_labels.insert(k, v);
    }
    s.labels = user_labels;
    s.image = a.image.clone();
    s.cpus = a.cpus;
    s.memory_mb = a.memory.as_deref().map(parse_memory_mb).transpose()?;
    s.network = if a.network == "none" { Network::None } else { Network::Bridge };
    s.ports = a.ports.clone();
    s.ttl = a.ttl.as_deref().map(parse_duration).transpose()?;
    plan.credentials = a.credentials.clone();
    plan.keep = a.keep;
    if let Some(list) = &a.keyless {
        let agents = if !list.is_empty() {
            list.clone()
        } else if !a.agents.is_empty() {
            a.agents.iter().filter(|x| crate::keyless::AGENTS.iter().any(|(n, _)| n == x)).cloned().collect()
        } else {
            crate::keyless::agents_with_keys()
        };
        if let Some(both) = agents.iter().find(|x| a.credentials.contains(x)) {
            return Err(usage(format!(
                "--credentials {both} puts that key into the sandbox and --keyless keeps it out: pick one"
            )));
        }
        plan.keyless = Some(crate::keyless::Policy {
            agents,
            ttl: parse_duration(&a.keyless_ttl)?,
            rpm: a.keyless_rpm,
            max_tokens: a.keyless_max_tokens,
            wait: parse_duration(&a.keyless_wait)?,
        });
    }
    plan.validate()?;
    Ok(plan)
}

/// Runs `sbx up`.
pub async fn run(ctx: &Ctx, a: UpArgs) -> Result<Exit> {
    if a.host.is_some() || a.accept_new || a.isolation.is_some() {
        if a.provider != sbx_providers::registry::SSH.name {
            return Err(usage("--host, --accept-new and --isolation are for --provider ssh"));
        }
        let isolation = a.isolation.as_deref().map(str::parse).transpose().map_err(|e: sbx_providers::Error| usage(e.to_string()))?;
        provision::set_ssh_flags(provision::SshFlags { host: a.host.clone(), accept_new: a.accept_new, isolation });
    }
    if let Some(id) = a.resume.clone() {
        let info = provision::info(&a.provider)?;
        let progress = Arc::new(Progress::new(&ctx.out, info.name));
        let up = provision::adopt(ctx, info.name, &id, a.name.clone(), &a.credentials, progress).await?;
        crate::agents_setup::after_up(ctx, &up.name, &a).await?;
        render(ctx, &up, Some(&id));
        return Ok(Exit::Success);
    }
    let name = a.name.clone().unwrap_or_else(|| format!("sbx-{}", &bootstrap::fresh_token()[..6]));
    let plan = plan(&a, name)?;
    let opts = UpOptions {
        observer: Arc::new(Progress::new(&ctx.out, plan.provider.name)),
        pull_bars: Some(Arc::new(crate::output::LayerBars::new(&ctx.out))),
        ..UpOptions::default()
    };
    // Ctrl-C drops the future: its guard destroys the half-made sandbox (unless --keep) and its
    // reservation forgets the name before this returns.
    let up = tokio::select! {
        r = provision::up(ctx, &plan, opts) => r?,
        _ = tokio::signal::ctrl_c() => {
            ctx.out.note("interrupted: the half-made sandbox is cleaned up");
            return Err(Interrupted.into());
        }
    };
    crate::agents_setup::after_up(ctx, &up.name, &a).await?;
    render(ctx, &up, None);
    Ok(Exit::Success)
}

fn render(ctx: &Ctx, up: &provision::Provisioned, adopted: Option<&str>) {
    if ctx.out.json {
        ctx.out.json_value(&up.json());
        return;
    }
    let name = &up.name;
    ctx.out.line(name);
    let which = adopted.map(|id| format!(" ({id})")).unwrap_or_default();
    ctx.out.note(format!(
        "sandbox `{name}`{which} is up on {} in {:.1} s. Next:\n  sbx exec {name} -- <command>\n  sbx shell {name}\n  sbx down {name}",
        up.provider,
        up.phases.total().as_secs_f64()
    ));
}
