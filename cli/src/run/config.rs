//! `sbx.yaml`: the file `sbx run` reads. Parsed with `serde_yaml_ng` (a maintained fork of the
//! unmaintained `serde_yaml`, same API); every error names the file, line and column, and the field
//! path, and an unknown key suggests the closest known one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{AgentName, Choice, NetworkMode, ProviderName, Size, Span};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Format version; only `1` exists.
    pub version: u32,
    /// Settings every task starts from.
    #[serde(default)]
    pub defaults: Defaults,
    /// The tasks.
    pub tasks: Vec<TaskConfig>,
}

/// Settings every task starts from (each task may override them).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// `local`, `docker`, `e2b`, `daytona`, `vercel`, `modal` or `ssh`.
    pub provider: Option<ProviderName>,
    /// For `provider: ssh`: the hosts the tasks spread over, each `me@box` (or a `~/.ssh/config`
    /// alias) or `{host: me@box, concurrency: 2}`; a task goes to the least busy host with a free slot.
    #[serde(default)]
    pub hosts: Vec<super::hosts::HostEntry>,
    /// Image or template.
    pub image: Option<String>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
    /// Memory limit (`512m`, `2g`).
    pub memory: Option<Size>,
    /// `bridge` or `none`.
    pub network: Option<NetworkMode>,
    /// How long each sandbox may live (`30m`, `2h`).
    pub ttl: Option<Span>,
    /// `claude`, `codex`, `mock`, or an ACP agent in the image (`vibe`, `gemini`, `opencode`, `openhands`).
    pub agent: Option<AgentName>,
    /// Model to ask the agent for.
    pub model: Option<String>,
    /// Agents whose LLM credentials on this machine are passed to the agent sessions.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Keyless: no model key enters the sandboxes; the agents (claude, codex) reach their model through
    /// the runtime's LLM relay, served by this `sbx run` with this machine's keys (docs/keyless.md).
    pub keyless: Option<bool>,
    /// Environment for every task's agent and commands.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Time limit of one task (`20m`).
    pub timeout: Option<Span>,
    /// How many tasks run at once.
    pub concurrency: Option<usize>,
    /// Diffs up to this size are shown in `summary.md` (default `64k`); a larger one is still kept
    /// whole in `<task>/diff.patch`, and the summaries say so.
    pub diff_inline_limit: Option<Size>,
    /// How agents get into each sandbox: `auto` (default), `from-host`, `vendor`, `image`, `pip`,
    /// `mirror=URL`.
    pub agent_install: Option<String>,
    /// The agent's version where the source has versions: `stable`, `latest` or e.g. `2.1.7`.
    pub agent_version: Option<String>,
    /// Where the agents' model API is; sbx writes each agent's own configuration for it.
    pub llm: Option<crate::agents_setup::LlmConfig>,
}

/// Where a task's files come from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Workspace {
    /// A local directory (relative to the sbx.yaml), uploaded as a tar stream.
    Dir(String),
    /// A git repository cloned inside the sandbox.
    Git(GitWorkspace),
}

/// A git workspace.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GitWorkspace {
    /// The URL to clone.
    pub git: String,
    /// Branch, tag or commit (default: the default branch).
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
}

