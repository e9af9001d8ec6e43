//! Getting coding agents into a sandbox and pointing them at an LLM endpoint, for `sbx up`
//! (`--agents-from`, `--agent-version`, `--llm-base-url`), `sbx run` (`agent_install:`,
//! `agent_version:`, `llm:`) and whatever else makes sandboxes.
//!
//! The one call after a sandbox's runtime answers is [`ensure_agent`]. How agents get in
//! ([`AgentsFrom`]), `auto` by default, first that works:
//! 1. already in the image;
//! 2. this machine's own binary, when it is a Linux ELF for the sandbox's architecture: its checksum is
//!    computed once per `sbx` process, and a sandbox that already holds that checksum gets no upload;
//! 3. the vendor's release channel (the runtime downloads it; needs network in the sandbox);
//! 4. the agent's PyPI wheel (the sandbox's Python and pip; needs network);
//! 5. otherwise an error naming each source tried and why it did not work.
//!
//! The LLM endpoint travels as sandbox environment (`SBX_LLM_BASE_URL[_<AGENT>]`, [`sandbox_env`]) or
//! per session (`llm` of the session request, [`LlmConfig::for_agent`]); the runtime turns it into
//! each agent's own configuration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, Result};
use sbx_agent::api::session::{InstallAgentRequest, LlmEndpoint};
use sbx_agent::client::{Client, WriteOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How agents get into a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AgentsFrom {
    /// The first source that works (see the module docs).
    #[default]
    Auto,
    /// This machine's binary only.
    FromHost,
    /// The vendor's release channel only.
    Vendor,
    /// A mirror: a URL template with `{agent}`, `{version}`, `{os}`, `{arch}`.
    Mirror(String),
    /// Only what the image already has.
    Image,
    /// The PyPI wheel only.
    Pip,
}

impl FromStr for AgentsFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (word, rest) = s.split_once(['=', ' ']).map(|(a, b)| (a, b.trim())).unwrap_or((s, ""));
        Ok(match (word, rest) {
            ("auto", "") => Self::Auto,
            ("from-host", "") => Self::FromHost,
            ("vendor", "") => Self::Vendor,
            ("image", "") => Self::Image,
            ("pip", "") => Self::Pip,
            ("mirror", url) if !url.is_empty() => Self::Mirror(url.to_owned()),
            ("mirror", _) => return Err("`mirror` needs a URL template: `mirror=http://host/{agent}/{version}/{os}-{arch}/{agent}`".into()),
            _ => return Err(format!("unknown agent install source `{s}`; use auto, from-host, vendor, image, pip or mirror=URL")),
        })
    }
}

/// `llm:` in sbx.yaml: where the agents' model API is.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The root URL of the model API for every agent (a gateway or proxy), with or without `/v1`.
    /// From a Docker sandbox, a service on the host is at the bridge gateway (e.g. `http://172.17.0.1:4000`).
    pub base_url: Option<String>,
    /// Claude Code's endpoint, over `base_url`.
    pub claude: Option<String>,
    /// Codex's endpoint, over `base_url`.
    pub codex: Option<String>,
}

impl LlmConfig {
    /// `over` wins key by key (a task's `llm:` over the defaults').
    pub fn merged(&self, over: Option<&LlmConfig>) -> LlmConfig {
        let Some(o) = over else { return self.clone() };
        LlmConfig {
            base_url: o.base_url.clone().or_else(|| self.base_url.clone()),
            claude: o.claude.clone().or_else(|| self.claude.clone()),
            codex: o.codex.clone().or_else(|| self.codex.clone()),
        }
    }

    /// The endpoint for a session of `agent`.
    pub fn for_agent(&self, agent: &str) -> Option<LlmEndpoint> {
        let specific = match agent {
            "claude" => self.claude.clone(),
            "codex" => self.codex.clone(),
            _ => return None,
        };
        specific.or_else(|| self.base_url.clone()).filter(|u| !u.trim().is_empty()).map(|base_url| LlmEndpoint { base_url })
    }
}

