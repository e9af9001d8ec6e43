//! `sbx logs NAME [-f] [-n N]`: the runtime's own log (what sbx-agent did: requests, restarts,
//! errors), not a command's output (`sbx exec` shows that live).

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::Args;
use futures::StreamExt;

use crate::context::Ctx;
use crate::output::Exit;

/// `sbx logs` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx logs dev\n  sbx logs dev -n 50          # the last 50 lines\n  sbx logs dev -f             # keep printing new lines (Ctrl-C stops)\n  sbx logs dev --json         # one {\"line\": …} object per line")]
pub struct LogsArgs {
    /// The sandbox.
    pub name: String,
    /// Keep printing lines as the runtime writes them.
    #[arg(short, long)]
    pub follow: bool,
    /// Start with the last N lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<u64>,
}

/// Runs `sbx logs`.
pub async fn run(ctx: &Ctx, a: LogsArgs) -> Result<Exit> {
    let rec = ctx.record(&a.name)?;
    let client = ctx.client(&rec).await?;
    let mut stream = client.runtime_log(a.follow, a.tail).await?;
    let mut sink = Sink { json: ctx.out.json, pending: Vec::new() };
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(chunk) => {
                    let chunk = chunk.context("the log stream broke (did the runtime stop? `sbx status` tells; `sbx logs` again restarts it)")?;
                    if !sink.write(&chunk)? {
                        return Ok(Exit::Success);
                    }
                }
                None => break,
            },
            // Following ends with Ctrl-C; that is the normal way out, not a failure.
            _ = tokio::signal::ctrl_c(), if a.follow => break,
        }
    }
    sink.finish()?;
    Ok(Exit::Success)
}

/// Raw bytes to stdout, or JSON Lines (`{"line": …}`) with `--json`.
struct Sink {
    json: bool,
    pending: Vec<u8>,
}

impl Sink {
    /// Writes a chunk; `false` when the reader went away (`| head`).
    fn write(&mut self, chunk: &[u8]) -> Result<bool> {
        let mut out = std::io::stdout().lock();
        let result = if self.json {
            self.pending.extend_from_slice(chunk);
            let mut written = Ok(());
            while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                written = json_line(&mut out, &line[..i]);
                if written.is_err() {
                    break;
                }
            }
            written.and_then(|()| out.flush())
        } else {
            out.write_all(chunk).and_then(|()| out.flush())
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a last line that had no newline.
    fn finish(&mut self) -> Result<()> {
        if self.json && !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            let mut out = std::io::stdout().lock();
            let _ = json_line(&mut out, &line);
        }
        Ok(())
    }
}

fn json_line(out: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(line);
    writeln!(out, "{}", serde_json::json!({ "line": text }))
}
