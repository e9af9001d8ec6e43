//! `sbx cp SRC DEST`: files and directory trees between the host and a sandbox, `NAME:/path` on the
//! sandbox side. Files stream as they are; directories go as a tar stream.
//!
//! Destination rules follow cp(1): copying onto an existing directory puts the source inside it under
//! its own name; otherwise the destination is the new name. A source ending in `/.` copies a
//! directory's contents rather than the directory.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use sbx_agent::api::fs::EntryKind;

use super::transfer;
use crate::context::Ctx;
use crate::output::{usage, Exit};

/// `sbx cp` flags.
#[derive(Args, Debug)]
#[command(after_help = "One side is a sandbox path, `NAME:PATH` (PATH absolute or relative to the sandbox's root); the other is a host path. Write a host path that contains a colon as ./path.\n\nExamples:\n  sbx cp ./src dev:/workspace/src          # a directory tree, host to sandbox\n  sbx cp dev:/workspace/out ./out          # and back\n  sbx cp build.tar.gz dev:/tmp/            # a file into a directory, keeping its name\n  sbx cp dev:/workspace/report.txt -       # to stdout\n  sbx cp ./dist/. dev:/srv/www             # the contents of dist, not dist itself")]
pub struct CpArgs {
    /// What to copy: a host path or NAME:PATH.
    pub src: String,
    /// Where to copy it: a host path (or `-` for stdout, files only) or NAME:PATH.
    pub dest: String,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Local(PathBuf),
    Remote { name: String, path: String },
}

/// `NAME:PATH` is a sandbox path when NAME looks like a sandbox name (no `/`); anything else is local.
fn parse_side(s: &str) -> Side {
    if let Some((name, path)) = s.split_once(':') {
        let plausible = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if plausible {
            let path = if path.is_empty() { "." } else { path };
            return Side::Remote { name: name.to_owned(), path: path.to_owned() };
        }
    }
    Side::Local(PathBuf::from(s))
}

/// Whether a local path names "the contents of" a directory (`dir/.`, `.`).
fn local_means_contents(p: &Path) -> bool {
    matches!(p.components().next_back(), Some(Component::CurDir)) || p.as_os_str().to_string_lossy().ends_with("/.")
}

/// Runs `sbx cp`.
pub async fn run_cp(ctx: &Ctx, a: CpArgs) -> Result<Exit> {
    match (parse_side(&a.src), parse_side(&a.dest)) {
        (Side::Local(_), Side::Local(_)) => Err(usage(format!(
            "both `{}` and `{}` are host paths; one side must be a sandbox path, NAME:PATH (e.g. dev:/workspace)",
            a.src, a.dest
        ))),
        (Side::Remote { .. }, Side::Remote { .. }) => Err(usage(format!(
            "both `{}` and `{}` are sandbox paths; sbx cp copies between the host and one sandbox (copy through a host directory)",
            a.src, a.dest
        ))),
        (Side::Local(src), Side::Remote { name, path }) => upload(ctx, &src, &name, &path).await,
        (Side::Remote { name, path }, Side::Local(dest)) => download(ctx, &name, &path, &dest).await,
    }
}