/// `sbx up --llm-base-url` values (`URL` for every agent, `AGENT=URL` for one) as sandbox
/// environment, which the runtime reads as its default endpoint for every session.
pub fn sandbox_env(values: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for v in values {
        match v.split_once('=') {
            Some((agent, url)) if !agent.contains(':') && !agent.contains('/') => {
                if !["claude", "codex"].contains(&agent) {
                    return Err(format!("--llm-base-url {v}: `{agent}` is not an agent sbx configures (claude, codex)"));
                }
                out.push((format!("SBX_LLM_BASE_URL_{}", agent.to_ascii_uppercase()), check_url(url)?));
            }
            _ => out.push(("SBX_LLM_BASE_URL".to_owned(), check_url(v)?)),
        }
    }
    Ok(out)
}

fn check_url(u: &str) -> Result<String, String> {
    match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => Ok(u.to_owned()),
        _ => Err(format!("`{u}` is not an http(s) URL")),
    }
}

/// How an agent got into a task's sandbox (task.json's `agentInstall`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstallReport {
    /// The agent.
    pub agent: String,
    /// `image`, `host`, `vendor`, `mirror`, `pip` (or `none` for the built-in mock).
    pub source: String,
    /// `<agent> --version` afterwards.
    pub version: Option<String>,
    /// The version as the channel named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_version: Option<String>,
    /// Whether the host's binary was uploaded (`false`: the sandbox already had that checksum).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uploaded: bool,
    /// Sources that were tried first and did not work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// Makes sure `agent` is in the sandbox behind `client`, from `from` (pinned to `version` where the
/// source has versions). Vendor channel URLs come from this machine's `SBX_<AGENT>_RELEASES_URL`
/// when set (else the sandbox's own).
pub async fn ensure_agent(client: &Client, agent: &str, from: &AgentsFrom, version: Option<&str>) -> Result<InstallReport> {
    let started = Instant::now();
    let report = |source: &str, r: Option<sbx_agent::api::session::InstallAgentResponse>, tried: Vec<String>, uploaded: bool| InstallReport {
        agent: agent.to_owned(),
        source: source.to_owned(),
        version: r.as_ref().and_then(|r| r.agent.version.clone()),
        channel_version: r.as_ref().and_then(|r| r.channel_version.clone()),
        uploaded,
        tried,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if agent == "mock" {
        return Ok(report("none", None, Vec::new(), false));
    }
    let base = InstallAgentRequest {
        version: version.map(str::to_owned),
        channel_url: std::env::var(format!("SBX_{}_RELEASES_URL", agent.to_ascii_uppercase())).ok().filter(|u| !u.is_empty()),
        pip_index_url: std::env::var("SBX_PIP_INDEX_URL").ok().filter(|u| !u.is_empty()),
        ..Default::default()
    };
    let remote = |source: &str| InstallAgentRequest { source: Some(source.to_owned()), ..base.clone() };
    let named = |r: &sbx_agent::api::session::InstallAgentResponse| if r.source == "present" { "image".to_owned() } else { r.source.clone() };
    match from {
        AgentsFrom::Image => {
            let r = client.install_agent(agent, &remote("image")).await?;
            Ok(report("image", Some(r), Vec::new(), false))
        }
        AgentsFrom::Vendor | AgentsFrom::Pip => {
            let source = if *from == AgentsFrom::Vendor { "vendor" } else { "pip" };
            let r = client.install_agent(agent, &remote(source)).await?;
            let s = named(&r);
            Ok(report(&s, Some(r), Vec::new(), false))
        }
        AgentsFrom::Mirror(url) => {
            let req = InstallAgentRequest { mirror_url: Some(url.clone()), ..remote("mirror") };
            let r = client.install_agent(agent, &req).await?;
            let s = named(&r);
            Ok(report(&s, Some(r), Vec::new(), false))
        }
        AgentsFrom::FromHost => {
            let bin = host_binary(agent, None).map_err(anyhow::Error::msg)?;
            let (r, uploaded) = install_from_host(client, agent, &bin).await?;
            Ok(report("host", Some(r), Vec::new(), uploaded))
        }
        AgentsFrom::Auto => {
            let mut tried = Vec::new();
            let info = client.agent(agent).await?;
            if info.installed {
                return Ok(report("image", None, tried, false)).map(|mut r| {
                    r.version = info.version;
                    r
                });
            }
            tried.push("image: not in the image".to_owned());
            match host_binary(agent, None) {
                Ok(bin) => match install_from_host(client, agent, &bin).await {
                    Ok((r, uploaded)) => return Ok(report("host", Some(r), tried, uploaded)),
                    Err(e) => tried.push(format!("from-host: {}: {e:#}", bin.display())),
                },
                Err(why) => tried.push(format!("from-host: {why}")),
            }
            match client.install_agent(agent, &remote("auto")).await {
                Ok(r) => {
                    tried.extend(r.tried.iter().map(|t| format!("{}: {}", t.source, t.error)));
                    let s = named(&r);
                    Ok(report(&s, Some(r), tried, false))
                }
                Err(e) => anyhow::bail!(
                    "the {agent} agent is not in this sandbox and could not be installed. Tried image: not in the image; {}; then in \
                     the sandbox {e}. Fix: put `{agent}` on this machine's PATH (or set SBX_{}_BIN), give the sandbox network \
                     for the vendor channel or pip, use an image with agents (templates/docker/build.sh --with-agents), or set \
                     agent_install: mirror=URL",
                    tried[1..].join("; "),
                    agent.to_ascii_uppercase()
                ),
            }
        }
    }
}

/// This machine's binary of `agent`: `given`, else `$SBX_<AGENT>_BIN`, else the first on `PATH`,
/// resolved through links, and only if it is a Linux ELF executable for the sandbox's architecture
/// (the architecture of the runtime `sbx` uploads, which is this machine's).
pub fn host_binary(agent: &str, given: Option<&Path>) -> Result<PathBuf, String> {
    let env_name = format!("SBX_{}_BIN", agent.to_ascii_uppercase());
    let candidate = match given {
        Some(p) => Some(p.to_path_buf()),
        None => match std::env::var_os(&env_name).filter(|p| !p.is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None => std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(agent)).find(|p| p.is_file())),
        },
    };
    let path = candidate.ok_or_else(|| format!("no `{agent}` on this machine's PATH and {env_name} is unset"))?;
    // `claude` on PATH is often a link into a versions directory: upload the file itself.
    let path = std::fs::canonicalize(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    elf_fits(&path)?;
    Ok(path)
}

