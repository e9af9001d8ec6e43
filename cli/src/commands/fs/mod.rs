//! `sbx fs ls|stat|cat|put|get|rm|mkdir|mv` and `sbx cp`: files in a sandbox, through the runtime's
//! file API. Contents always stream; nothing is held in memory whole.

mod cp;
pub mod transfer;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use sbx_agent::api::fs::{Entry, EntryKind};

pub use cp::{run_cp, CpArgs};

use crate::context::Ctx;
use crate::output::{usage, Exit};

/// `sbx fs` subcommands.
#[derive(Args, Debug)]
#[command(
    subcommand_required = true,
    after_help = "Paths in the sandbox are absolute or relative to its root (the workspace on `local`).\n\nExamples:\n  sbx fs ls dev /workspace\n  sbx fs cat dev notes.txt | less\n  sbx fs put dev ./build.sh /workspace/build.sh\n  sbx fs get dev /workspace/out.log ./out.log\n  sbx fs mkdir dev -p /workspace/a/b\n  sbx fs mv dev old.txt new.txt\n  sbx fs rm dev -r /workspace/tmp\n\nWhole directory trees: `sbx cp`."
)]
pub struct FsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FsCommand,
}

/// One file operation.
#[derive(Subcommand, Debug)]
pub enum FsCommand {
    /// List a directory (default: the sandbox's root).
    #[command(after_help = "Examples:\n  sbx fs ls dev\n  sbx fs ls dev /etc --json | jq -r '.entries[].name'")]
    Ls {
        /// The sandbox.
        name: String,
        /// The directory (or a file, to show just it).
        #[arg(default_value = ".")]
        path: String,
    },
    /// Show one entry: type, size, mode, modification time (a symlink itself, not its target).
    #[command(after_help = "Examples:\n  sbx fs stat dev /workspace/main.rs\n  sbx fs stat dev main.rs --json")]
    Stat {
        /// The sandbox.
        name: String,
        /// The path.
        path: String,
    },
    /// Print a file on stdout (streamed).
    #[command(after_help = "Examples:\n  sbx fs cat dev /etc/os-release\n  sbx fs cat dev big.log | tail")]
    Cat {
        /// The sandbox.
        name: String,
        /// The file.
        path: String,
    },
    /// Upload a file (`-` reads stdin); the remote file is replaced atomically.
    #[command(after_help = "Examples:\n  sbx fs put dev ./script.sh /workspace/script.sh\n  sbx fs put dev ./data.bin /workspace/   # keeps the name\n  echo hi | sbx fs put dev - greeting.txt")]
    Put {
        /// The sandbox.
        name: String,
        /// The local file, or `-` for stdin.
        local: PathBuf,
        /// Where to put it (a directory or a path ending in `/` keeps the local name).
        remote: String,
        /// Create missing parent directories.
        #[arg(short, long)]
        parents: bool,
    },
    /// Download a file (`-` writes stdout); the local file appears only when complete.
    #[command(after_help = "Examples:\n  sbx fs get dev /workspace/out.log ./out.log\n  sbx fs get dev /workspace/out.log        # into the current directory\n  sbx fs get dev /workspace/out.log - | grep error")]
    Get {
        /// The sandbox.
        name: String,
        /// The remote file.
        remote: String,
        /// Where to write it (default: its name in the current directory; a directory keeps the name).
        local: Option<PathBuf>,
    },
    /// Delete files or directories.
    #[command(after_help = "Examples:\n  sbx fs rm dev old.txt\n  sbx fs rm dev -r /workspace/build")]
    Rm {
        /// The sandbox.
        name: String,
        /// What to delete.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Delete directories and everything in them.
        #[arg(short, long)]
        recursive: bool,
        /// A path that does not exist is not an error.
        #[arg(short, long)]
        force: bool,
    },
    /// Create a directory.
    #[command(after_help = "Examples:\n  sbx fs mkdir dev /workspace/out\n  sbx fs mkdir dev -p /workspace/a/b/c")]
    Mkdir {
        /// The sandbox.
        name: String,
        /// The directory.
        path: String,
        /// Create missing parents too; an existing directory is fine.
        #[arg(short, long)]
        parents: bool,
    },
    /// Rename or move a file or directory.
    #[command(after_help = "Examples:\n  sbx fs mv dev draft.md final.md\n  sbx fs mv dev -f new.conf app.conf   # replace app.conf")]
    Mv {
        /// The sandbox.
        name: String,
        /// What to move.
        from: String,
        /// Its new path, including the name.
        to: String,
        /// Replace an existing file (or empty directory) at the destination.
        #[arg(short, long)]
        force: bool,
    },
}

impl FsCommand {
    fn name(&self) -> &str {
        match self {
            Self::Ls { name, .. }
            | Self::Stat { name, .. }
            | Self::Cat { name, .. }
            | Self::Put { name, .. }
            | Self::Get { name, .. }
            | Self::Rm { name, .. }
            | Self::Mkdir { name, .. }
            | Self::Mv { name, .. } => name,
        }
    }
}

