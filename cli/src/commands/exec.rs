//! `sbx exec NAME [-i] [-t] -- CMD…`: run a command in a sandbox with live output; its exit code
//! becomes sbx's.
//!
//! Without `-t` the command is a managed process of the runtime: its stdout and stderr arrive as they
//! are written (binary frames, byte for byte) and go to our stdout and stderr; `-i` forwards our stdin;
//! Ctrl-C sends it SIGINT (a second Ctrl-C kills it). With `-t` it runs on a PTY (see `shell`).
//!
//! Nothing is lost on the way: the runtime holds the command's output until we follow it, and while
//! we do, a command that writes faster than we read waits for us. Should output be dropped anyway
//! (the runtime says so explicitly), we print a warning and exit with [`EXIT_OUTPUT_LOST`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use futures::StreamExt;
use sbx_agent::api::process::{CreateProcessRequest, LogDropped, LogStream};
use sbx_agent::client::{Client, FollowOptions, LogEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::Ctx;
use crate::output::Exit;

/// The exit code of `sbx exec` when part of the command's output was lost (a warning on stderr says
/// how much, and the command's own exit code).
pub const EXIT_OUTPUT_LOST: u8 = Exit::DataLost.code();

/// How long the runtime holds a new command's output for us before we follow it.
const HOLD_OUTPUT: Duration = Duration::from_secs(60);

/// Test hook: start the command without the hold and wait this many milliseconds before following
/// it, so that output can be dropped (the only way to see the lost-output path on purpose).
pub const ENV_TEST_UNHELD_FOLLOW_DELAY: &str = "SBX_TEST_EXEC_UNHELD_FOLLOW_DELAY_MS";

/// `sbx exec` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx exec dev -- ls -la\n  sbx exec dev --cwd /tmp --env DEBUG=1 -- sh -c 'echo $DEBUG'\n  echo hello | sbx exec dev -i -- cat\n  sbx exec dev -t -- top")]
pub struct ExecArgs {
    /// The sandbox.
    pub name: String,
    /// Working directory inside the sandbox.
    #[arg(long)]
    pub cwd: Option<String>,
    /// An environment variable (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Forward stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run on a terminal (PTY).
    #[arg(short, long)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The exit code for a process that exited with `code` or died of `signal` (shell convention 128+n).
pub fn exit_for(code: Option<i32>, signal: Option<&str>) -> Exit {
    match (code, signal) {
        (Some(c), _) => Exit::Code((c & 0xff) as u8),
        (None, Some(sig)) => Exit::Code(128u8.saturating_add(signal_number(sig))),
        (None, None) => Exit::Failure,
    }
}

fn signal_number(sig: &str) -> u8 {
    let name = sig.trim_start_matches("SIG");
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        other => other.parse().unwrap_or(1),
    }
}

pub(crate) fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(crate::output::usage(format!("bad --env `{p}`: expected KEY=VALUE"))),
        })
        .collect()
}

/// Runs `sbx exec`.
pub async fn run(ctx: &Ctx, a: ExecArgs) -> Result<Exit> {
    let env = parse_env(&a.env)?;
    let rec = ctx.record(&a.name)?;
    let client = ctx.client(&rec).await?;
    if a.tty {
        let opts = sbx_agent::client::PtyOptions {
            command: Some(a.command[0].clone()),
            args: a.command[1..].to_vec(),
            cwd: a.cwd.clone(),
            env: env.into_iter().collect(),
            ..Default::default()
        };
        return super::shell::run_pty(&client, opts).await;
    }
    let unheld_delay = std::env::var(ENV_TEST_UNHELD_FOLLOW_DELAY).ok().and_then(|v| v.parse::<u64>().ok());
    let req = CreateProcessRequest {
        command: Some(a.command[0].clone()),
        args: a.command[1..].to_vec(),
        cwd: a.cwd.clone(),
        env,
        hold_output_ms: if unheld_delay.is_some() { None } else { Some(HOLD_OUTPUT.as_millis() as u64) },
        ..Default::default()
    };
    let proc = client.start_process(&req).await.with_context(|| format!("start `{}`", a.command[0]))?;
    let id = proc.id.clone();
    let stdin_task = if a.interactive {
        Some(tokio::spawn(forward_stdin(client.clone(), id.clone())))
    } else {
        // Nothing to send: close its stdin now so commands that read it (cat) do not wait forever.
        let c = client.clone();
        let pid = id.clone();
        Some(tokio::spawn(async move { c.close_input(&pid).await.map(|_| ()).map_err(anyhow::Error::from) }))
    };
    if let Some(ms) = unheld_delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let result = stream_output(&client, &id).await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    // Free its log in the runtime; nothing else will ask for it.
    let _ = client.remove_process(&id, true).await;
    result
}