/// Whether `path` is an ELF executable for this machine's architecture.
fn elf_fits(path: &Path) -> Result<(), String> {
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Read::read_exact(&mut f, &mut head).map_err(|_| format!("{} is not an executable", path.display()))?;
    if &head[..4] != b"\x7fELF" {
        return Err(format!("{} is not a Linux (ELF) binary, e.g. a script or a macOS build", path.display()));
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    let (want, name) = match std::env::consts::ARCH {
        "aarch64" => (183, "aarch64"),
        _ => (62, "x86_64"),
    };
    if head[4] != 2 || machine != want {
        return Err(format!("{} is not a 64-bit {name} binary (ELF machine {machine})", path.display()));
    }
    Ok(())
}

/// A host file as the checksum cache knows it: path, size and mtime.
type FileIdentity = (PathBuf, u64, SystemTime);

/// SHA-256 of a host file, computed once per (path, size, mtime) for the life of this process.
fn host_checksum(path: &Path) -> Result<String> {
    static CACHE: Mutex<Option<HashMap<FileIdentity, String>>> = Mutex::new(None);
    let meta = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
    if let Some(sum) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(&key) {
        return Ok(sum.clone());
    }
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("read {}", path.display()))?;
    let sum = hex::encode(h.finalize());
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(key, sum.clone());
    Ok(sum)
}

