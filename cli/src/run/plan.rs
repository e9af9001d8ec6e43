//! From a config to the list of tasks to run: defaults applied, matrices expanded, `--filter` and
//! `--shard I/N` applied. Deterministic: the same file gives the same plan on every machine, so CI
//! machines that each take a shard together run every task exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::config::{ConfigError, McpServerConfig, RunConfig, Workspace};
use super::values::{Choice as _, NetworkMode, Size, Span};

/// One task, ready to run.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTask {
    /// Unique name (`fix-tests`, or `fix-tests.claude.1` for a matrix expansion).
    pub name: String,
    /// The task it came from.
    pub base: String,
    /// The matrix values that made it (empty without a matrix).
    pub matrix: BTreeMap<String, String>,
    pub provider: String,
    pub image: Option<String>,
    pub cpus: Option<f64>,
    pub memory: Option<Size>,
    pub network: NetworkMode,
    pub ttl: Option<Span>,
    pub workspace: Option<Workspace>,
    pub setup: Vec<String>,
    pub agent: String,
    pub model: Option<String>,
    pub prompt: String,
    pub instructions: Option<PathBuf>,
    pub mcp_servers: Vec<McpServerConfig>,
    pub skills: Vec<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub credentials: Vec<String>,
    pub keyless: bool,
    pub check: Option<String>,
    pub artifacts: Vec<String>,
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    pub retries: u32,
    /// How the agent gets in (`auto`, `from-host`, …; checked when the file is read).
    pub agent_install: String,
    pub agent_version: Option<String>,
    pub llm: crate::agents_setup::LlmConfig,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The default time limit of a task.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Expands every task (see the module docs). `base_dir` is the config file's directory.
pub fn expand(config: &RunConfig, file: &Path) -> Result<Vec<PlannedTask>, ConfigError> {
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let d = &config.defaults;
    let mut out = Vec::new();
    for (i, t) in config.tasks.iter().enumerate() {
        let err = |field: &str, message: String| ConfigError { file: file.to_path_buf(), position: None, path: format!("tasks[{i}].{field}"), message };
        let timeout = t.timeout.or(d.timeout).map(|s| s.0).unwrap_or(DEFAULT_TIMEOUT);
        let prompt_from_file = match &t.prompt_file {
            Some(f) => Some(std::fs::read_to_string(base_dir.join(f)).map_err(|e| err("prompt_file", format!("cannot read {f}: {e}")))?),
            None => None,
        };
        for combo in combinations(&t.matrix) {
            let pick = |key: &str| combo.get(key).cloned();
            let mut env = d.env.clone();
            env.extend(t.env.clone());
            for (k, v) in &combo {
                if let Some(name) = k.strip_prefix("env.") {
                    env.insert(name.to_owned(), v.clone());
                }
            }
            let name = if combo.is_empty() {
                t.name.clone()
            } else {
                // Prompts are long: they are named by position (`p1`, `p2`); other values by themselves.
                let suffix: Vec<String> = combo
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        "prompt" => format!("p{}", t.matrix[k].iter().position(|x| x == v).unwrap_or(0) + 1),
                        _ => slug(v),
                    })
                    .collect();
                format!("{}.{}", t.name, suffix.join("."))
            };
            let prompt = pick("prompt").or_else(|| t.prompt.clone()).or_else(|| prompt_from_file.clone()).unwrap_or_default();
            out.push(PlannedTask {
                name,
                base: t.name.clone(),
                matrix: combo.clone(),
                provider: pick("provider").or_else(|| t.provider.or(d.provider).map(|p| p.as_str().to_owned())).unwrap_or_else(|| "local".into()),
                image: pick("image").or_else(|| t.image.clone()).or_else(|| d.image.clone()),
                cpus: d.cpus,
                memory: d.memory,
                network: d.network.unwrap_or_default(),
                ttl: d.ttl,
                workspace: t.workspace.clone().map(|w| match w {
                    Workspace::Dir(p) => Workspace::Dir(base_dir.join(p).to_string_lossy().into_owned()),
                    git => git,
                }),
                setup: t.setup.clone(),
                agent: pick("agent").or_else(|| t.agent.or(d.agent).map(|a| a.as_str().to_owned())).unwrap_or_else(|| "claude".into()),
                model: pick("model").or_else(|| t.model.clone()).or_else(|| d.model.clone()),
                prompt,
                instructions: t.instructions.as_ref().map(|p| base_dir.join(p)),
                mcp_servers: t.mcp_servers.clone(),
                skills: t.skills.iter().map(|s| base_dir.join(s)).collect(),
                env,
                credentials: t.credentials.clone().unwrap_or_else(|| d.credentials.clone()),
                keyless: t.keyless.or(d.keyless).unwrap_or(false),
                check: t.check.clone(),
                artifacts: t.artifacts.clone(),
                timeout,
                retries: t.retries,
                agent_install: t.agent_install.clone().or_else(|| d.agent_install.clone()).unwrap_or_else(|| "auto".into()),
                agent_version: t.agent_version.clone().or_else(|| d.agent_version.clone()),
                llm: d.llm.clone().unwrap_or_default().merged(t.llm.as_ref()),
            });
        }
    }
    // Two expansions could slug to the same name ("a b" and "a-b"): refuse rather than mix results.
    let mut seen = std::collections::BTreeSet::new();
    for t in &out {
        if !seen.insert(t.name.clone()) {
            return Err(ConfigError {
                file: file.to_path_buf(),
                position: None,
                path: "tasks".into(),
                message: format!("two tasks are both named `{}` after matrix expansion; rename one", t.name),
            });
        }
    }
    Ok(out)
}