async fn forward_stdin(client: Client, id: String) -> Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdin.read(&mut buf).await?;
        if n == 0 {
            client.close_input(&id).await?;
            return Ok(());
        }
        client.write_input(&id, &buf[..n], false).await?;
    }
}

async fn stream_output(client: &Client, id: &str) -> Result<Exit> {
    let mut follow = client.follow_logs(id, FollowOptions::default()).await?;
    // Async writers (a blocking pool underneath), so a slow reader of our stdout never stalls the
    // runtime; their waiting is what makes the command wait (backpressure end to end).
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut stdout_gone = false;
    let mut lost = LogDropped::default();
    let mut interrupts = 0u32;
    loop {
        tokio::select! {
            ev = follow.next() => match ev {
                Some(Ok(LogEvent::Log(entry))) => match entry.stream {
                    LogStream::Stdout if !stdout_gone => {
                        if let Err(e) = stdout.write_all(&entry.data).await {
                            if e.kind() != std::io::ErrorKind::BrokenPipe {
                                return Err(anyhow::Error::new(e).context("write to stdout"));
                            }
                            // Our reader is gone (`| head`): the command gets SIGPIPE, as it would locally.
                            stdout_gone = true;
                            let _ = client.signal_process(id, "PIPE").await;
                        }
                    }
                    LogStream::Stdout => {}
                    LogStream::Stderr => {
                        let _ = stderr.write_all(&entry.data).await;
                    }
                },
                Some(Ok(LogEvent::Dropped(gap))) => {
                    let _ = stdout.flush().await;
                    let _ = stderr.flush().await;
                    eprintln!(
                        "sbx: warning: {} bytes of stdout and {} bytes of stderr were lost here: the runtime's output \
                         buffer filled up before sbx followed the command",
                        gap.stdout_bytes, gap.stderr_bytes
                    );
                    lost.stdout_bytes += gap.stdout_bytes;
                    lost.stderr_bytes += gap.stderr_bytes;
                    lost.through_seq = gap.through_seq;
                }
                Some(Ok(LogEvent::Exit(info))) => {
                    let _ = stdout.flush().await;
                    let _ = stderr.flush().await;
                    let exit = exit_for(info.exit_code, info.signal.as_deref());
                    if lost.through_seq > 0 {
                        let how = match (info.exit_code, info.signal.as_deref()) {
                            (Some(c), _) => format!("exited with {c}"),
                            (None, Some(s)) => format!("was killed by SIG{s}"),
                            (None, None) => "ended".to_owned(),
                        };
                        eprintln!(
                            "sbx: the command {how}, but {} bytes of its output were lost; exiting with {EXIT_OUTPUT_LOST}",
                            lost.total_bytes()
                        );
                        return Ok(Exit::DataLost);
                    }
                    return Ok(exit);
                }
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the runtime closed the output stream before the command exited"),
            },
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                let sig = if interrupts == 1 { "INT" } else { "KILL" };
                let _ = client.signal_process(id, sig).await;
            }
        }
    }
}