/// An MCP server for the agent.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Its name.
    pub name: String,
    /// A local command…
    pub command: Option<String>,
    /// …its arguments…
    #[serde(default)]
    pub args: Vec<String>,
    /// …and environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Or a remote URL…
    pub url: Option<String>,
    /// …with headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// One task (before matrix expansion).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Its name (letters, digits, `-`, `_`, `.`), unique in the file.
    pub name: String,
    /// Provider for this task.
    pub provider: Option<ProviderName>,
    /// Image or template for this task.
    pub image: Option<String>,
    /// The workspace: a directory (uploaded) or `{git: URL, ref: …}` (cloned inside).
    pub workspace: Option<Workspace>,
    /// Commands run (with `sh -c`, in the workspace) before the agent.
    #[serde(default)]
    pub setup: Vec<String>,
    /// The agent.
    pub agent: Option<AgentName>,
    /// The model.
    pub model: Option<String>,
    /// The prompt (or `prompt_file`).
    pub prompt: Option<String>,
    /// A file (relative to the sbx.yaml) holding the prompt.
    pub prompt_file: Option<String>,
    /// A file of instructions for the agent, placed in the workspace as `CLAUDE.md` (claude) or
    /// `AGENTS.md` (codex, mock).
    pub instructions: Option<String>,
    /// MCP servers to configure for the agent.
    #[serde(default)]
    pub mcp_servers: Vec<McpServerConfig>,
    /// Skill directories (relative to the sbx.yaml), uploaded and handed to the agent.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Environment for this task (over the defaults').
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Agents whose LLM credentials on this machine go to this task's agent session (instead of the
    /// defaults' list; `[]` for none).
    pub credentials: Option<Vec<String>>,
    /// Keyless for this task (over `defaults.keyless`).
    pub keyless: Option<bool>,
    /// The command whose exit code decides pass (0) or fail, run in the workspace after the agent.
    pub check: Option<String>,
    /// Files to collect from the workspace afterwards (globs).
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Time limit of this task (`10m`).
    pub timeout: Option<Span>,
    /// Extra attempts after a failure.
    #[serde(default)]
    pub retries: u32,
    /// How the agent gets into this task's sandbox (over the defaults').
    pub agent_install: Option<String>,
    /// The agent's version for this task.
    pub agent_version: Option<String>,
    /// This task's LLM endpoint (key by key over the defaults').
    pub llm: Option<crate::agents_setup::LlmConfig>,
    /// Expand this task over lists: each combination becomes one task, named after its values.
    /// Keys: `agent`, `model`, `prompt`, `provider`, `image`, or `env.NAME`.
    #[serde(default)]
    pub matrix: BTreeMap<String, Vec<String>>,
}

/// A config error: where, which field, what, and a suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The field path (`tasks[2].promt`).
    pub path: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{}:{l}:{c}: ", self.file.display())?,
            None => write!(f, "{}: ", self.file.display())?,
        }
        if !self.path.is_empty() && self.path != "." {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: None,
        path: String::new(),
        message: format!("cannot read it: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and checks config text (`path` is for messages and relative paths).
pub fn parse(path: &Path, text: &str) -> Result<RunConfig, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let config: RunConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let field_path = e.path().to_string();
        let inner = e.into_inner();
        let position = inner.location().map(|l| (l.line(), l.column()));
        ConfigError { file: path.to_path_buf(), position, path: field_path, message: explain(&inner.to_string()) }
    })?;
    check(path, text, &config)?;
    Ok(config)
}

/// serde's message without its trailing location, and with a "did you mean" for unknown fields.
fn explain(raw: &str) -> String {
    // serde_yaml_ng appends " at line L column C"; the position is printed in front instead.
    let msg = match raw.find(" at line ") {
        Some(i) => raw[..i].to_owned(),
        None => raw.to_owned(),
    };
    // …and prefixes the path it already told us (`tasks[0]: …`), which is printed separately.
    let msg = match msg.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') => rest.to_owned(),
        _ => msg,
    };
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        if let Some((got, expected)) = rest.split_once("`, expected ") {
            let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            return super::values::unknown("value", got, &valid);
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once("`, expected ") {
            let choices: Vec<&str> = expected
                .trim_start_matches("one of ")
                .split(", ")
                .map(|c| c.trim_matches('`'))
                .filter(|c| !c.is_empty())
                .collect();
            let best = choices
                .iter()
                .map(|c| (strsim::damerau_levenshtein(field, c), *c))
                .filter(|(d, c)| *d <= 3.max(c.len() / 3))
                .min();
            return match best {
                Some((_, c)) => format!("unknown key `{field}`; did you mean `{c}`? (known keys: {})", choices.join(", ")),
                None => format!("unknown key `{field}` (known keys: {})", choices.join(", ")),
            };
        }
    }
    msg
}