/// Uploads the host's binary into the sandbox's agent cache (unless that checksum is already
/// there) and installs it from there with the checksum checked. Returns whether it uploaded.
pub async fn install_from_host(client: &Client, agent: &str, bin: &Path) -> Result<(sbx_agent::api::session::InstallAgentResponse, bool)> {
    let bin2 = bin.to_path_buf();
    let sum = tokio::task::spawn_blocking(move || host_checksum(&bin2)).await??;
    let size = std::fs::metadata(bin)?.len();
    let remote = format!(".sbx/agent-cache/{agent}-{}", &sum[..16]);
    let cached = client.stat(&remote).await.is_ok_and(|e| e.size == size);
    if !cached {
        let file = tokio::fs::File::open(bin).await.with_context(|| format!("open {}", bin.display()))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        client
            .write_stream(&remote, body, WriteOptions::default().parents().mode(0o755))
            .await
            .with_context(|| format!("uploading {} ({} MB)", bin.display(), size / 1_000_000))?;
    }
    let req = InstallAgentRequest {
        source: Some("path".into()),
        from_path: Some(remote),
        sha256: Some(sum),
        reinstall: true,
        ..Default::default()
    };
    Ok((client.install_agent(agent, &req).await?, !cached))
}

/// `sbx up --agents/--agents-from`: installs the named agents into sandbox `name`, one line each.
/// A failure leaves the sandbox up (the error says how to fix the install and `sbx down` removes it).
pub async fn after_up(ctx: &crate::context::Ctx, name: &str, a: &crate::commands::up::UpArgs) -> Result<()> {
    let agents: Vec<String> = match (&a.agents_from, a.agents.is_empty()) {
        (None, true) => return Ok(()),
        (Some(_), true) => vec!["claude".into(), "codex".into()],
        (_, false) => a.agents.clone(),
    };
    let from = a.agents_from.clone().unwrap_or_default();
    let client = ctx.client(&ctx.record(name)?).await?;
    for agent in agents {
        let step = ctx.out.step(&format!("installing {agent}"));
        match ensure_agent(&client, &agent, &from, a.agent_version.as_deref()).await {
            Ok(r) => {
                step.done();
                ctx.out.note(format!(
                    "{agent}: {} from {} in {:.1}s",
                    r.version.as_deref().unwrap_or("?"),
                    r.source,
                    r.duration_ms as f64 / 1000.0
                ));
            }
            Err(e) => {
                step.fail();
                return Err(e.context(format!("sandbox `{name}` is up, but {agent} is not in it (`sbx down {name}` removes it)")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sources_parse_with_their_mirror_url() {
        assert_eq!("auto".parse::<AgentsFrom>(), Ok(AgentsFrom::Auto));
        assert_eq!("from-host".parse::<AgentsFrom>(), Ok(AgentsFrom::FromHost));
        assert_eq!("mirror=http://m/{agent}".parse::<AgentsFrom>(), Ok(AgentsFrom::Mirror("http://m/{agent}".into())));
        assert_eq!("mirror http://m/x".parse::<AgentsFrom>(), Ok(AgentsFrom::Mirror("http://m/x".into())));
        assert!("mirror".parse::<AgentsFrom>().is_err());
        assert!("npm".parse::<AgentsFrom>().unwrap_err().contains("use auto"));
    }

    #[test]
    fn llm_urls_go_per_agent_and_task_values_win() {
        let d = LlmConfig { base_url: Some("http://gw".into()), codex: Some("http://cx".into()), claude: None };
        assert_eq!(d.for_agent("claude").unwrap().base_url, "http://gw");
        assert_eq!(d.for_agent("codex").unwrap().base_url, "http://cx");
        assert_eq!(d.for_agent("mock"), None);
        let t = LlmConfig { base_url: Some("http://task".into()), ..Default::default() };
        assert_eq!(d.merged(Some(&t)).for_agent("claude").unwrap().base_url, "http://task");
        assert_eq!(d.merged(Some(&t)).for_agent("codex").unwrap().base_url, "http://cx");
        assert_eq!(sandbox_env(&["http://h:1".into(), "codex=http://c:2/v1".into()]).unwrap(), vec![
            ("SBX_LLM_BASE_URL".to_owned(), "http://h:1".to_owned()),
            ("SBX_LLM_BASE_URL_CODEX".to_owned(), "http://c:2/v1".to_owned()),
        ]);
        assert!(sandbox_env(&["gemini=http://x".into()]).is_err());
        assert!(sandbox_env(&["not a url".into()]).is_err());
    }
}
