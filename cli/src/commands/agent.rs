//! `sbx agent ls|install`: the coding agents a sandbox's runtime can drive.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use sbx_agent::api::session::{AcpAgentConfig, AcpModeConfig, InstallAgentRequest};
use sbx_agent::client::WriteOptions;

use crate::context::Ctx;
use crate::output::{usage, Exit};

/// `sbx agent` subcommands.
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Subcommand, Debug)]
enum AgentCommand {
    /// List the agents in a sandbox: installed or not, version, models and modes.
    Ls {
        /// The sandbox.
        name: String,
    },
    /// Install an agent in a sandbox.
    #[command(after_help = "Sources, in order: already installed (unless --reinstall); --from-host (copies this machine's \
binary in, so sandboxes without network get agents too); a mirror (--mirror or SBX_AGENT_MIRROR in the sandbox, \
with a SHA-256 check).\n\nExamples:\n  sbx agent install dev claude --from-host\n  sbx agent install dev codex --from-host ~/bin/codex\n  \
sbx agent install dev claude --mirror 'http://mirror.internal/{agent}/{version}/{os}-{arch}/{agent}' --agent-version 2.1.0")]
    Install(InstallArgs),
    /// Configure any agent that speaks ACP (Agent Client Protocol) in a sandbox: no code, an entry.
    #[command(after_help = "Sessions then take it as --agent ID. Its credentials are named here and come from the session's \
environment (sbx session new NAME --agent ID -e KEY=...), never from a file in the sandbox.\n\nExamples:\n  \
sbx agent add dev goose --command goose --arg acp --credential OPENAI_API_KEY --install-hint 'pip install goose-ai'\n  \
sbx agent add dev mine --file my-agent.json      # {\"id\": \"mine\", \"command\": \"my-acp\", \"args\": [\"--stdio\"]}")]
    Add(AddArgs),
    /// Remove an agent configured with `sbx agent add` (sessions already running with it go on).
    Rm {
        /// The sandbox.
        name: String,
        /// The agent's id.
        id: String,
    },
}

#[derive(Args, Debug)]
struct AddArgs {
    /// The sandbox.
    name: String,
    /// Its id (letters, digits, `-`, `_`), as sessions name it (`--agent ID`).
    id: String,
    /// The command that speaks ACP on its stdin/stdout, on the sandbox's PATH or a path in it.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    command: Option<String>,
    /// An argument for it (repeatable, in order).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// A plain setting for its environment (repeatable); credentials go in --credential instead.
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// An environment variable its credential is read from (repeatable; the value comes from the
    /// session's environment).
    #[arg(long = "credential", value_name = "VAR", value_delimiter = ',')]
    credentials: Vec<String>,
    /// How to install it when a sandbox lacks it.
    #[arg(long)]
    install_hint: Option<String>,
    /// One of its modes, `ID` or `ID=DESCRIPTION` (repeatable).
    #[arg(long = "mode", value_name = "MODE")]
    modes: Vec<String>,
    /// The mode sessions get when they ask for none.
    #[arg(long)]
    default_mode: Option<String>,
    /// Its display name.
    #[arg(long)]
    display_name: Option<String>,
    /// The whole entry as a JSON file (the fields of `PUT /v1/agents/{id}`; see docs/acp.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["args", "env", "credentials", "install_hint", "modes", "default_mode", "display_name"])]
    file: Option<std::path::PathBuf>,
}

impl AddArgs {
    fn config(&self) -> Result<AcpAgentConfig> {
        if let Some(path) = &self.file {
            let text = std::fs::read(path).map_err(|e| usage(format!("--file {}: {e}", path.display())))?;
            let mut config: AcpAgentConfig =
                serde_json::from_slice(&text).map_err(|e| usage(format!("--file {}: not an ACP agent entry: {e}", path.display())))?;
            if config.id.is_empty() {
                config.id = self.id.clone();
            } else if config.id != self.id {
                return Err(usage(format!("--file {} is for agent `{}`, not `{}`", path.display(), config.id, self.id)));
            }
            return Ok(config);
        }
        let env = super::exec::parse_env(&self.env)?;
        let modes = self
            .modes
            .iter()
            .map(|m| {
                let (id, description) = m.split_once('=').unwrap_or((m, ""));
                AcpModeConfig { id: id.to_owned(), description: description.to_owned() }
            })
            .collect();
        Ok(AcpAgentConfig {
            id: self.id.clone(),
            name: self.display_name.clone(),
            command: self.command.clone().unwrap_or_default(),
            args: self.args.clone(),
            env,
            credentials: self.credentials.clone(),
            install_hint: self.install_hint.clone(),
            modes,
            default_mode: self.default_mode.clone(),
        })
    }
}

#[derive(Args, Debug)]
struct InstallArgs {
    /// The sandbox.
    name: String,
    /// The agent: claude or codex.
    agent: String,
    /// Copy the agent binary from this machine: the given path, or $SBX_<AGENT>_BIN, or the one on PATH.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    from_host: Option<String>,
    /// Mirror URL template ({agent}, {version}, {os}, {arch} are filled in).
    #[arg(long)]
    mirror: Option<String>,
    /// Expected SHA-256 of the binary.
    #[arg(long)]
    sha256: Option<String>,
    /// The version to fetch from the mirror.
    #[arg(long = "agent-version")]
    agent_version: Option<String>,
    /// Install even if the sandbox already has one.
    #[arg(long)]
    reinstall: bool,
}

