//! The bootstrap channel: exec (attached, exit code from inspect) and uploads (archive API, streamed).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::{DownloadFromContainerOptions, LogOutput, UploadToContainerOptions};
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures::StreamExt;

use super::{map_err, status_of, DockerProvider, NAME};
use crate::{ByteStream, Error, ExecOutput, ExecSpec, Result};

impl DockerProvider {
    /// Runs `cmd` in container `name` to completion.
    pub(super) async fn exec_in(&self, name: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        if cmd.argv.is_empty() {
            return Err(Error::InvalidSpec("empty command".into()));
        }
        let run = self.exec_attached(name, cmd);
        match cmd.timeout {
            // The engine has no way to stop an exec; the command may go on running in the sandbox.
            Some(t) => tokio::time::timeout(t, run)
                .await
                .map_err(|_| Error::Timeout { op: format!("exec `{}`", cmd.argv.join(" ")), after: t })?,
            None => run.await,
        }
    }

    async fn exec_attached(&self, name: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        let env: Vec<String> = cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let opts = CreateExecOptions {
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.argv.clone()),
            env: (!env.is_empty()).then_some(env),
            working_dir: cmd.cwd.clone(),
            ..Default::default()
        };
        let exec = self.docker.create_exec(name, opts).await.map_err(|e| map_err(e, name))?;
        let start = StartExecOptions { detach: false, tty: false, output_capacity: Some(256 * 1024) };
        let started = self.docker.start_exec(&exec.id, Some(start)).await.map_err(|e| map_err(e, name))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(Error::Provider { provider: NAME, message: "exec started detached".into() });
        };
        let mut out = ExecOutput::default();
        while let Some(chunk) = output.next().await {
            match chunk.map_err(|e| map_err(e, name))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    out.stdout.extend_from_slice(&message)
                }
                LogOutput::StdErr { message } => out.stderr.extend_from_slice(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        // The output ends when the process does, but the engine may record the exit code a moment later.
        let mut delay = Duration::from_millis(2);
        for _ in 0..200 {
            let info = self.docker.inspect_exec(&exec.id).await.map_err(|e| map_err(e, name))?;
            if info.running != Some(true) {
                out.exit_code = info.exit_code.unwrap_or(-1);
                return Ok(out);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
        Err(Error::Provider { provider: NAME, message: format!("exec in `{name}` closed its output but never exited") })
    }

    /// Unpacks `archive` under `dest` in container `name` (which may be created but not yet started).
    pub(super) async fn upload_to(&self, name: &str, archive: ByteStream, dest: &str) -> Result<()> {
        if !dest.starts_with('/') {
            return Err(Error::InvalidSpec(format!("upload destination `{dest}` must be an absolute path")));
        }
        if dest.split('/').any(|c| c == "..") {
            return Err(Error::InvalidSpec(format!("upload destination `{dest}` must not contain `..`")));
        }
        self.ensure_dir(name, dest).await?;
        // The engine takes a stream of plain bytes: remember a read error, end the body there, report it.
        let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let slot = failed.clone();
        let body = archive
            .map(move |r| {
                r.map_err(|e| {
                    *slot.lock().expect("error slot") = Some(e);
                })
            })
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| futures::future::ready(r.ok()));
        let opts = UploadToContainerOptions { path: dest.to_owned(), ..Default::default() };
        let sent = self.docker.upload_to_container_streaming(name, Some(opts), body).await;
        if let Some(e) = failed.lock().expect("error slot").take() {
            return Err(Error::io(format!("read the archive uploaded to `{name}`"), e));
        }
        sent.map_err(|e| map_err(e, name))
    }

    /// Whether `path` exists in container `name` (following symlinks in its parents).
    pub(super) async fn path_exists(&self, name: &str, path: &str) -> Result<bool> {
        let opts = DownloadFromContainerOptions { path: path.to_owned() };
        // Only the answer's status matters: take the first chunk and drop the rest of the archive.
        let mut body = self.docker.download_from_container(name, Some(opts));
        match body.next().await {
            None | Some(Ok(_)) => Ok(true),
            // 404 is either the path or the container: only a container that still exists says "no".
            Some(Err(e)) if status_of(&e) == Some(404) => match self.docker.inspect_container(name, None::<bollard::container::InspectContainerOptions>).await {
                Ok(_) => Ok(false),
                Err(_) => Err(map_err(e, name)),
            },
            Some(Err(e)) => Err(map_err(e, name)),
        }
    }

    /// Creates the missing directories of `dest` (with a tar of directory entries, so no shell is needed).
    async fn ensure_dir(&self, name: &str, dest: &str) -> Result<()> {
        let mut existing = dest.trim_end_matches('/').to_owned();
        let mut missing = Vec::new();
        while !existing.is_empty() && !self.path_exists(name, &existing).await? {
            let (parent, last) = existing.rsplit_once('/').expect("absolute path");
            if !last.is_empty() && last != "." {
                missing.push(last.to_owned());
            }
            existing = parent.to_owned();
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut tar = tar::Builder::new(Vec::new());
        let mut rel = PathBuf::new();
        for dir in missing.iter().rev() {
            rel.push(dir);
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, &rel, std::io::empty()).map_err(|e| Error::io("build directory tar", e))?;
        }
        let bytes = tar.into_inner().map_err(|e| Error::io("build directory tar", e))?;
        let base = if existing.is_empty() { "/".to_owned() } else { existing };
        let opts = UploadToContainerOptions { path: base, ..Default::default() };
        self.docker.upload_to_container(name, Some(opts), bytes.into()).await.map_err(|e| map_err(e, name))
    }
}