async fn upload(ctx: &Ctx, src: &Path, name: &str, dest: &str) -> Result<Exit> {
    let rec = ctx.record(name)?;
    let meta = match std::fs::metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!("`{}` does not exist", src.display()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read `{}`", src.display()))),
    };
    if !meta.is_dir() && !meta.is_file() {
        anyhow::bail!("`{}` is not a regular file or directory", src.display());
    }
    let client = ctx.client(&rec).await?;
    let dest_kind = transfer::remote_kind(&client, dest).await?.map(|(k, _)| k);
    let into_dir = dest_kind == Some(EntryKind::Dir);
    let shown = format!("{name}:{dest}");
    if meta.is_file() {
        let target = if into_dir || dest.ends_with('/') {
            let base = src.file_name().with_context(|| format!("`{}` has no file name", src.display()))?;
            transfer::remote_join(dest, &base.to_string_lossy())
        } else {
            dest.to_owned()
        };
        let entry = transfer::upload_file(&client, &ctx.out, src, &target, dest.ends_with('/')).await?;
        report(ctx, &format!("{}", src.display()), &format!("{name}:{}", entry.path), entry.size, None);
        return Ok(Exit::Success);
    }
    if dest_kind.is_some_and(|k| k != EntryKind::Dir) {
        anyhow::bail!("cannot copy directory `{}` onto `{shown}`: it exists and is not a directory", src.display());
    }
    let target = match (into_dir, local_means_contents(src)) {
        (true, false) => {
            let canon = std::fs::canonicalize(src).with_context(|| format!("cannot read `{}`", src.display()))?;
            match canon.file_name() {
                Some(base) => transfer::remote_join(dest, &base.to_string_lossy()),
                None => dest.to_owned(),
            }
        }
        _ => dest.to_owned(),
    };
    let done = transfer::upload_dir(&client, &ctx.out, src, &target).await?;
    report(ctx, &format!("{}", src.display()), &format!("{name}:{target}"), done.bytes, Some(done.entries));
    Ok(Exit::Success)
}

async fn download(ctx: &Ctx, name: &str, src: &str, dest: &Path) -> Result<Exit> {
    let rec = ctx.record(name)?;
    let client = ctx.client(&rec).await?;
    let shown = format!("{name}:{src}");
    let Some((kind, entry)) = transfer::remote_kind(&client, src).await? else {
        anyhow::bail!("`{shown}` does not exist");
    };
    let to_stdout = dest == Path::new("-");
    let dest_is_dir = !to_stdout && dest.is_dir();
    match kind {
        EntryKind::Dir => {
            if to_stdout {
                return Err(usage(format!("`{shown}` is a directory; give a host directory to copy it into")));
            }
            if dest.exists() && !dest_is_dir {
                anyhow::bail!("cannot copy directory `{shown}` onto `{}`: it exists and is not a directory", dest.display());
            }
            let target = match (dest_is_dir, transfer::remote_basename(src)) {
                (true, Some(base)) => dest.join(base),
                _ => dest.to_path_buf(),
            };
            let bytes = transfer::download_dir(&client, &ctx.out, src, &target).await?;
            report(ctx, &shown, &target.display().to_string(), bytes, None);
        }
        EntryKind::File => {
            let target = if dest_is_dir || dest.as_os_str().to_string_lossy().ends_with('/') {
                dest.join(transfer::remote_basename(src).unwrap_or("file"))
            } else {
                dest.to_path_buf()
            };
            let bytes = transfer::download_file(&client, &ctx.out, src, &target, &entry).await?;
            if !to_stdout {
                report(ctx, &shown, &target.display().to_string(), bytes, None);
            }
        }
        EntryKind::Symlink | EntryKind::Other => anyhow::bail!("`{shown}` is not a regular file or directory"),
    }
    Ok(Exit::Success)
}

/// `--json`: what was copied where; otherwise a short note on stderr.
fn report(ctx: &Ctx, from: &str, to: &str, bytes: u64, entries: Option<u64>) {
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({ "from": from, "to": to, "bytes": bytes, "entries": entries }));
    } else {
        ctx.out.note(format!("copied {from} -> {to} ({bytes} bytes)"));
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{local_means_contents, parse_side, Side};

    #[test]
    fn sides() {
        assert_eq!(parse_side("dev:/w"), Side::Remote { name: "dev".into(), path: "/w".into() });
        assert_eq!(parse_side("dev:"), Side::Remote { name: "dev".into(), path: ".".into() });
        assert_eq!(parse_side("./a:b"), Side::Local(PathBuf::from("./a:b")));
        assert_eq!(parse_side("/tmp/x"), Side::Local(PathBuf::from("/tmp/x")));
        assert_eq!(parse_side(":x"), Side::Local(PathBuf::from(":x")));
    }

    #[test]
    fn contents_form() {
        assert!(local_means_contents(Path::new("dist/.")));
        assert!(local_means_contents(Path::new(".")));
        assert!(!local_means_contents(Path::new("dist")));
        assert!(!local_means_contents(Path::new("dist/")));
    }
}
