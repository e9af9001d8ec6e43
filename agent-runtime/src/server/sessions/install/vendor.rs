//! The vendors' own release channels, read the way each vendor lays its channel out. The base URL is
//! configuration (`channelUrl`, or the runtime's `SBX_CLAUDE_RELEASES_URL` / `SBX_CODEX_RELEASES_URL`;
//! docs/ci.md says where the vendors publish), so a mirror laid out the same way works too.
//!
//! Claude Code (its native installer's bucket):
//! - `<base>/stable` and `<base>/latest`: the version each channel points at, as text;
//! - `<base>/<version>/manifest.json`: `{"version", "platforms": {"linux-x64": {"checksum": <sha256
//!   hex>, "size"}, …}}`, platforms `linux-x64`, `linux-arm64`, and `-musl` variants for musl systems;
//! - `<base>/<version>/<platform>/claude`: the binary itself.
//!
//! Codex (its GitHub releases, tag `rust-v<version>`):
//! - `<base>/download/rust-v<version>/<asset>`, or `<base>/latest/download/<asset>` for the newest;
//! - `codex-package_SHA256SUMS`: `sha256sum` lines for the package archives;
//! - `codex-package-<target>.tar.gz` (target `x86_64-unknown-linux-musl`, `aarch64-unknown-linux-musl`):
//!   a package directory with `bin/codex` and the resources it runs with; unpacked whole under
//!   `<state>/agents/packages/`, and `bin/codex` linked to it.

use std::path::{Path, PathBuf};

use super::{fetch, AgentRegistry, AgentSpec, Installed};
use crate::api::session::InstallAgentRequest;
use crate::server::ApiError;

/// The channel base URL variable of an agent.
fn channel_env(agent: &str) -> String {
    format!("SBX_{}_RELEASES_URL", agent.to_ascii_uppercase())
}

fn base_url(spec: &AgentSpec, req: &InstallAgentRequest) -> Result<String, ApiError> {
    let var = channel_env(spec.id);
    req.channel_url
        .clone()
        .or_else(|| std::env::var(&var).ok())
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no release channel configured for {}: set {var} (in the sandbox, or on the host for `sbx`) to the vendor's \
                 channel URL or a mirror laid out like it (see docs/ci.md)",
                spec.name
            ))
        })
}

/// A pinned version: digits and dots, maybe a `-suffix`; `None` for a channel name.
fn pinned(version: Option<&str>) -> Result<Option<String>, ApiError> {
    match version.map(str::trim) {
        None | Some("") | Some("stable") | Some("latest") => Ok(None),
        Some(v) => {
            let v = v.strip_prefix('v').unwrap_or(v);
            let (core, _) = v.split_once('-').unwrap_or((v, ""));
            let ok = !core.is_empty() && core.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if ok && !v.contains('/') {
                Ok(Some(v.to_owned()))
            } else {
                Err(ApiError::bad_request(format!("agent version `{v}`: use stable, latest or a version like 2.1.7")))
            }
        }
    }
}

fn arch() -> Result<(&'static str, &'static str), ApiError> {
    // (Claude's platform arch, Rust target arch)
    match std::env::consts::ARCH {
        "x86_64" => Ok(("x64", "x86_64")),
        "aarch64" => Ok(("arm64", "aarch64")),
        other => Err(ApiError::bad_request(format!("no vendor build for architecture {other}"))),
    }
}

/// Whether this system's C library is musl (Claude Code publishes separate musl builds).
fn musl() -> bool {
    let glibc = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"];
    if glibc.iter().any(|p| Path::new(p).exists()) {
        return false;
    }
    std::fs::read_dir("/lib").map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("ld-musl-"))).unwrap_or(false)
}

pub(super) async fn install(reg: &AgentRegistry, spec: &AgentSpec, req: &InstallAgentRequest) -> Result<Installed, ApiError> {
    match spec.id {
        "claude" => claude(reg, spec, req).await,
        "codex" => codex(reg, spec, req).await,
        other => Err(ApiError::bad_request(format!("no vendor channel for `{other}`"))),
    }
}

