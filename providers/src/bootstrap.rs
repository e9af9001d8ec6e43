//! The runtime's building blocks on top of [`Provider`]: find the static `sbx-agent` on the host, stream
//! it as a tar, start it with a token's hash, wait for `/v1/health` with backoff, hand it the session
//! env. The one sequence that puts them together is [`crate::lifecycle::bootstrap_runtime`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sbx_agent::client::Client;

use crate::{ByteStream, Endpoint, Error, ExecSpec, Provider, Result};

/// Env var naming the runtime binary to upload (second place looked, after next to `sbx`).
pub const ENV_RUNTIME: &str = "SBX_RUNTIME";
/// File name of the runtime binary next to `sbx` and in the data dir.
pub const RUNTIME_FILE_NAME: &str = "sbx-agent";

/// Where and how the runtime runs inside one sandbox (stored by the CLI to restart it later).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeLayout {
    /// Absolute path of the binary inside the sandbox.
    pub binary_path: String,
    /// Address the runtime binds inside the sandbox.
    pub listen_host: String,
    /// Port inside the sandbox.
    pub port: u16,
    /// Confine files and process cwd to this directory.
    pub root: Option<String>,
    /// Listen on this Unix socket (path inside the sandbox) instead of TCP.
    pub unix_socket: Option<String>,
    /// Extra env for the runtime process (e.g. where it keeps its state).
    pub env: Vec<(String, String)>,
}

impl Default for RuntimeLayout {
    fn default() -> Self {
        Self {
            binary_path: "/usr/local/bin/sbx-agent".into(),
            listen_host: "0.0.0.0".into(),
            port: sbx_agent::DEFAULT_PORT,
            root: None,
            unix_socket: None,
            env: Vec::new(),
        }
    }
}

/// A runtime that answers: where it is and the token it wants.
#[derive(Debug, Clone)]
pub struct RuntimeHandle {
    /// Where the host reaches it.
    pub endpoint: Endpoint,
    /// Its bearer token (a secret: never print it).
    pub token: String,
}

impl RuntimeHandle {
    /// A client for this runtime.
    pub fn client(&self) -> Result<Client> {
        self.endpoint.client(Some(self.token.clone())).map_err(|e| Error::Runtime(e.to_string()))
    }
}

/// Finds the runtime binary on the host: next to the `sbx` executable, then `$SBX_RUNTIME`, then the
/// data dir (`$XDG_DATA_HOME/sbx/sbx-agent`). With `need_static` (every provider but `local`, whose
/// processes run on the host), candidates that are dynamically linked are skipped: they would not run
/// in an image without the host's libc.
pub fn locate_runtime(need_static: bool) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(dir.join(RUNTIME_FILE_NAME));
    }
    if let Some(p) = std::env::var_os(ENV_RUNTIME).map(PathBuf::from) {
        candidates.push(p);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data {
        candidates.push(d.join("sbx").join(RUNTIME_FILE_NAME));
    }
    let mut tried = Vec::new();
    for p in candidates {
        if !p.is_file() {
            tried.push(format!("{} (missing)", p.display()));
        } else if need_static && !is_static_elf(&p) {
            tried.push(format!("{} (dynamically linked)", p.display()));
        } else {
            return Ok(p);
        }
    }
    Err(Error::RuntimeNotFound { tried: tried.join(", ") })
}

/// True when `path` is an ELF executable without a program interpreter (statically linked).
pub fn is_static_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; 64 * 1024];
    let n = match std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        Err(_) => return false,
    };
    let head = &head[..n];
    // 64-bit little-endian ELF only (the runtime is x86_64).
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        match head.get(o..o + 4) {
            Some(b) => u32::from_le_bytes(b.try_into().expect("4 bytes")) != PT_INTERP,
            None => false,
        }
    })
}

/// A fresh random token (32 hex chars).
pub fn fresh_token() -> String {
    crate::random_hex(16)
}

/// A tar stream holding the file at `path` as `name` (mode 0755), streamed from disk.
pub async fn file_tar_stream(path: &Path, name: &str) -> Result<ByteStream> {
    let file = tokio::fs::File::open(path).await.map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let len = file.metadata().await.map_err(|e| Error::io(format!("stat {}", path.display()), e))?.len();
    let mut header = tar::Header::new_gnu();
    header.set_path(name).map_err(|e| Error::io("tar header", e))?;
    header.set_size(len);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let head = Bytes::copy_from_slice(header.as_bytes());
    // Entry data is padded to 512 bytes, and the archive ends with two zero blocks.
    let pad = (512 - (len % 512) as usize) % 512;
    let tail = Bytes::from(vec![0u8; pad + 1024]);
    let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let stream = futures::stream::once(async move { Ok(head) })
        .chain(body)
        .chain(futures::stream::once(async move { Ok(tail) }));
    Ok(Box::pin(stream))
}

