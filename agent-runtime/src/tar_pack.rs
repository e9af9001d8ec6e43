//! Packing a file or directory into a tar stream on a blocking thread, handed over chunk by chunk through
//! a bounded channel. Used by the runtime's `GET /v1/fs/download-batch` and by `sbx cp` uploads, so both
//! directions of a directory copy produce the same archive shape.

use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::Sender;

/// Size of the chunks handed to the body: large, so the far side can write in large calls.
const CHUNK: usize = crate::stream_io::CHUNK;

/// Packs `src` into the channel as tar bytes (blocking: call it on the blocking pool). An error is sent
/// down the channel too, so a body built from the channel fails (the reader sees a broken transfer)
/// instead of ending like a complete, shorter archive; it is also returned, so the caller can report
/// it. A closed channel (the reader went away) is `BrokenPipe`.
pub fn pack_to_channel(src: &Path, tx: Sender<io::Result<Bytes>>) -> io::Result<()> {
    let mut out = ChannelWriter { tx: tx.clone(), buf: BytesMut::with_capacity(CHUNK) };
    let result = pack(src, &mut out).and_then(|()| out.flush());
    if let Err(e) = &result {
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
    }
    result
}

/// Writes `src` as a tar archive: a directory's contents with names relative to it, or a single file
/// under its own name.
fn pack<W: Write>(src: &Path, out: W) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    if std::fs::metadata(src)?.is_dir() {
        append_tree(&mut builder, src)?;
    } else {
        let name = src.file_name().map_or_else(|| PathBuf::from("file"), PathBuf::from);
        builder.append_path_with_name(src, name)?;
    }
    builder.into_inner()?.flush()
}

/// Depth-first, names sorted, each directory before its contents (so unpacking can create them in
/// order). Only files, directories and symlinks; entries that vanish mid-walk are skipped.
fn append_tree<W: Write>(builder: &mut tar::Builder<W>, root: &Path) -> io::Result<()> {
    let mut stack = children(root, Path::new(""))?;
    stack.reverse();
    while let Some((abs, rel)) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        if ft.is_socket() || ft.is_fifo() || ft.is_block_device() || ft.is_char_device() {
            tracing::debug!(path = %abs.display(), "skipping special file in tar stream");
            continue;
        }
        match builder.append_path_with_name(&abs, &rel) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if ft.is_dir() {
            let mut kids = children(&abs, &rel)?;
            kids.reverse();
            stack.extend(kids);
        }
    }
    Ok(())
}

/// `(absolute, archive name)` of each entry of `dir`, sorted by name.
fn children(dir: &Path, rel: &Path) -> io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names.into_iter().map(|n| (dir.join(&n), rel.join(&n))).collect())
}

/// A `Write` that sends fixed-size chunks down a bounded channel, blocking when the client is slow
/// (that back-pressure is what keeps memory flat).
struct ChannelWriter {
    tx: Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader of the tar stream went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}