async fn claude(reg: &AgentRegistry, spec: &AgentSpec, req: &InstallAgentRequest) -> Result<Installed, ApiError> {
    let base = base_url(spec, req)?;
    let client = fetch::client()?;
    let version = match pinned(req.version.as_deref())? {
        Some(v) => v,
        None => {
            let channel = req.version.as_deref().map(str::trim).filter(|c| !c.is_empty()).unwrap_or("stable");
            let v = fetch::get_text(&client, &format!("{base}/{channel}")).await?.trim().to_owned();
            pinned(Some(&v)).map_err(|_| ApiError::bad_request(format!("{base}/{channel} does not hold a version: {v:.80}")))?;
            v
        }
    };
    let manifest_url = format!("{base}/{version}/manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&fetch::get_text(&client, &manifest_url).await?)
        .map_err(|e| ApiError::bad_request(format!("{manifest_url} is not JSON: {e}")))?;
    if let Some(v) = manifest.get("version").and_then(serde_json::Value::as_str) {
        if v != version {
            return Err(ApiError::bad_request(format!("{manifest_url} is for version {v}, not {version}")));
        }
    }
    let platform = format!("linux-{}{}", arch()?.0, if musl() { "-musl" } else { "" });
    let checksum = manifest
        .pointer(&format!("/platforms/{platform}/checksum"))
        .and_then(serde_json::Value::as_str)
        .filter(|c| c.len() == 64 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        .ok_or_else(|| ApiError::bad_request(format!("{manifest_url} has no sha256 checksum for platform {platform}")))?;
    let target = reg.bin_dir().join(spec.id);
    let staged = target.with_extension("partial");
    fetch::download_checked(&format!("{base}/{version}/{platform}/claude"), &staged, checksum).await?;
    fetch::finish_install(&staged, &target).await?;
    Ok(Installed { source: "vendor", channel_version: Some(version) })
}

async fn codex(reg: &AgentRegistry, spec: &AgentSpec, req: &InstallAgentRequest) -> Result<Installed, ApiError> {
    let base = base_url(spec, req)?;
    let client = fetch::client()?;
    let version = pinned(req.version.as_deref())?;
    let dir = match &version {
        Some(v) => format!("{base}/download/rust-v{v}"),
        None => format!("{base}/latest/download"),
    };
    let target_triple = format!("{}-unknown-linux-musl", arch()?.1);
    let asset = format!("codex-package-{target_triple}.tar.gz");
    let sums_url = format!("{dir}/codex-package_SHA256SUMS");
    let sums = fetch::get_text(&client, &sums_url).await?;
    let checksum = sums
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?.trim_start_matches('*')))
        })
        .find(|(_, name)| *name == asset)
        .map(|(sum, _)| sum.to_owned())
        .ok_or_else(|| ApiError::bad_request(format!("{sums_url} lists no checksum for {asset}")))?;
    let packages = reg.dir().join("packages");
    tokio::fs::create_dir_all(&packages).await.map_err(|e| ApiError::io(&packages.to_string_lossy(), e))?;
    let archive = packages.join(format!("{asset}.partial"));
    fetch::download_checked(&format!("{dir}/{asset}"), &archive, &checksum).await?;
    // Each install unpacks into a fresh directory named after the archive's checksum, so a running
    // Codex keeps its files while a new one is put in place.
    let unpack_to = packages.join(format!("codex-{}", &checksum[..16.min(checksum.len())]));
    let archive2 = archive.clone();
    let dest = unpack_to.clone();
    let binary = tokio::task::spawn_blocking(move || unpack(&archive2, &dest))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let _ = tokio::fs::remove_file(&archive).await;
    let binary: PathBuf = binary?;
    let target = reg.bin_dir().join(spec.id);
    let staged = target.with_extension("partial");
    let _ = tokio::fs::remove_file(&staged).await;
    tokio::fs::symlink(&binary, &staged).await.map_err(|e| ApiError::io(&staged.to_string_lossy(), e))?;
    tokio::fs::rename(&staged, &target).await.map_err(|e| ApiError::io(&target.to_string_lossy(), e))?;
    let root = binary.parent().and_then(Path::parent).unwrap_or(&unpack_to);
    let channel_version = version.or_else(|| package_version(root));
    Ok(Installed { source: "vendor", channel_version })
}

/// Unpacks a package archive into `dest` (replacing an earlier copy) and finds its `bin/codex`.
fn unpack(archive: &Path, dest: &Path) -> Result<PathBuf, ApiError> {
    let io = |e: std::io::Error| ApiError::bad_request(format!("unpacking {}: {e}", archive.display()));
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).map_err(io)?;
    let file = std::fs::File::open(archive).map_err(io)?;
    // `unpack` refuses entries that would land outside `dest`.
    tar::Archive::new(flate2::read::GzDecoder::new(file)).unpack(dest).map_err(io)?;
    find_binary(dest, 0).ok_or_else(|| ApiError::bad_request(format!("{} holds no bin/codex", archive.display())))
}

/// `bin/codex` at the top of the package or one directory down.
fn find_binary(dir: &Path, depth: u32) -> Option<PathBuf> {
    let candidate = dir.join("bin/codex");
    if super::super::agents::is_executable(&candidate) {
        return Some(candidate);
    }
    if depth >= 2 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    subdirs.sort();
    subdirs.into_iter().find_map(|d| find_binary(&d, depth + 1))
}

/// The version a package says it is (`codex-package.json`), when it says.
fn package_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("codex-package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("version").and_then(serde_json::Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_channels_or_pins() {
        assert_eq!(pinned(None).unwrap(), None);
        assert_eq!(pinned(Some("stable")).unwrap(), None);
        assert_eq!(pinned(Some("2.1.7")).unwrap().as_deref(), Some("2.1.7"));
        assert_eq!(pinned(Some("v0.163.0")).unwrap().as_deref(), Some("0.163.0"));
        assert_eq!(pinned(Some("1.0.0-beta.1")).unwrap().as_deref(), Some("1.0.0-beta.1"));
        assert!(pinned(Some("../../etc")).is_err());
        assert!(pinned(Some("nightly")).is_err());
    }
}