/// Runs `sbx fs`.
pub async fn run_fs(ctx: &Ctx, a: FsArgs) -> Result<Exit> {
    let rec = ctx.record(a.command.name())?;
    let client = ctx.client(&rec).await?;
    match a.command {
        FsCommand::Ls { path, .. } => {
            let list = match client.list(&path).await {
                Ok(l) => l,
                // `ls FILE` shows the file, as ls(1) does.
                Err(e) if e.status() == Some(409) => {
                    let entry = client.stat(&path).await?;
                    sbx_agent::api::fs::EntryList { path: entry.path.clone(), entries: vec![entry] }
                }
                Err(e) => return Err(e.into()),
            };
            if ctx.out.json {
                ctx.out.json_value(&serde_json::to_value(&list)?);
            } else {
                for e in &list.entries {
                    ctx.out.line(entry_line(e));
                }
            }
        }
        FsCommand::Stat { path, .. } => {
            let e = client.stat(&path).await?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::to_value(&e)?);
            } else {
                ctx.out.line(format!("path:      {}", e.path));
                ctx.out.line(format!("type:      {}", kind_word(e.kind)));
                ctx.out.line(format!("size:      {}", e.size));
                ctx.out.line(format!("mode:      {:04o}", e.mode));
                ctx.out.line(format!("modified:  {}", e.modified.map(time_text).unwrap_or_else(|| "-".into())));
                if let Some(t) = &e.symlink_target {
                    ctx.out.line(format!("target:    {t}"));
                }
            }
        }
        FsCommand::Cat { path, .. } => {
            transfer::to_stdout(client.read_stream(&path).await?).await?;
        }
        FsCommand::Put { local, remote, parents, .. } => {
            if local != Path::new("-") && std::fs::metadata(&local).is_ok_and(|m| m.is_dir()) {
                return Err(usage(format!("`{}` is a directory; copy trees with `sbx cp {} {}:{remote}`", local.display(), local.display(), rec.name)));
            }
            let keep_name = remote.ends_with('/')
                || matches!(transfer::remote_kind(&client, &remote).await?, Some((EntryKind::Dir, _)));
            let target = match (keep_name, local.file_name()) {
                (true, Some(n)) if local != Path::new("-") => transfer::remote_join(&remote, &n.to_string_lossy()),
                (true, _) => return Err(usage(format!("`{remote}` is a directory; give the file's path, e.g. {remote}/stdin.txt"))),
                (false, _) => remote,
            };
            let entry = transfer::upload_file(&client, &ctx.out, &local, &target, parents).await?;
            print_entry(ctx, &entry);
        }
        FsCommand::Get { remote, local, .. } => {
            let (kind, entry) = transfer::remote_kind(&client, &remote)
                .await?
                .ok_or_else(|| anyhow::anyhow!("`{}:{remote}` does not exist", rec.name))?;
            if kind == EntryKind::Dir {
                return Err(usage(format!("`{remote}` is a directory; copy trees with `sbx cp {}:{remote} DEST`", rec.name)));
            }
            let name = transfer::remote_basename(&remote).unwrap_or("file").to_owned();
            let target = match local {
                None => PathBuf::from(&name),
                Some(l) if l.is_dir() => l.join(&name),
                Some(l) => l,
            };
            let n = transfer::download_file(&client, &ctx.out, &remote, &target, &entry).await?;
            if ctx.out.json && target != Path::new("-") {
                ctx.out.json_value(&serde_json::json!({ "path": target, "bytes": n }));
            }
        }
        FsCommand::Rm { paths, recursive, force, .. } => {
            for p in &paths {
                match client.delete(p, recursive).await {
                    Ok(()) => {}
                    Err(e) if force && e.status() == Some(404) => {}
                    Err(e) if e.status() == Some(409) && !recursive && is_dir(&client, p).await => {
                        return Err(anyhow::Error::new(e).context(format!("cannot remove `{p}` (a non-empty directory needs -r)")));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        FsCommand::Mkdir { path, parents, .. } => {
            let entry = client.mkdir(&path, parents).await?;
            print_entry(ctx, &entry);
        }
        FsCommand::Mv { from, to, force, .. } => {
            let entry = client.move_entry(&from, &to, force).await?;
            print_entry(ctx, &entry);
        }
    }
    Ok(Exit::Success)
}

async fn is_dir(client: &sbx_agent::client::Client, path: &str) -> bool {
    client.stat(path).await.is_ok_and(|e| e.kind == EntryKind::Dir)
}

/// With `--json`, the entry an operation produced; nothing in human mode (like the Unix tools).
fn print_entry(ctx: &Ctx, e: &Entry) {
    if ctx.out.json {
        ctx.out.json_value(&serde_json::to_value(e).unwrap_or_default());
    }
}

fn kind_word(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::Other => "other",
    }
}

/// `drwxr-xr-x  4096 2024-05-01 12:00  name/` (a trailing `/` marks directories, `-> target` links).
fn entry_line(e: &Entry) -> String {
    let t = match e.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    };
    let mut perms = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let name = match (e.kind, &e.symlink_target) {
        (EntryKind::Dir, _) => format!("{}/", e.name),
        (EntryKind::Symlink, Some(t)) => format!("{} -> {t}", e.name),
        _ => e.name.clone(),
    };
    let when = e.modified.map(time_text).unwrap_or_else(|| "-".into());
    format!("{t}{perms} {:>10}  {when}  {name}", e.size)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
fn time_text(ms: u64) -> String {
    let t = crate::output::utc(ms / 1000);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use super::time_text;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time_text(0), "1970-01-01 00:00");
        assert_eq!(time_text(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(time_text(951_782_400_000), "2000-02-29 00:00");
    }
}