/// Checks what types cannot: values that must agree with each other.
fn check(path: &Path, text: &str, c: &RunConfig) -> Result<(), ConfigError> {
    let err = |field: String, needle: Option<&str>, message: String| ConfigError {
        file: path.to_path_buf(),
        position: needle.and_then(|n| find_position(text, n)),
        path: field,
        message,
    };
    if c.version != 1 {
        return Err(err("version".into(), Some("version:"), format!("version {} is not known; use `version: 1`", c.version)));
    }
    if c.tasks.is_empty() {
        return Err(err("tasks".into(), Some("tasks:"), "no tasks: add at least one under `tasks:`".into()));
    }
    for (i, h) in c.defaults.hosts.iter().enumerate() {
        if let Some(problem) = h.problem() {
            return Err(err(format!("defaults.hosts[{i}]"), Some("hosts:"), problem));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in c.tasks.iter().enumerate() {
        let at = format!("name: {}", t.name);
        let field = |f: &str| format!("tasks[{i}].{f}");
        if t.name.is_empty() || !t.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            return Err(err(field("name"), Some(&at), format!("task name `{}`: use letters, digits, `-`, `_` or `.`", t.name)));
        }
        if !names.insert(t.name.clone()) {
            return Err(err(field("name"), Some(&at), format!("task name `{}` is used twice; names must be unique", t.name)));
        }
        let has_prompt = t.prompt.is_some() || t.prompt_file.is_some() || t.matrix.contains_key("prompt");
        if !has_prompt {
            return Err(err(field("prompt"), Some(&at), format!("task `{}` has no prompt: add `prompt:` or `prompt_file:`", t.name)));
        }
        if t.prompt.is_some() && t.prompt_file.is_some() {
            return Err(err(field("prompt"), Some(&at), "give `prompt` or `prompt_file`, not both".into()));
        }
        for key in t.matrix.keys() {
            let ok = matches!(key.as_str(), "agent" | "model" | "prompt" | "provider" | "image") || key.strip_prefix("env.").is_some_and(|n| !n.is_empty());
            if !ok {
                return Err(err(
                    field(&format!("matrix.{key}")),
                    Some(&format!("{key}:")),
                    format!("matrix key `{key}` is not one of agent, model, prompt, provider, image, env.NAME"),
                ));
            }
        }
        for (key, values) in &t.matrix {
            if values.is_empty() {
                return Err(err(field(&format!("matrix.{key}")), Some(&format!("{key}:")), "an empty list would expand to no tasks".into()));
            }
            for v in values {
                let checked = match key.as_str() {
                    "agent" => AgentName::parse("agent", v).map(|_| ()),
                    "provider" => ProviderName::parse("provider", v).map(|_| ()),
                    _ => Ok(()),
                };
                if let Err(message) = checked {
                    return Err(err(field(&format!("matrix.{key}")), Some(v), message));
                }
            }
        }
        for a in t.credentials.iter().flatten() {
            if !sbx_agent::credentials::AGENTS.contains(&a.as_str()) {
                return Err(err(field("credentials"), Some(a), super::values::unknown("agent", a, sbx_agent::credentials::AGENTS)));
            }
        }
        let agent = t.agent.or(c.defaults.agent).map(|a| a.as_str());
        if t.llm.is_some() && agent.is_some_and(|a| !matches!(a, "claude" | "codex" | "mock")) {
            return Err(err(
                field("llm"),
                Some("llm:"),
                format!("`llm:` configures claude and codex; `{}` reads its endpoint from its own configuration (write it in `setup:`, see docs/acp.md)", agent.unwrap_or_default()),
            ));
        }
        if let Some(s) = t.agent_install.as_deref().or(c.defaults.agent_install.as_deref()) {
            if let Err(e) = s.parse::<crate::agents_setup::AgentsFrom>() {
                return Err(err(field("agent_install"), Some("agent_install:"), e));
            }
        }
        for m in &t.mcp_servers {
            if m.command.is_some() == m.url.is_some() {
                return Err(err(field("mcp_servers"), Some(&format!("name: {}", m.name)), format!("MCP server `{}` needs exactly one of `command` or `url`", m.name)));
            }
        }
    }
    for a in &c.defaults.credentials {
        if !sbx_agent::credentials::AGENTS.contains(&a.as_str()) {
            return Err(err("defaults.credentials".into(), Some(a), super::values::unknown("agent", a, sbx_agent::credentials::AGENTS)));
        }
    }
    if let Some(n) = c.defaults.concurrency {
        if n == 0 {
            return Err(err("defaults.concurrency".into(), Some("concurrency:"), "concurrency must be at least 1".into()));
        }
    }
    Ok(())
}

/// The 1-based line and column of the first occurrence of `needle` (for errors found after parsing).
fn find_position(text: &str, needle: &str) -> Option<(usize, usize)> {
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return Some((i + 1, col + 1));
        }
    }
    None
}

