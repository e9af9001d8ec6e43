//! Moving bytes between the host and a runtime without holding them in memory: files as streamed
//! request and response bodies, directories as tar streams packed and unpacked on the blocking pool.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use sbx_agent::api::fs::{Entry, EntryKind, UploadBatchResult};
use sbx_agent::client::{Client, WriteOptions};
use sbx_agent::stream_io::{self, CHUNK};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::output::Output;

/// Chunks in flight between the packer and the socket (back-pressure keeps memory flat).
const DEPTH: usize = 4;

/// A byte counter on a TTY (`total` when known), nothing otherwise.
pub fn progress(out: &Output, what: &str, total: Option<u64>) -> Option<ProgressBar> {
    if !out.fancy || out.quiet > 0 {
        return None;
    }
    let (pb, template) = match total {
        Some(t) => (ProgressBar::new(t), "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"),
        None => (ProgressBar::new_spinner(), "{spinner:.cyan} {msg} {bytes} {bytes_per_sec} {elapsed}"),
    };
    pb.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    pb.set_message(what.to_owned());
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(pb)
}

/// Finishes a bar (if any).
pub fn finish(bar: Option<ProgressBar>) {
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}

/// Counts the chunks of `stream` on `bar` as they pass.
fn counted<S, E>(stream: S, bar: Option<ProgressBar>) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    stream.inspect(move |chunk| {
        if let (Some(pb), Ok(c)) = (&bar, chunk) {
            pb.inc(c.len() as u64);
        }
    })
}

/// Joins a remote directory and a name.
pub fn remote_join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" if dir.starts_with('/') => format!("/{name}"),
        "" => name.to_owned(),
        d => format!("{d}/{name}"),
    }
}

/// The last component of a remote path, or `None` for `.`, `/`, `x/.` (meaning "its contents").
pub fn remote_basename(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

/// What a remote path is, following a final symlink; `None` when it does not exist.
pub async fn remote_kind(client: &Client, path: &str) -> Result<Option<(EntryKind, Entry)>> {
    match client.stat(path).await {
        Ok(mut e) if e.kind == EntryKind::Symlink => {
            // `stat` describes the link; listing follows it, which tells a link to a directory apart.
            let kind = if client.list(path).await.is_ok() { EntryKind::Dir } else { EntryKind::File };
            // The link's own size and mode say nothing about its target.
            e.mode = 0o644;
            e.size = 0;
            Ok(Some((kind, e)))
        }
        Ok(e) => Ok(Some((e.kind, e))),
        Err(err) if err.status() == Some(404) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Streams local file `local` (or stdin for `-`) to `remote`, keeping its permission bits.
pub async fn upload_file(client: &Client, out: &Output, local: &Path, remote: &str, parents: bool) -> Result<Entry> {
    let mut opts = WriteOptions { parents, ..WriteOptions::default() };
    if local == Path::new("-") {
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(tokio::io::stdin(), CHUNK));
        return Ok(client.write_stream(remote, body, opts).await?);
    }
    let path = local.to_path_buf();
    let (file, meta) = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        io::Result::Ok((file, meta))
    })
    .await?
    .with_context(|| format!("cannot read `{}`", local.display()))?;
    opts.mode = Some(meta.permissions().mode() & 0o7777);
    let bar = progress(out, &format!("uploading {}", local.display()), Some(meta.len()));
    // The size when we start is what we send: a file that shrinks meanwhile fails the upload.
    let body = reqwest::Body::wrap_stream(counted(stream_io::file_stream(file, 0, meta.len()), bar.clone()));
    let entry = client.write_stream(remote, body, opts).await;
    finish(bar);
    Ok(entry?)
}

