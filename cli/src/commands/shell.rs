//! `sbx shell NAME`: an interactive terminal in the sandbox (raw mode, resize on SIGWINCH, the
//! terminal restored on exit however we leave).

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use sbx_agent::client::{Client, PtyEvent, PtyOptions};
use tokio::io::AsyncReadExt;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx shell` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx shell dev\n  sbx shell dev --cwd /workspace -- bash -l\n  echo 'make test' | sbx shell dev      # no terminal: the shell reads its commands from stdin\n  printf 'tty\\n' | sbx shell -t dev     # a terminal all the same (like ssh -t)")]
pub struct ShellArgs {
    /// The sandbox.
    pub name: String,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<String>,
    /// A terminal (PTY) even when stdin is not one. Without it, as with ssh, piped input goes to the
    /// shell as plain input (a shell that queries its terminal, like fish, would wait forever for
    /// an answer a pipe never gives).
    #[arg(short, long)]
    pub tty: bool,
    /// The program to run instead of the sandbox's shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Puts the terminal in raw mode and restores it when dropped (also on error and panic unwinding).
struct RawMode(bool);

impl RawMode {
    fn enable() -> Self {
        let on = std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok();
        Self(on)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// Runs `sbx shell`.
pub async fn run(ctx: &Ctx, a: ShellArgs) -> Result<Exit> {
    if !a.tty && !std::io::stdin().is_terminal() {
        // The sandbox's own shell ($SHELL there, as the PTY would start) reading our stdin.
        let command = if a.command.is_empty() {
            ["/bin/sh", "-c", "exec \"${SHELL:-/bin/sh}\""].map(str::to_owned).to_vec()
        } else {
            a.command
        };
        let exec = super::exec::ExecArgs { name: a.name, cwd: a.cwd, env: Vec::new(), interactive: true, tty: false, command };
        return super::exec::run(ctx, exec).await;
    }
    let rec = ctx.record(&a.name)?;
    let client = ctx.client(&rec).await?;
    let mut opts = PtyOptions { cwd: a.cwd, ..Default::default() };
    if let Some((cmd, args)) = a.command.split_first() {
        opts.command = Some(cmd.clone());
        opts.args = args.to_vec();
    }
    run_pty(&client, opts).await
}

/// Connects our terminal to a PTY in the sandbox until the program exits; returns its exit code.
pub async fn run_pty(client: &Client, mut opts: PtyOptions) -> Result<Exit> {
    if let Ok((cols, rows)) = crossterm::terminal::size() {
        opts.cols = cols;
        opts.rows = rows;
    }
    let session = client.pty(&opts).await?;
    let (mut writer, mut reader) = session.split();
    let _raw = RawMode::enable();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    loop {
        tokio::select! {
            ev = reader.next_event() => match ev {
                Some(Ok(PtyEvent::Output(bytes))) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
                Some(Ok(PtyEvent::Exit { exit_code, signal })) => {
                    return Ok(super::exec::exit_for(exit_code, signal.as_deref()));
                }
                Some(Ok(PtyEvent::Error(msg))) => tracing::warn!(%msg, "terminal control message refused"),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the terminal connection closed before the program exited"),
            },
            n = stdin.read(&mut buf), if stdin_open => {
                match n {
                    Ok(0) | Err(_) => {
                        // Our stdin ended (a pipe): send EOF (Ctrl-D) so the program sees end of input.
                        stdin_open = false;
                        writer.send_input(vec![4u8]).await?;
                    }
                    Ok(n) => writer.send_input(buf[..n].to_vec()).await?,
                }
            }
            _ = winch.recv() => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    writer.resize(cols, rows).await?;
                }
            }
        }
    }
}
