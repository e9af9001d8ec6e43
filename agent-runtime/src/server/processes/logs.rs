//! Moving a managed process's output: the readers that fill its log from the pipes, and the streams
//! that follow the log to a client, as binary frames or server-sent events.
//!
//! Output is bytes from the pipe to the wire: nothing here decodes it as text.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::manager::Managed;
use crate::api::process::{
    frame, LogDropped, LogEntry, LogStream, LogStreamFilter, ProcessInfo, DROPPED_EVENT, EXIT_EVENT, LOG_EVENT,
};

/// The most one read of a pipe takes (and so the largest entry).
const READ_SIZE: usize = 64 * 1024;
/// Reads smaller than this are copied out, so a tiny entry never pins a whole read buffer in memory.
const COPY_BELOW: usize = 4 * 1024;
/// A read of at most this many lines is cut at its line ends (one entry per line for line-by-line
/// output); a bigger read stays one entry, so bulk output costs one entry per read, not per line.
const MAX_SPLIT_LINES: usize = 16;
/// After the process exits, how long to keep reading output its descendants still write (not
/// counting time spent waiting for a slow follower) before declaring it exited anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// About how many bytes of output one read of the log hands a follower.
const FOLLOW_BATCH: usize = 1024 * 1024;
/// A quiet followed log sends a keep-alive after this long, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Cuts a read into entries: at its line ends when it holds only a few lines, else whole.
fn split_lines(chunk: Bytes) -> Vec<Bytes> {
    let lines = chunk.iter().filter(|&&b| b == b'\n').take(MAX_SPLIT_LINES + 1).count();
    if lines <= 1 || lines > MAX_SPLIT_LINES {
        return vec![chunk];
    }
    let mut out = Vec::with_capacity(lines + 1);
    let mut start = 0;
    for (i, &b) in chunk.iter().enumerate() {
        if b == b'\n' {
            out.push(chunk.slice(start..=i));
            start = i + 1;
        }
    }
    if start < chunk.len() {
        out.push(chunk.slice(start..));
    }
    out
}

/// Reads one output pipe of `proc` into its log until end of file. When the log is full and a
/// follower has not read it yet, this waits, and so the process waits on its full pipe.
///
/// Once `exited` fires (the process is gone), reading stops after [`DRAIN_GRACE`] of reading time,
/// in case a descendant that outlives it keeps the pipe open.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    stream: LogStream,
    proc: Arc<Managed>,
    exited: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut exited_at: Option<tokio::time::Instant> = None;
    let mut held = Duration::ZERO;
    loop {
        if buf.capacity() - buf.len() < COPY_BELOW {
            buf.reserve(READ_SIZE);
        }
        let deadline = exited_at.map(|t| t + DRAIN_GRACE + held);
        // Far in the future when there is no deadline yet (the branch is disabled then anyway).
        let sleep_to = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        let n = tokio::select! {
            r = pipe.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = exited.cancelled(), if exited_at.is_none() => {
                exited_at = Some(tokio::time::Instant::now());
                continue;
            }
            _ = tokio::time::sleep_until(sleep_to), if deadline.is_some() => break,
        };
        let chunk = if n < COPY_BELOW {
            let c = Bytes::copy_from_slice(&buf[..n]);
            buf.clear();
            c
        } else {
            buf.split().freeze()
        };
        let waited = proc.append(stream, split_lines(chunk)).await;
        if exited_at.is_some() {
            held += waited;
        }
    }
}

/// What a follower hands on next.
enum Item {
    Entries(Vec<LogEntry>),
    Dropped(LogDropped),
    Exit(ProcessInfo),
    Quiet,
}

/// One client's read of a process's log, from `after` on; its place holds the process's output back
/// while it has not read it.
struct Follower {
    proc: Arc<Managed>,
    cursor: u64,
    rx: watch::Receiver<()>,
    filter: LogStreamFilter,
    after: u64,
    /// Each stream's offset after `after`, when known (for the byte counts of a gap).
    next: Option<[u64; 2]>,
    tail: Option<usize>,
    pending: Option<Vec<LogEntry>>,
    finished: bool,
}

impl Drop for Follower {
    fn drop(&mut self) {
        // Keep the place a little while: the client may reconnect with Last-Event-ID.
        self.proc.detach(self.cursor);
    }
}

