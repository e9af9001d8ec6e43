//! A local HTTP server laid out like the vendors' release channels (see the runtime's
//! `install/vendor.rs`), serving whatever binaries a test puts in it:
//!
//! - Claude Code: `<base>/claude/{stable,latest}`, `<base>/claude/<v>/manifest.json`,
//!   `<base>/claude/<v>/<platform>/claude`;
//! - Codex: `<base>/codex/download/rust-v<v>/{codex-package_SHA256SUMS,codex-package-<target>.tar.gz}`
//!   and the same under `<base>/codex/latest/download/`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The running server: files under a temporary directory, served by path.
pub struct ReleaseChannel {
    addr: SocketAddr,
    root: tempfile::TempDir,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// SHA-256 hex of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 hex of a file, streamed.
pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("read");
    hex::encode(h.finalize())
}

/// Claude Code's platform name for this machine (glibc).
pub fn claude_platform() -> &'static str {
    if cfg!(target_arch = "aarch64") { "linux-arm64" } else { "linux-x64" }
}

/// Codex's release target for this machine.
pub fn codex_target() -> &'static str {
    if cfg!(target_arch = "aarch64") { "aarch64-unknown-linux-musl" } else { "x86_64-unknown-linux-musl" }
}

async fn serve(State((root, hits)): State<(PathBuf, Arc<Mutex<Vec<String>>>)>, uri: Uri) -> Response {
    let rel = uri.path().trim_start_matches('/');
    hits.lock().unwrap_or_else(|e| e.into_inner()).push(uri.path().to_owned());
    if rel.split('/').any(|p| p == "..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let path = root.join(rel);
    match tokio::fs::File::open(&path).await {
        Ok(f) if path.is_file() => axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f)).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

impl ReleaseChannel {
    /// Starts on `ip` (loopback, or the Docker bridge gateway for containers), on a free port.
    pub async fn start_on(ip: IpAddr) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().fallback(serve).with_state((root.path().to_path_buf(), hits.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, root, hits, task }
    }

    /// On loopback.
    pub async fn start() -> Self {
        Self::start_on(IpAddr::from([127, 0, 0, 1])).await
    }

    /// The Claude Code channel's base URL.
    pub fn claude_url(&self) -> String {
        format!("http://{}/claude", self.addr)
    }

    /// The Codex channel's base URL.
    pub fn codex_url(&self) -> String {
        format!("http://{}/codex", self.addr)
    }

    /// Paths requested so far.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        let p = self.root.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }

    fn put_file(&self, rel: &str, from: &Path) {
        let p = self.root.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        // A hard link when possible: agent binaries are hundreds of MB.
        if std::fs::hard_link(from, &p).is_err() {
            std::fs::copy(from, &p).expect("copy");
        }
    }

    /// Publishes Claude Code `version` from `binary`; `checksum` overrides the manifest's (to test a
    /// mismatch).
    pub fn publish_claude(&self, version: &str, binary: &Path, checksum: Option<&str>) {
        let sum = checksum.map(str::to_owned).unwrap_or_else(|| sha256_file(binary));
        let size = std::fs::metadata(binary).expect("stat").len();
        let manifest = serde_json::json!({
            "version": version,
            "buildDate": "2026-01-01T00:00:00Z",
            "platforms": { claude_platform(): {"checksum": sum, "size": size} },
        });
        self.put(&format!("claude/{version}/manifest.json"), manifest.to_string().as_bytes());
        self.put_file(&format!("claude/{version}/{}/claude", claude_platform()), binary);
    }

    /// Points Claude Code's `stable` or `latest` channel at `version`.
    pub fn point_claude(&self, channel: &str, version: &str) {
        self.put(&format!("claude/{channel}"), format!("{version}\n").as_bytes());
    }

    /// Publishes Codex `version` (a package archive holding `binary` as `bin/codex`); `latest` also
    /// makes it the newest release. `checksum` overrides the SHA256SUMS line.
    pub fn publish_codex(&self, version: &str, binary: &Path, latest: bool, checksum: Option<&str>) {
        let target = codex_target();
        let mut archive = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut archive, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let pkg = format!("codex-package-{target}");
            let meta = serde_json::json!({"name": "codex", "version": version, "target": target}).to_string();
            let mut h = tar::Header::new_gnu();
            h.set_size(meta.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("{pkg}/codex-package.json"), meta.as_bytes()).expect("tar");
            let mut f = std::fs::File::open(binary).expect("open");
            let mut h = tar::Header::new_gnu();
            h.set_size(std::fs::metadata(binary).expect("stat").len());
            h.set_mode(0o755);
            h.set_cksum();
            tar.append_data(&mut h, format!("{pkg}/bin/codex"), &mut f).expect("tar");
            tar.into_inner().expect("tar").finish().expect("gz");
        }
        let asset = format!("codex-package-{target}.tar.gz");
        let sum = checksum.map(str::to_owned).unwrap_or_else(|| sha256_hex(&archive));
        let sums = format!("{sum}  {asset}\n{}  codex-package-other-target.tar.gz\n", "0".repeat(64));
        let mut dirs = vec![format!("codex/download/rust-v{version}")];
        if latest {
            dirs.push("codex/latest/download".into());
        }
        for d in dirs {
            self.put(&format!("{d}/{asset}"), &archive);
            self.put(&format!("{d}/codex-package_SHA256SUMS"), sums.as_bytes());
        }
    }
}

impl Drop for ReleaseChannel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stand-in agent binary: a shell script whose `--version` prints `version_line`.
pub fn fake_agent(dir: &Path, name: &str, version_line: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\necho '{version_line}'\n")).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}