/// Every combination of the matrix values, in a stable order (keys sorted, values as listed).
fn combinations(matrix: &BTreeMap<String, Vec<String>>) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for (key, values) in matrix {
        let mut next = Vec::new();
        for partial in &out {
            for v in values {
                let mut m = partial.clone();
                m.insert(key.clone(), v.clone());
                next.push(m);
            }
        }
        out = next;
    }
    out
}

/// A value made safe for a task name: letters, digits and `-`, at most 24 characters.
fn slug(v: &str) -> String {
    let s: String = v.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let s: String = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    let s: String = s.chars().take(24).collect();
    if s.is_empty() { "x".into() } else { s }
}

/// `--shard I/N`: 1-based shard `I` of `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad --shard `{s}`: use I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// Keeps the tasks of one shard: task `k` (in plan order) goes to shard `k mod N`.
pub fn shard(tasks: Vec<PlannedTask>, shard: Shard) -> Vec<PlannedTask> {
    tasks.into_iter().enumerate().filter(|(k, _)| k % shard.count == shard.index - 1).map(|(_, t)| t).collect()
}

/// Keeps the tasks whose name contains any of `filters` (all when there are none).
pub fn filter(tasks: Vec<PlannedTask>, filters: &[String]) -> Vec<PlannedTask> {
    if filters.is_empty() {
        return tasks;
    }
    tasks.into_iter().filter(|t| filters.iter().any(|f| t.name.contains(f.as_str()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Vec<PlannedTask> {
        let c = super::super::config::parse(Path::new("/tmp/sbx.yaml"), text).unwrap();
        expand(&c, Path::new("/tmp/sbx.yaml")).unwrap()
    }

    #[test]
    fn matrices_expand_with_names_and_defaults_apply() {
        let tasks = plan("version: 1\ndefaults: {agent: mock, provider: docker, env: {A: '1'}}\ntasks:\n  - name: t\n    prompt: go\n    env: {B: '2'}\n    matrix:\n      agent: [mock, claude]\n      env.MODE: [fast, 'slow run']\n  - name: u\n    prompt: hi\n");
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["t.mock.fast", "t.mock.slow-run", "t.claude.fast", "t.claude.slow-run", "u"]);
        assert_eq!(tasks[3].agent, "claude");
        assert_eq!(tasks[3].env.get("MODE").map(String::as_str), Some("slow run"));
        assert_eq!(tasks[0].env.get("A").map(String::as_str), Some("1"));
        assert_eq!(tasks[4].provider, "docker");
    }

    #[test]
    fn shards_partition_the_plan_exactly() {
        let text = format!("version: 1\ntasks:\n{}", (0..23).map(|i| format!("  - name: t{i}\n    prompt: p\n")).collect::<String>());
        let all = plan(&text);
        for n in 1..=5 {
            let mut seen: Vec<String> = Vec::new();
            for i in 1..=n {
                seen.extend(shard(all.clone(), Shard { index: i, count: n }).into_iter().map(|t| t.name));
            }
            seen.sort();
            let mut want: Vec<String> = all.iter().map(|t| t.name.clone()).collect();
            want.sort();
            assert_eq!(seen, want, "shards of {n} cover every task exactly once");
        }
        assert!("0/3".parse::<Shard>().is_err() && "4/3".parse::<Shard>().is_err() && "x".parse::<Shard>().is_err());
    }
}
