//! Moving bytes into place with a SHA-256 check: copies inside the sandbox, downloads over HTTP, and
//! the atomic rename at the end (a half-written or mismatching file never becomes the agent).

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::server::ApiError;

/// Env var holding the default mirror URL template for installs.
pub(crate) const MIRROR_ENV: &str = "SBX_AGENT_MIRROR";

/// A client for channels: bounded connect time (a sandbox without network fails in seconds), no
/// overall timeout (binaries are hundreds of MB).
pub(super) fn client() -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().map_err(|e| ApiError::internal(e.to_string()))
}

/// An error with its causes, for messages ("…: tcp connect error: Connection refused").
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// The body of a small document (a version pointer, a manifest, a checksum list).
pub(super) async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, ApiError> {
    let resp = client.get(url).send().await.map_err(|e| ApiError::bad_request(format!("cannot fetch {url}: {}", chain(&e))))?;
    if !resp.status().is_success() {
        return Err(ApiError::bad_request(format!("{url} answered {}", resp.status())));
    }
    resp.text().await.map_err(|e| ApiError::bad_request(format!("reading {url}: {}", chain(&e))))
}

pub(super) async fn finish_install(staged: &Path, target: &Path) -> Result<(), ApiError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(|e| ApiError::io(&staged.to_string_lossy(), e))?;
    // A link left by an earlier install (a package's binary) is replaced, not written through.
    let _ = tokio::fs::remove_file(target).await;
    tokio::fs::rename(staged, target).await.map_err(|e| ApiError::io(&target.to_string_lossy(), e))
}

fn check_sha(expected: Option<&str>, actual: &str, what: &str) -> Result<(), ApiError> {
    match expected {
        Some(e) if !e.trim().eq_ignore_ascii_case(actual) => Err(ApiError::bad_request(format!(
            "checksum mismatch for {what}: expected sha256 {}, got {actual}; nothing was installed",
            e.trim()
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn copy_checked(from: &Path, to: &Path, sha256: Option<&str>) -> Result<(), ApiError> {
    let (from, to2) = (from.to_path_buf(), to.to_path_buf());
    let digest = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut input = std::fs::File::open(&from)?;
        let mut out = std::fs::File::create(&to2)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut out, &buf[..n])?;
        }
        out.sync_all()?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    if let Err(e) = check_sha(sha256, &digest, "the uploaded binary") {
        let _ = tokio::fs::remove_file(to).await;
        return Err(e);
    }
    Ok(())
}

/// The checksum a mirror keeps beside a file (`<url>.sha256`, `sha256sum` format or the bare hex).
pub(super) async fn mirror_checksum(url: &str) -> Result<String, ApiError> {
    let sums_url = format!("{url}.sha256");
    let text = get_text(&client()?, &sums_url)
        .await
        .map_err(|e| ApiError::bad_request(format!("the mirror has no checksum ({}); give `sha256` explicitly", e.detail())))?;
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Downloads `url` to `to`, refusing (and deleting) it unless its SHA-256 is `expected`.
pub(super) async fn download_checked(url: &str, to: &Path, expected: &str) -> Result<(), ApiError> {
    let client = client()?;
    let mut resp = client.get(url).send().await.map_err(|e| ApiError::bad_request(format!("cannot fetch {url}: {}", chain(&e))))?;
    if !resp.status().is_success() {
        return Err(ApiError::bad_request(format!("{url} answered {}", resp.status())));
    }
    let mut file = tokio::fs::File::create(to).await.map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    let mut hasher = Sha256::new();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(to).await;
                return Err(ApiError::bad_request(format!("downloading {url}: {}", chain(&e))));
            }
        };
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    }
    file.sync_all().await.map_err(|e| ApiError::io(&to.to_string_lossy(), e))?;
    drop(file);
    let digest = hex::encode(hasher.finalize());
    if let Err(e) = check_sha(Some(expected), &digest, url) {
        let _ = tokio::fs::remove_file(to).await;
        return Err(e);
    }
    Ok(())
}