/// Streams `remote` into local file `local` (or stdout for `-`). The file appears complete or not at
/// all: bytes go to a temp file next to it that is renamed when the transfer is done.
pub async fn download_file(client: &Client, out: &Output, remote: &str, local: &Path, entry: &Entry) -> Result<u64> {
    let stream = client.read_stream(remote).await?;
    if local == Path::new("-") {
        return to_stdout(stream).await;
    }
    let dir = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        anyhow::bail!("cannot write `{}`: `{}` is not a directory", local.display(), dir.display());
    }
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.sbx-part-{}", std::process::id()));
    let bar = progress(out, &format!("downloading {remote}"), (entry.size > 0).then_some(entry.size));
    let result = async {
        let file = tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot create `{}`", tmp.display()))?;
        let file = file.into_std().await;
        let stream = counted(stream, bar.clone()).map_err(io::Error::other);
        let (file, n) = stream_io::stream_to_writer(stream, file).await.map_err(|e| match e {
            stream_io::CopyError::Read(e) => anyhow::Error::new(e).context(format!("downloading `{remote}` broke off")),
            e => anyhow::Error::new(e).context(format!("cannot write `{}`", tmp.display())),
        })?;
        let mode = std::fs::Permissions::from_mode(entry.mode & 0o7777);
        tokio::task::spawn_blocking(move || file.set_permissions(mode)).await??;
        tokio::fs::rename(&tmp, local).await.with_context(|| format!("cannot write `{}`", local.display()))?;
        anyhow::Ok(n)
    }
    .await;
    finish(bar);
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// Copies a byte stream to stdout; a reader that goes away (`| head`) ends it quietly.
pub async fn to_stdout(stream: sbx_agent::client::ByteStream) -> Result<u64> {
    let mut stdout = tokio::io::stdout();
    let mut stream = stream;
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        match stdout.write_all(&chunk).await.and(stdout.flush().await) {
            Ok(()) => n += chunk.len() as u64,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(n),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Packs local directory `local` into a tar stream (on the blocking pool) that becomes the body of an
/// upload into remote directory `remote` (created if missing).
pub async fn upload_dir(client: &Client, out: &Output, local: &Path, remote: &str) -> Result<UploadBatchResult> {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    let root = local.to_path_buf();
    let packer = tokio::task::spawn_blocking(move || sbx_agent::tar_pack::pack_to_channel(&root, tx));
    let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let bar = progress(out, &format!("uploading {}", local.display()), None);
    let uploaded = client.upload_tar_stream(remote, reqwest::Body::wrap_stream(counted(chunks, bar.clone()))).await;
    finish(bar);
    let packed = packer.await.context("the tar packer failed")?;
    match (packed, uploaded) {
        // The packer's own failure explains a broken upload better than the socket does.
        (Err(e), _) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context(format!("cannot read `{}`", local.display())))
        }
        (_, r) => Ok(r?),
    }
}

/// Streams remote directory `remote` as tar into local directory `local` (created if missing),
/// unpacking on the blocking pool as the bytes arrive. Returns the bytes received.
pub async fn download_dir(client: &Client, out: &Output, remote: &str, local: &Path) -> Result<u64> {
    let stream = client.download_tar_stream(remote).await?;
    tokio::fs::create_dir_all(local).await.with_context(|| format!("cannot create `{}`", local.display()))?;
    let bar = progress(out, &format!("downloading {remote}"), None);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = received.clone();
    let stream = counted(stream, bar.clone()).inspect_ok(move |c| {
        count.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
    });
    // The bridge is made here (it captures the runtime handle) and read on the blocking side.
    let reader = io::BufReader::with_capacity(CHUNK, SyncIoBridge::new(StreamReader::new(stream.map_err(io::Error::other))));
    let dest = local.to_path_buf();
    let unpacked = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(reader);
        archive.set_overwrite(true);
        archive.unpack(&dest)
    })
    .await
    .context("the tar unpacker failed")?;
    finish(bar);
    unpacked.with_context(|| format!("cannot unpack into `{}`", local.display()))?;
    Ok(received.load(std::sync::atomic::Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::{remote_basename, remote_join};

    #[test]
    fn remote_paths() {
        assert_eq!(remote_join("/", "a"), "/a");
        assert_eq!(remote_join("/x/", "a"), "/x/a");
        assert_eq!(remote_join("x", "a"), "x/a");
        assert_eq!(remote_join("", "a"), "a");
        assert_eq!(remote_basename("/x/y/"), Some("y"));
        assert_eq!(remote_basename("y"), Some("y"));
        assert_eq!(remote_basename("/x/."), None);
        assert_eq!(remote_basename("/"), None);
        assert_eq!(remote_basename("."), None);
    }
}