impl Follower {
    fn new(proc: Arc<Managed>, filter: LogStreamFilter, after: u64, tail: Option<usize>) -> Self {
        // Subscribe before the first read, so nothing appended in between is missed.
        let rx = proc.subscribe();
        let cursor = proc.attach(after);
        Self { proc, cursor, rx, filter, after, next: None, tail, pending: None, finished: false }
    }

    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(entries) = self.pending.take() {
                return Some(Item::Entries(entries));
            }
            if self.finished {
                return None;
            }
            // Read the exit state before the log: the exit is recorded only after the pipes are
            // drained, so an empty read after seeing "exited" really is the end.
            let exited = self.proc.exited_info();
            let (gap, entries) = self.proc.read_log(
                self.cursor,
                self.filter,
                &mut self.after,
                &mut self.next,
                self.tail.take(),
                FOLLOW_BATCH,
            );
            if let Some(gap) = gap {
                if !entries.is_empty() {
                    self.pending = Some(entries);
                }
                return Some(Item::Dropped(gap));
            }
            if !entries.is_empty() {
                return Some(Item::Entries(entries));
            }
            if let Some(info) = exited {
                self.finished = true;
                return Some(Item::Exit(info));
            }
            match tokio::time::timeout(KEEP_ALIVE, self.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => return Some(Item::Quiet),
            }
        }
    }
}

/// The follow response in the form the client asked for.
pub(crate) fn follow(
    proc: Arc<Managed>,
    filter: LogStreamFilter,
    after: u64,
    tail: Option<usize>,
    frames: bool,
) -> Response {
    let follower = Follower::new(proc, filter, after, tail);
    if frames {
        let body = Body::from_stream(futures::stream::unfold(follower, |mut f| async move {
            let item = f.next().await?;
            Some((Ok::<_, Infallible>(encode_frames(item)), f))
        }));
        ([(header::CONTENT_TYPE, frame::MEDIA_TYPE), (header::CACHE_CONTROL, "no-cache")], body).into_response()
    } else {
        Sse::new(sse_stream(follower)).into_response()
    }
}

fn put_header(buf: &mut BytesMut, kind: u8, len: usize) {
    buf.put_u8(kind);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_json(buf: &mut BytesMut, kind: u8, value: &impl serde::Serialize) {
    let json = serde_json::to_vec(value).unwrap_or_default();
    put_header(buf, kind, json.len());
    buf.put_slice(&json);
}

/// One item as binary frames (see [`frame`]).
fn encode_frames(item: Item) -> Bytes {
    match item {
        Item::Entries(entries) => {
            let size: usize =
                entries.iter().map(|e| frame::HEADER_LEN + frame::DATA_PREFIX_LEN + e.data.len()).sum();
            let mut buf = BytesMut::with_capacity(size);
            for e in &entries {
                let kind = match e.stream {
                    LogStream::Stdout => frame::STDOUT,
                    LogStream::Stderr => frame::STDERR,
                };
                put_header(&mut buf, kind, frame::DATA_PREFIX_LEN + e.data.len());
                buf.put_u64(e.seq);
                buf.put_u64(e.offset);
                buf.put_u64(e.time_ms);
                buf.put_slice(&e.data);
            }
            buf.freeze()
        }
        Item::Dropped(gap) => {
            let mut buf = BytesMut::new();
            put_json(&mut buf, frame::DROPPED, &gap);
            buf.freeze()
        }
        Item::Exit(info) => {
            let mut buf = BytesMut::new();
            put_json(&mut buf, frame::EXIT, &info);
            buf.freeze()
        }
        Item::Quiet => {
            let mut buf = BytesMut::with_capacity(frame::HEADER_LEN);
            put_header(&mut buf, frame::KEEP_ALIVE, 0);
            buf.freeze()
        }
    }
}

/// The follower as server-sent events: one `log` event per entry (base64 data in JSON).
fn sse_stream(follower: Follower) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = (follower, std::collections::VecDeque::<Event>::new());
    futures::stream::unfold(state, |(mut f, mut queue)| async move {
        loop {
            if let Some(ev) = queue.pop_front() {
                return Some((Ok(ev), (f, queue)));
            }
            match f.next().await? {
                Item::Entries(entries) => {
                    for e in &entries {
                        let data = serde_json::to_string(e).unwrap_or_default();
                        queue.push_back(Event::default().event(LOG_EVENT).id(e.seq.to_string()).data(data));
                    }
                }
                Item::Dropped(gap) => {
                    let data = serde_json::to_string(&gap).unwrap_or_default();
                    queue.push_back(Event::default().event(DROPPED_EVENT).id(gap.through_seq.to_string()).data(data));
                }
                Item::Exit(info) => {
                    let data = serde_json::to_string(&info).unwrap_or_default();
                    queue.push_back(Event::default().event(EXIT_EVENT).data(data));
                }
                Item::Quiet => queue.push_back(Event::default().comment("keep-alive")),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_lines_are_split_many_are_not() {
        let v = split_lines(Bytes::from_static(b"a\nb\nc"));
        assert_eq!(v, vec![Bytes::from_static(b"a\n"), Bytes::from_static(b"b\n"), Bytes::from_static(b"c")]);
        assert_eq!(split_lines(Bytes::from_static(b"one line\n")).len(), 1);
        let many = Bytes::from("x\n".repeat(MAX_SPLIT_LINES + 1));
        assert_eq!(split_lines(many).len(), 1);
    }
}
