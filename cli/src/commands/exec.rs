//! `sbx exec NAME [-i] [-t] -- CMD…`: run a command in a sandbox with live output; its exit code
//! becomes sbx's.
//!
//! Without `-t` the command is a managed process of the runtime: its stdout and stderr arrive over SSE
//! as they are written and go to our stdout and stderr; `-i` forwards our stdin; Ctrl-C sends it SIGINT
//! (a second Ctrl-C kills it). With `-t` it runs on a PTY (see `shell`).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context as _, Result};
use clap::Args;
use futures::StreamExt;
use sbx_agent::api::process::{CreateProcessRequest, LogStream};
use sbx_agent::client::{Client, FollowOptions, LogEvent};
use tokio::io::AsyncReadExt;

use crate::context::Ctx;
use crate::output::Exit;

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

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
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
    let req = CreateProcessRequest {
        command: Some(a.command[0].clone()),
        args: a.command[1..].to_vec(),
        cwd: a.cwd.clone(),
        env,
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
    let mut interrupts = 0u32;
    loop {
        tokio::select! {
            ev = follow.next() => match ev {
                Some(Ok(LogEvent::Log(entry))) => {
                    let bytes = entry.data.as_bytes();
                    let _ = match entry.stream {
                        LogStream::Stdout => { let mut o = std::io::stdout().lock(); o.write_all(bytes).and_then(|_| o.flush()) }
                        LogStream::Stderr => { let mut e = std::io::stderr().lock(); e.write_all(bytes).and_then(|_| e.flush()) }
                    };
                }
                Some(Ok(LogEvent::Exit(info))) => return Ok(exit_for(info.exit_code, info.signal.as_deref())),
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