/// The JSON Schema of sbx.yaml (`sbx config schema`, committed as `docs/sbx.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RunConfig)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<RunConfig, ConfigError> {
        parse(Path::new("sbx.yaml"), text)
    }

    #[test]
    fn a_full_file_parses() {
        let c = p("version: 1\ndefaults:\n  provider: docker\n  agent: mock\n  concurrency: 4\n  env: {A: b}\ntasks:\n  - name: one\n    prompt: hi\n    workspace: ./repo\n    check: make test\n    artifacts: ['out/*.txt']\n  - name: two\n    workspace: {git: 'https://example.invalid/r.git', ref: main}\n    prompt_file: p.md\n    matrix: {agent: [mock, claude]}\n").unwrap();
        assert_eq!(c.tasks.len(), 2);
        assert_eq!(c.tasks[0].workspace, Some(Workspace::Dir("./repo".into())));
        assert!(matches!(&c.tasks[1].workspace, Some(Workspace::Git(g)) if g.git_ref.as_deref() == Some("main")));
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let e = p("version: 1\ntasks:\n  - name: a\n    promt: hi\n").unwrap_err();
        assert_eq!(e.position, Some((4, 5)));
        assert_eq!(e.path, "tasks[0].promt");
        assert!(e.message.contains("did you mean `prompt`"), "{e}");
        assert!(e.to_string().starts_with("sbx.yaml:4:5: tasks[0].promt: unknown key `promt`"), "{e}");
        let e = p("version: 1\ntasks:\n  - name: a\n    prompt: hi\n    retries: lots\n").unwrap_err();
        assert_eq!((e.position, e.path.as_str()), (Some((5, 14)), "tasks[0].retries"));
        let e = p("version: 1\ntasks:\n  - name: a\n    check: make\n").unwrap_err();
        assert_eq!((e.position, e.path.as_str()), (Some((3, 5)), "tasks[0].prompt"));
        let e = p("version: 1\ntasks: [\n").unwrap_err();
        assert!(e.position.is_some(), "{e}");
    }

    #[test]
    fn acp_agents_are_task_agents_but_not_configured_by_llm() {
        let c = p("version: 1\ntasks:\n  - name: a\n    agent: vibe\n    prompt: hi\n").unwrap();
        assert_eq!(c.tasks[0].agent.map(|a| a.as_str()), Some("vibe"));
        let e = p("version: 1\ntasks:\n  - name: a\n    agent: vibe\n    prompt: hi\n    llm: {base_url: 'http://127.0.0.1:1'}\n").unwrap_err();
        assert_eq!(e.path, "tasks[0].llm");
        assert!(e.message.contains("`llm:` configures claude and codex") && e.message.contains("setup:"), "{e}");
        let e = p("version: 1\ntasks:\n  - name: a\n    agent: vibes\n    prompt: hi\n").unwrap_err();
        assert!(e.message.contains("vibe"), "the valid names, closest first: {e}");
    }
}
