//! Moving file bytes between async byte streams (HTTP bodies) and blocking readers and writers, used
//! by the runtime's file API and by `sbx cp`, so both ends of a transfer behave the same:
//!
//! - the file-system side runs on the blocking pool, never on the async workers (a slow disk or a
//!   FUSE mount must not stall other requests);
//! - writes and reads are [`CHUNK`] bytes (1 MiB): on FUSE-backed container file systems each call is a
//!   round trip to the FUSE daemon, so small calls (`io::copy` uses 8 KiB) cost far more than the bytes;
//! - at most a few chunks are in flight (bounded channel, back-pressure), so memory stays flat whatever
//!   the size of the file.

use std::io::{self, Read, Seek, SeekFrom, Write};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// Size of the reads and writes on the file side.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued between a file reader and the body that sends them.
const DEPTH: usize = 4;

/// Why a copy from a stream to a writer stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The stream failed (for a request body: it broke off).
    #[error("reading the stream failed: {0}")]
    Read(#[source] io::Error),
    /// The writer failed (for a file: the disk).
    #[error("writing failed: {0}")]
    Write(#[source] io::Error),
}

/// Copies `stream` into `out` on the blocking pool in writes of [`CHUNK`] bytes (the last one
/// shorter); returns the writer and the byte count. Must be called within a Tokio runtime.
pub async fn stream_to_writer<S, B, E, W>(stream: S, mut out: W) -> Result<(W, u64), CopyError>
where
    S: Stream<Item = Result<B, E>> + Send + Unpin + 'static,
    B: Buf + Send + 'static,
    E: Into<io::Error> + 'static,
    W: Write + Send + 'static,
{
    // The bridge captures the runtime handle here and is read on the blocking side.
    let mut reader = SyncIoBridge::new(StreamReader::new(stream));
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = fill(&mut reader, &mut buf).map_err(CopyError::Read)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
            total += n as u64;
            if n < buf.len() {
                break;
            }
        }
        out.flush().map_err(CopyError::Write)?;
        Ok((out, total))
    })
    .await
    .map_err(|e| CopyError::Write(io::Error::other(format!("the copying task failed: {e}"))))?
}

/// Reads until `buf` is full or the reader ends; returns how many bytes it holds.
pub fn fill<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies everything from `reader` to `writer` in [`CHUNK`]-sized writes through `buf` (at least a
/// chunk long, reused across calls). Blocking.
pub fn copy_chunked<R: Read + ?Sized, W: Write + ?Sized>(reader: &mut R, writer: &mut W, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = fill(reader, buf)?;
        if n == 0 {
            return Ok(total);
        }
        writer.write_all(&buf[..n])?;
        total += n as u64;
        if n < buf.len() {
            return Ok(total);
        }
    }
}

/// Streams `len` bytes of `file` from offset `first`, read on the blocking pool in [`CHUNK`]s (each
/// read straight into the buffer that is sent: no copy in between). A file that turns out shorter
/// than `len` ends the stream with an error, never with a short but normal-looking end. Must be
/// called within a Tokio runtime.
pub fn file_stream(mut file: std::fs::File, first: u64, len: u64) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            if first > 0 {
                file.seek(SeekFrom::Start(first))?;
            }
            let mut left = len;
            while left > 0 {
                let want = left.min(CHUNK as u64) as usize;
                let mut chunk = BytesMut::zeroed(want);
                let n = fill(&mut file, &mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file got shorter while it was read"));
                }
                chunk.truncate(n);
                left -= n as u64;
                if tx.blocking_send(Ok(chunk.freeze())).is_err() {
                    // The receiver went away (the client disconnected): nothing left to do.
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use bytes::Bytes;
    use futures::StreamExt as _;

    use super::{copy_chunked, file_stream, stream_to_writer, CopyError, CHUNK};

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Counts the writes it gets, to check they are chunk-sized.
    struct Writes(Vec<usize>, Vec<u8>);
    impl std::io::Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.len());
            self.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn small_frames_become_chunk_sized_writes() {
        let all = data(3 * CHUNK + 5);
        let frames: Vec<Result<Bytes, std::io::Error>> = all.chunks(7000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let (w, n) = stream_to_writer(futures::stream::iter(frames), Writes(Vec::new(), Vec::new())).await.unwrap();
        assert_eq!(n as usize, all.len());
        assert_eq!(w.0, [CHUNK, CHUNK, CHUNK, 5]);
        assert!(w.1 == all);
    }

    #[tokio::test]
    async fn a_broken_stream_is_a_read_error() {
        let frames = vec![Ok(Bytes::from_static(b"abc")), Err(std::io::Error::other("gone"))];
        let err = stream_to_writer(futures::stream::iter(frames), Vec::new()).await.unwrap_err();
        assert!(matches!(err, CopyError::Read(_)), "{err:?}");
    }

    #[tokio::test]
    async fn file_ranges_stream_whole_and_fail_when_short() {
        let all = data(2 * CHUNK + 100);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&all).unwrap();
        let open = || std::fs::File::open(f.path()).unwrap();
        let got: Vec<Bytes> = file_stream(open(), 10, all.len() as u64 - 10).map(|c| c.unwrap()).collect().await;
        assert!(got.concat() == all[10..]);
        assert_eq!(got[0].len(), CHUNK);
        let last: Vec<std::io::Result<Bytes>> = file_stream(open(), 0, all.len() as u64 + 1).collect().await;
        assert!(last.last().unwrap().is_err(), "a short file must not end like a complete one");
        let mut out = Vec::new();
        let n = copy_chunked(&mut open(), &mut out, &mut vec![0; CHUNK]).unwrap();
        assert!(n as usize == all.len() && out == all);
    }
}