/// Runs `sbx agent …`.
pub async fn run(ctx: &Ctx, a: AgentArgs) -> Result<Exit> {
    match a.command {
        AgentCommand::Ls { name } => {
            let client = ctx.client(&ctx.record(&name)?).await?;
            let agents = client.list_agents().await?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::to_value(&agents)?);
                return Ok(Exit::Success);
            }
            ctx.out.line(format!("{:<8} {:<10} {:<32} {}", "AGENT", "INSTALLED", "VERSION", "PATH / HOW TO INSTALL"));
            for ag in agents {
                let where_ = ag.path.clone().or(ag.install_hint.clone()).unwrap_or_default();
                ctx.out.line(format!(
                    "{:<8} {:<10} {:<32} {}",
                    ag.id,
                    if ag.installed { "yes" } else { "no" },
                    ag.version.as_deref().unwrap_or("-"),
                    where_
                ));
            }
            Ok(Exit::Success)
        }
        AgentCommand::Install(a) => install(ctx, a).await,
        AgentCommand::Add(a) => {
            let config = a.config()?;
            let client = ctx.client(&ctx.record(&a.name)?).await?;
            let info = client.put_acp_agent(&config).await.map_err(|e| match e.status() {
                Some(400) => usage(e.to_string()),
                _ => e.into(),
            })?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::to_value(&info)?);
            } else if info.installed {
                ctx.out.line(format!("{}: {} (installed: {})", info.id, config.command, info.path.as_deref().unwrap_or("?")));
            } else {
                ctx.out.line(format!("{}: {} (not installed yet: {})", info.id, config.command, info.install_hint.as_deref().unwrap_or("-")));
            }
            Ok(Exit::Success)
        }
        AgentCommand::Rm { name, id } => {
            let client = ctx.client(&ctx.record(&name)?).await?;
            client.remove_acp_agent(&id).await.map_err(|e| match e.status() {
                Some(400) | Some(404) => usage(e.to_string()),
                _ => e.into(),
            })?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({ "removed": id }));
            } else {
                ctx.out.note(format!("removed agent `{id}` from `{name}`"));
            }
            Ok(Exit::Success)
        }
    }
}

async fn install(ctx: &Ctx, a: InstallArgs) -> Result<Exit> {
    let client = ctx.client(&ctx.record(&a.name)?).await?;
    let mut req = InstallAgentRequest {
        reinstall: a.reinstall || a.from_host.is_some(),
        version: a.agent_version.clone(),
        mirror_url: a.mirror.clone(),
        sha256: a.sha256.clone(),
        from_path: None,
        ..Default::default()
    };
    let mut uploaded = None;
    if let Some(given) = &a.from_host {
        let host_bin = host_binary(&a.agent, given)?;
        let file = tokio::fs::File::open(&host_bin).await.with_context(|| format!("open {}", host_bin.display()))?;
        let size = file.metadata().await?.len();
        let step = ctx.out.step(&format!("uploading {} ({} MB)", host_bin.display(), size / 1_000_000));
        let remote = format!(".sbx/upload-{}-{}", a.agent, sbx_providers::random_hex(4));
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        match client.write_stream(&remote, body, WriteOptions::default().parents().mode(0o755)).await {
            Ok(_) => step.done(),
            Err(e) => {
                step.fail();
                return Err(e.into());
            }
        }
        req.from_path = Some(remote.clone());
        uploaded = Some(remote);
    }
    let step = ctx.out.step(&format!("installing {}", a.agent));
    let result = client.install_agent(&a.agent, &req).await;
    if let Some(remote) = uploaded {
        let _ = client.delete(&remote, false).await;
    }
    let done = match result {
        Ok(d) => {
            step.done();
            d
        }
        Err(e) => {
            step.fail();
            return Err(match e.status() {
                Some(400) | Some(404) => usage(e.to_string()),
                _ => e.into(),
            });
        }
    };
    if ctx.out.json {
        ctx.out.json_value(&serde_json::to_value(&done)?);
    } else {
        ctx.out.line(format!(
            "{} {} ({}) from {}",
            done.agent.id,
            done.agent.version.as_deref().unwrap_or("?"),
            done.agent.path.as_deref().unwrap_or("?"),
            done.source
        ));
    }
    Ok(Exit::Success)
}

/// The host's binary of `agent`: `given`, else `$SBX_<AGENT>_BIN`, else the first on PATH.
fn host_binary(agent: &str, given: &str) -> Result<std::path::PathBuf> {
    let env_name = format!("SBX_{}_BIN", agent.to_uppercase());
    let candidate = if !given.is_empty() {
        Some(std::path::PathBuf::from(given))
    } else if let Some(p) = std::env::var_os(&env_name).filter(|p| !p.is_empty()) {
        Some(std::path::PathBuf::from(p))
    } else {
        std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(agent)).find(|p| p.is_file()))
    };
    let path = candidate.ok_or_else(|| {
        usage(format!("no `{agent}` binary on this machine's PATH; give its path (--from-host PATH) or set {env_name}"))
    })?;
    // `claude` on PATH is often a symlink into a versions directory: upload the file itself.
    std::fs::canonicalize(&path).map_err(|e| usage(format!("--from-host {}: {e}", path.display())))
}