/// Waits until the runtime at `client` answers `/v1/health`, backing off from 5 ms up to 250 ms.
pub async fn wait_healthy(client: &Client, timeout: Duration) -> Result<sbx_agent::api::Health> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(2), client.health()).await;
        match attempt {
            Ok(Ok(h)) => return Ok(h),
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Runtime(format!("did not become healthy within {} s: {e}", timeout.as_secs())))
            }
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout { op: "waiting for the runtime's /v1/health".into(), after: timeout })
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// Uploads (unless the right version is already there), starts, and waits for the runtime: a thin
/// delegate to [`crate::lifecycle::bootstrap_runtime`], the one bootstrap, with no session env and no
/// observer. Commands use [`crate::lifecycle::Lifecycle`].
pub async fn bootstrap(
    provider: &dyn Provider,
    id: &str,
    runtime_binary: &Path,
    layout: &RuntimeLayout,
) -> Result<RuntimeHandle> {
    let runtime = crate::lifecycle::RuntimeBinary::Path(runtime_binary.to_path_buf());
    let recorder = crate::lifecycle::PhaseRecorder::default();
    crate::lifecycle::bootstrap_runtime(provider, id, &runtime, layout, fresh_token(), &[], &recorder, Duration::from_secs(30)).await
}

/// Whether a runtime of this version is already at `layout.binary_path` (as in a template that has
/// it preinstalled).
pub async fn installed(provider: &dyn Provider, id: &str, layout: &RuntimeLayout) -> bool {
    match provider.exec(id, &ExecSpec::new([layout.binary_path.as_str(), "--version"])).await {
        // `sbx-agent <version>`: only the version word is compared, as text.
        Ok(out) => out.exit_code == 0 && out.stdout.split(|b| b.is_ascii_whitespace()).nth(1) == Some(sbx_agent::VERSION.as_bytes()),
        Err(_) => false,
    }
}

/// Starts the runtime as a background daemon (`sbx-agent daemon start`, which reuses a healthy one).
/// It gets only the SHA-256 of `token` (`--token-sha256`); `layout.env` must hold no secret (secrets
/// go over the API afterwards: [`push_session_env`]).
pub async fn start(provider: &dyn Provider, id: &str, layout: &RuntimeLayout, token: &str) -> Result<()> {
    let mut argv = vec![layout.binary_path.clone(), "daemon".into(), "start".into()];
    argv.extend(["--host".into(), layout.listen_host.clone(), "--port".into(), layout.port.to_string()]);
    if let Some(root) = &layout.root {
        argv.extend(["--root".into(), root.clone()]);
    }
    if let Some(sock) = &layout.unix_socket {
        argv.extend(["--unix".into(), sock.clone()]);
    }
    // Only the token's SHA-256 goes on the command line: the token itself is in no file, argument or
    // environment inside the sandbox (every process of the user could read those).
    argv.extend(["--token-sha256".into(), sbx_agent::token_sha256_hex(token)]);
    let mut spec = ExecSpec::new(argv);
    for (k, v) in &layout.env {
        spec.env.insert(k.clone(), v.clone());
    }
    spec.timeout = Some(Duration::from_secs(30));
    let out = provider.exec(id, &spec).await?;
    if out.exit_code != 0 {
        return Err(Error::Runtime(format!(
            "failed to start (exit {}): {}{}",
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Hands the agent-session secrets (the `sbx up --credentials` keys, unprefixed names such as
/// `ANTHROPIC_API_KEY`) to a runtime that answers, over its authenticated API
/// (`PUT /v1/runtime/session-env`). The runtime keeps them in memory only, so call this after every
/// start, restart included. An empty `env` sends nothing.
pub async fn push_session_env(client: &Client, env: &[(String, String)]) -> Result<()> {
    if env.is_empty() {
        return Ok(());
    }
    let map = env.iter().cloned().collect();
    client.set_session_env(map).await.map_err(|e| Error::Runtime(format!("handing the session credentials over: {e}")))?;
    Ok(())
}

/// Whether the runtime answers `/v1/health` within three tries. Needs no provider, so callers can check
/// this before paying for a control-plane connection.
pub async fn answers(client: &Client) -> bool {
    for attempt in 0..3 {
        match tokio::time::timeout(Duration::from_secs(3), client.health()).await {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => tracing::debug!(attempt, error = %e, "health check failed"),
            Err(_) => tracing::debug!(attempt, "health check timed out"),
        }
        if attempt < 2 {
            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
        }
    }
    false
}
