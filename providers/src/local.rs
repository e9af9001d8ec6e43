//! `local`: a sandbox is a directory on the host plus a runtime process confined to it with `--root`.
//!
//! This is the embedded default that needs nothing installed. It confines the file API, but processes
//! run on the host as the user: it is for development and trusted tasks, not isolation.
//!
//! Layout of a sandbox `<base>/<id>/`:
//! - `workspace/` — the root the runtime is confined to (processes start here);
//! - `.sbx/meta.json` — labels, creation time, the runtime's port;
//! - `.sbx/bin/sbx-agent` — the uploaded runtime;
//! - `.sbx/state/` — the runtime's `XDG_STATE_HOME` (daemon record, logs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::bootstrap::RuntimeLayout;
use crate::{
    ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox, SandboxSpec,
    SandboxState,
};

const NAME: &str = "local";

/// The local provider, keeping sandboxes under `base`.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    base: PathBuf,
    runtime: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    id: String,
    labels: Labels,
    created_at: u64,
    runtime_port: u16,
    env: BTreeMap<String, String>,
    #[serde(default)]
    paused: bool,
}

impl LocalProvider {
    /// Sandboxes live under `base` (created when needed).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into(), runtime: None }
    }

    /// Runs the host's runtime binary at `path` in place instead of copying it into each sandbox
    /// (processes run on the host anyway, so a copy buys nothing and costs time).
    pub fn with_runtime(mut self, path: impl Into<PathBuf>) -> Self {
        self.runtime = Some(path.into());
        self
    }

    /// The directory of sandbox `id`.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.base.join(id)
    }

    /// The directory the runtime is confined to.
    pub fn workspace_dir(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join("workspace")
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join(".sbx/meta.json")
    }

    fn valid_id(id: &str) -> bool {
        !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }

    async fn read_meta(&self, id: &str) -> Result<Option<Meta>> {
        if !Self::valid_id(id) {
            return Ok(None);
        }
        match tokio::fs::read(self.meta_path(id)).await {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Provider { provider: NAME, message: format!("corrupt metadata of `{id}`: {e}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read metadata of `{id}`"), e)),
        }
    }

    async fn write_meta(&self, meta: &Meta) -> Result<()> {
        let path = self.meta_path(&meta.id);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(meta).expect("serializable");
        tokio::fs::write(&tmp, bytes).await.map_err(|e| Error::io("write sandbox metadata", e))?;
        tokio::fs::rename(&tmp, &path).await.map_err(|e| Error::io("write sandbox metadata", e))
    }

    async fn require(&self, id: &str) -> Result<Meta> {
        self.read_meta(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })
    }

    fn to_sandbox(&self, meta: Meta) -> Sandbox {
        Sandbox {
            id: meta.id,
            provider: NAME.into(),
            labels: meta.labels,
            state: if meta.paused { SandboxState::Paused } else { SandboxState::Running },
            image: None,
            created_at: Some(meta.created_at),
        }
    }

    /// The daemon record the runtime wrote (pid), if it is running.
    fn runtime_pid(&self, id: &str, port: u16) -> Option<i32> {
        let rec = self.sandbox_dir(id).join(format!(".sbx/state/sbx-agent/daemons/127_0_0_1_{port}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(rec).ok()?).ok()?;
        v.get("pid")?.as_i64().map(|p| p as i32)
    }

    /// Maps a sandbox path (`/x` means `<sandbox>/x` unless it already is a host path inside it).
    fn host_path(&self, id: &str, dest: &str) -> Result<PathBuf> {
        let dir = self.sandbox_dir(id);
        let p = Path::new(dest);
        let mapped = if p.starts_with(&dir) { p.to_path_buf() } else { dir.join(dest.trim_start_matches('/')) };
        if mapped.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(Error::InvalidSpec(format!("path `{dest}` must not contain `..`")));
        }
        Ok(mapped)
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("pick a free port", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("pick a free port", e))?.port())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh id: the name plus a random suffix, so re-using a name never collides with a leftover.
fn fresh_id(name: &str) -> String {
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let suffix = crate::random_hex(4);
    if clean.is_empty() {
        format!("sbx-{suffix}")
    } else {
        format!("{clean}-{suffix}")
    }
}

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        crate::registry::LOCAL.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        if spec.network == crate::Network::None {
            return Err(Error::Unsupported { op: "--network none (processes run on the host)", provider: NAME });
        }
        if spec.image.is_some() {
            return Err(Error::InvalidSpec("the local provider has no images; drop --image or use --provider docker".into()));
        }
        let id = fresh_id(&spec.name);
        let dir = self.sandbox_dir(&id);
        for sub in ["workspace", ".sbx/bin", ".sbx/state"] {
            tokio::fs::create_dir_all(dir.join(sub)).await.map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let meta = Meta {
            id: id.clone(),
            labels: spec.labels.clone(),
            created_at: now_secs(),
            runtime_port: free_port()?,
            env: spec.env.clone(),
            paused: false,
        };
        self.write_meta(&meta).await?;
        Ok(self.to_sandbox(meta))
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        Ok(self.read_meta(id).await?.map(|m| self.to_sandbox(m)))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(&self.base).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("list {}", self.base.display()), e)),
        };
        while let Some(entry) = rd.next_entry().await.map_err(|e| Error::io("list sandboxes", e))? {
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if let Ok(Some(meta)) = self.read_meta(&id).await {
                if labels.iter().all(|(k, v)| meta.labels.get(k) == Some(v)) {
                    out.push(self.to_sandbox(meta));
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        let meta = self.require(id).await?;
        let Some((prog, args)) = cmd.argv.split_first() else {
            return Err(Error::InvalidSpec("empty command".into()));
        };
        let prog = if prog.starts_with('/') { self.host_path(id, prog)? } else { PathBuf::from(prog) };
        let prog = if prog.exists() { prog } else { PathBuf::from(&cmd.argv[0]) };
        let cwd = match &cmd.cwd {
            Some(c) => self.host_path(id, c)?,
            None => self.workspace_dir(id),
        };
        let mut child = tokio::process::Command::new(&prog);
        child
            .args(args)
            .current_dir(&cwd)
            .envs(&meta.env)
            .env("XDG_STATE_HOME", self.sandbox_dir(id).join(".sbx/state"))
            .envs(&cmd.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = child
            .spawn()
            .map_err(|e| Error::io(format!("run `{}` in local sandbox `{id}`", prog.display()), e))?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let run = async {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let (r1, r2, status) =
                tokio::join!(stdout.read_to_end(&mut o), stderr.read_to_end(&mut e), child.wait());
            r1.and(r2).map_err(|e| Error::io("read command output", e))?;
            let status = status.map_err(|e| Error::io("wait for command", e))?;
            Ok::<_, Error>(ExecOutput { exit_code: status.code().map(i64::from).unwrap_or(-1), stdout: o, stderr: e })
        };
        match cmd.timeout {
            Some(t) => tokio::time::timeout(t, run)
                .await
                .map_err(|_| Error::Timeout { op: format!("exec `{}`", cmd.argv.join(" ")), after: t })?,
            None => run.await,
        }
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        self.require(id).await?;
        let dest = self.host_path(id, dest)?;
        tokio::fs::create_dir_all(&dest).await.map_err(|e| Error::io(format!("create {}", dest.display()), e))?;
        let reader = tokio_util::io::StreamReader::new(archive.map(|r| r.map_err(std::io::Error::other)));
        let bridge = tokio_util::io::SyncIoBridge::new(Box::pin(reader));
        tokio::task::spawn_blocking(move || {
            let mut ar = tar::Archive::new(bridge);
            ar.set_preserve_permissions(true);
            ar.set_overwrite(true);
            // unpack_in refuses entries that would land outside `dest`.
            for entry in ar.entries()? {
                let mut entry = entry?;
                // Replace, never write through: a running binary can't be opened for writing.
                if let Ok(path) = entry.path() {
                    let target = dest.join(path);
                    if target.is_file() {
                        let _ = std::fs::remove_file(&target);
                    }
                }
                entry.unpack_in(&dest)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| Error::io("upload", std::io::Error::other(e)))?
        .map_err(|e| Error::io("unpack upload", e))
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        let meta = self.require(id).await?;
        let port = if port == sbx_agent::DEFAULT_PORT { meta.runtime_port } else { port };
        Ok(Endpoint::http(format!("http://127.0.0.1:{port}")))
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.set_stopped(id, true).await
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.set_stopped(id, false).await
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        let Some(meta) = self.read_meta(id).await? else { return Ok(()) };
        if let Some(pid) = self.runtime_pid(id, meta.runtime_port) {
            let pid = nix::unistd::Pid::from_raw(pid);
            // A paused runtime must be continued to act on SIGTERM (which also kills its processes).
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if !sbx_agent::process_alive(pid.as_raw() as u32) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let dir = self.sandbox_dir(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
        }
    }

    async fn runtime_layout(&self, id: &str) -> Result<RuntimeLayout> {
        let meta = self.require(id).await?;
        let dir = self.sandbox_dir(id);
        Ok(RuntimeLayout {
            binary_path: match &self.runtime {
                Some(p) => p.display().to_string(),
                None => dir.join(".sbx/bin/sbx-agent").display().to_string(),
            },
            listen_host: "127.0.0.1".into(),
            port: meta.runtime_port,
            root: Some(self.workspace_dir(id).display().to_string()),
            unix_socket: None,
            env: vec![("XDG_STATE_HOME".into(), dir.join(".sbx/state").display().to_string())],
        })
    }
}

impl LocalProvider {
    /// Pause = SIGSTOP the runtime process (its managed processes run in their own groups and keep going).
    async fn set_stopped(&self, id: &str, stopped: bool) -> Result<()> {
        let mut meta = self.require(id).await?;
        if let Some(pid) = self.runtime_pid(id, meta.runtime_port) {
            let sig = if stopped { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        meta.paused = stopped;
        self.write_meta(&meta).await
    }
}
