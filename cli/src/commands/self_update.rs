//! `sbx self-update [VERSION]`: moves this sbx to another release through the same path a first
//! install takes. It fetches the release's installer (`get-sbx.sh`) and runs it with `--bin-dir` set to
//! where this sbx lives, so the archive's SHA-256 is checked before anything is unpacked and a
//! mismatch leaves the installed binaries as they were: one checksum-verified path, not two.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result};
use clap::Args;
use tokio::io::AsyncWriteExt;

use crate::output::{usage, Exit, Output};

/// Where the release archives are published; overrides the URL built in by install/release.sh.
pub const BASE_URL_ENV: &str = "SBX_INSTALL_BASE_URL";

/// `sbx self-update` flags.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sbx self-update              # the latest release\n  sbx self-update 0.2.0        # a given one\n  sbx self-update --dry-run    # print the installer command instead\n\nEnv: SBX_INSTALL_BASE_URL (the releases base URL, e.g. a mirror)."
)]
pub struct SelfUpdateArgs {
    /// The release to install (`0.2.0` or `v0.2.0`); default: the latest.
    // Not named `version`: that id belongs to the global --version flag.
    #[arg(value_name = "VERSION", default_value = "latest")]
    pub release: String,
    /// Print the equivalent installer command and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the release's installer into the directory this sbx is in.
pub async fn run(out: &Output, a: &SelfUpdateArgs) -> Result<Exit> {
    let base = base_url()?;
    let version = a.release.trim_start_matches('v');
    let installer = if version == "latest" { format!("{base}/latest/download/get-sbx.sh") } else { format!("{base}/download/v{version}/get-sbx.sh") };
    let exe = std::env::current_exe().context("where is this sbx?")?;
    let bin_dir: PathBuf = exe.canonicalize().unwrap_or(exe).parent().map(PathBuf::from).context("this sbx has no directory")?;
    let bin = bin_dir.to_string_lossy();
    if a.dry_run {
        out.line(format!("curl -fsSL {installer} | {BASE_URL_ENV}={base} sh -s -- --version {version} --bin-dir '{bin}'"));
        return Ok(Exit::Success);
    }
    out.note(format!("fetching {installer}"));
    let script = reqwest::get(&installer)
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot download the installer {installer}"))?
        .bytes()
        .await
        .with_context(|| format!("cannot download the installer {installer}"))?;
    // The script goes in on stdin, so no temporary file is left behind.
    let mut child = tokio::process::Command::new("sh")
        .args(["-s", "--", "--version", version, "--bin-dir"])
        .arg(&bin_dir)
        .env(BASE_URL_ENV, &base)
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot start sh to run the installer")?;
    let mut stdin = child.stdin.take().context("installer stdin")?;
    stdin.write_all(&script).await.context("cannot pass the installer to sh")?;
    drop(stdin);
    let status = child.wait().await.context("installer")?;
    if !status.success() {
        anyhow::bail!("the installer failed ({status}); this sbx is unchanged unless it said otherwise");
    }
    Ok(Exit::Success)
}

/// `SBX_INSTALL_BASE_URL`, else the URL built in by the release script, else a usage error saying how.
fn base_url() -> Result<String> {
    let from_env = std::env::var(BASE_URL_ENV).ok().filter(|u| !u.is_empty());
    let built_in = Some(env!("SBX_BUILD_RELEASES_URL")).filter(|u| !u.is_empty()).map(str::to_owned);
    from_env.or(built_in).map(|u| u.trim_end_matches('/').to_owned()).ok_or_else(|| {
        usage(format!(
            "this sbx was built from a checkout and does not know where releases are published: set \
             {BASE_URL_ENV} (e.g. https://<host>/<owner>/sbx/releases), or install a release with get-sbx.sh (docs/install.md)"
        ))
    })
}
