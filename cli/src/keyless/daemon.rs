//! `sbx proxy --daemon` / `--stop`: the relay of every keyless sandbox served in the background by a
//! detached `sbx proxy`, found again through a pid file in the state directory.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The pid file and log of the background proxy (both 0600, beside the state database).
pub struct Daemon {
    pid_file: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// The background proxy of the state directory `dir`.
    pub fn new(dir: &std::path::Path) -> Self {
        Self { pid_file: dir.join("proxy.pid"), log: dir.join("proxy.log") }
    }

    /// Where the background proxy writes.
    pub fn log(&self) -> &std::path::Path {
        &self.log
    }

    /// The pid of a running background proxy of this state, if one runs (a stale pid file, or a pid
    /// reused by another program, is not one).
    pub fn running(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.iter().any(|a| *a == b"proxy") && args.first().is_some_and(|a| a.ends_with(b"sbx"));
        ours.then_some(pid)
    }

    /// Starts `sbx proxy` detached (its own process group, so a Ctrl-C in this terminal does not reach
    /// it; no terminal; output appended to the log); its pid.
    pub fn start(&self) -> Result<i32> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let me = std::env::current_exe().context("find the sbx binary")?;
        let child = std::process::Command::new(me)
            .arg("proxy")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("start the background sbx proxy")?;
        let pid = i32::try_from(child.id()).context("pid")?;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.pid_file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{pid}\n").as_bytes()))
            .with_context(|| format!("write {}", self.pid_file.display()))?;
        Ok(pid)
    }

    /// Stops the background proxy (SIGTERM, then SIGKILL after 5 s); the pid it had, or `None` when none
    /// ran.
    pub async fn stop(&self) -> Result<Option<i32>> {
        let Some(pid) = self.running() else {
            let _ = std::fs::remove_file(&self.pid_file);
            return Ok(None);
        };
        use nix::sys::signal::{kill, Signal};
        let target = nix::unistd::Pid::from_raw(pid);
        kill(target, Signal::SIGTERM).with_context(|| format!("signal the background proxy (pid {pid})"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.running().is_some() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if self.running().is_some() {
            let _ = kill(target, Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.pid_file);
        Ok(Some(pid))
    }
}
