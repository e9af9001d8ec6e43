//! `sbx-agent daemon start|stop|status`: one background server per host:port.
//!
//! Each daemon has a record `<state dir>/daemons/<host>_<port>.json` (mode 0600) with its pid, version,
//! and log file. `start` reuses a daemon that is alive and answers `/v1/health`; otherwise it re-executes
//! this binary as `sbx-agent server …` in its own session with output going to the log file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cli::{state_dir, DaemonTarget, ServerArgs};

/// What to do.
#[derive(Debug)]
pub enum Action {
    /// Start (or reuse).
    Start(Box<ServerArgs>),
    /// Stop.
    Stop(DaemonTarget),
    /// Report.
    Status(DaemonTarget),
}

/// The record of a running daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonRecord {
    /// Process id of the server.
    pub pid: u32,
    /// Version of the binary that started it.
    pub version: String,
    /// Listen host.
    pub host: IpAddr,
    /// Listen port.
    pub port: u16,
    /// Where its stdout/stderr and logs go.
    pub log_file: PathBuf,
    /// Unix seconds when it started.
    pub started_at: u64,
}

fn record_path(host: IpAddr, port: u16) -> PathBuf {
    let host = host.to_string().replace([':', '.'], "_");
    state_dir().join("daemons").join(format!("{host}_{port}.json"))
}

fn read_record(host: IpAddr, port: u16) -> Option<DaemonRecord> {
    let bytes = std::fs::read(record_path(host, port)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_record(rec: &DaemonRecord) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = record_path(rec.host, rec.port);
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(rec).expect("serializable"))?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

async fn healthy(host: IpAddr, port: u16) -> Option<crate::api::Health> {
    let host = if host.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { host };
    let url = match host {
        IpAddr::V6(h) => format!("http://[{h}]:{port}"),
        IpAddr::V4(h) => format!("http://{h}:{port}"),
    };
    let client = crate::client::Client::new(&url, None).ok()?;
    tokio::time::timeout(Duration::from_secs(2), client.health()).await.ok()?.ok()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// Runs a daemon action and returns the process exit code (status: 0 running, 3 not running).
pub fn run(action: Action) -> ExitCode {
    match action {
        Action::Start(args) => start(*args),
        Action::Stop(t) => stop(t),
        Action::Status(t) => status(t),
    }
}

fn start(args: ServerArgs) -> ExitCode {
    if let Err(e) = args.to_config() {
        eprintln!("sbx-agent: {e}");
        return ExitCode::from(2);
    }
    if args.port == 0 {
        eprintln!("sbx-agent: daemon start needs a fixed --port (0 would make it impossible to find again)");
        return ExitCode::from(2);
    }
    if let Some(rec) = read_record(args.host, args.port) {
        if crate::process_alive(rec.pid) && block_on(healthy(args.host, args.port)).is_some_and(|h| h.pid == rec.pid) {
            println!(
                "sbx-agent daemon already running on {}:{} (pid {}, version {}); reusing it",
                rec.host, rec.port, rec.pid, rec.version
            );
            return ExitCode::SUCCESS;
        }
    }
    if let Some(h) = block_on(healthy(args.host, args.port)) {
        eprintln!(
            "sbx-agent: {}:{} is already served by another sbx-agent (pid {}, version {}) that this daemon \
             did not start; stop it or choose another --port",
            args.host, args.port, h.pid, h.version
        );
        return ExitCode::FAILURE;
    }
    let log_dir = args.log_dir.clone().unwrap_or_else(super::cli::default_log_dir);
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!("sbx-agent: cannot create log dir {}: {e}", log_dir.display());
        return ExitCode::FAILURE;
    }
    let log_file = log_dir.join(format!("daemon-{}.log", args.port));
    let out = match std::fs::OpenOptions::new().create(true).append(true).open(&log_file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sbx-agent: cannot open {}: {e}", log_file.display());
            return ExitCode::FAILURE;
        }
    };
    // Re-run ourselves with `daemon start` replaced by `server`, keeping every other argument as given.
    let argv: Vec<String> = std::env::args().collect();
    let mut child_args = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        if argv[i] == "daemon" && argv.get(i + 1).map(String::as_str) == Some("start") {
            child_args.push("server".to_owned());
            i += 2;
            continue;
        }
        child_args.push(argv[i].clone());
        i += 1;
    }
    let exe = match super::own_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sbx-agent: cannot find own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&child_args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out);
    if args.log_dir.is_none() {
        cmd.arg("--log-dir").arg(&log_dir);
    }
    // Its own process group, so a Ctrl-C in the starting shell does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sbx-agent: cannot start server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = child.id();
    let up = block_on(async {
        // Back off from 2 ms: a local start is usually healthy within a few milliseconds.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(2);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if healthy(args.host, args.port).await.is_some_and(|h| h.pid == pid) {
                return true;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
        false
    });
    if !up {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("sbx-agent: the server did not become healthy; see {}", log_file.display());
        return ExitCode::FAILURE;
    }
    let rec = DaemonRecord {
        pid,
        version: crate::VERSION.into(),
        host: args.host,
        port: args.port,
        log_file: log_file.clone(),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    if let Err(e) = write_record(&rec) {
        eprintln!("sbx-agent: started pid {pid} but could not record it: {e}");
    }
    println!("sbx-agent daemon started on {}:{} (pid {pid}); logs: {}", args.host, args.port, log_file.display());
    ExitCode::SUCCESS
}

fn stop(t: DaemonTarget) -> ExitCode {
    let Some(rec) = read_record(t.host, t.port) else {
        println!("no sbx-agent daemon recorded on {}:{}", t.host, t.port);
        return ExitCode::SUCCESS;
    };
    let pid = nix::unistd::Pid::from_raw(rec.pid as i32);
    if crate::process_alive(rec.pid) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            !crate::process_alive(rec.pid)
        });
        if !gone {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(record_path(t.host, t.port));
    println!("sbx-agent daemon on {}:{} stopped (pid {})", t.host, t.port, rec.pid);
    ExitCode::SUCCESS
}

fn status(t: DaemonTarget) -> ExitCode {
    let rec = read_record(t.host, t.port);
    let health = rec.as_ref().filter(|r| crate::process_alive(r.pid)).and_then(|_| block_on(healthy(t.host, t.port)));
    let running = health.is_some();
    if t.json {
        let v = serde_json::json!({ "running": running, "record": rec, "health": health });
        println!("{v}");
    } else {
        match (&rec, &health) {
            (Some(r), Some(h)) => println!(
                "running on {}:{} (pid {}, version {}, up {} s); logs: {}",
                r.host,
                r.port,
                r.pid,
                h.version,
                h.uptime_ms / 1000,
                r.log_file.display()
            ),
            (Some(r), None) => println!("not running on {}:{} (stale record for pid {})", r.host, r.port, r.pid),
            (None, _) => println!("not running on {}:{}", t.host, t.port),
        }
    }
    if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
