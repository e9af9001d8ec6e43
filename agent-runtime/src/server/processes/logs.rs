//! A managed process's log: a byte-bounded ring of entries with one sequence over both streams, the
//! readers that fill it, and the server-sent-event stream that follows it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::manager::Managed;
use super::os::{complete_utf8_len, now_ms};
use crate::api::process::{LogEntry, LogStream, LogStreamFilter, EXIT_EVENT, LOG_EVENT};

/// Bytes an entry costs beyond its text (sequence, time, bookkeeping), so many tiny entries still count.
const ENTRY_OVERHEAD: usize = 48;
/// The largest entry; longer lines are split.
const MAX_ENTRY: usize = 64 * 1024;

/// The kept log of one process.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    limit: usize,
    next_seq: u64,
    /// The highest sequence number dropped to stay under the limit (0 = none).
    dropped_through: u64,
}

impl LogBuffer {
    /// An empty log keeping at most `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            next_seq: 1,
            dropped_through: 0,
        }
    }

    /// Appends one entry, dropping the oldest ones while over the limit (the newest is always kept).
    pub(crate) fn push(&mut self, stream: LogStream, data: String) {
        let entry = LogEntry { seq: self.next_seq, stream, data, time_ms: now_ms() };
        self.next_seq += 1;
        self.bytes += entry.data.len() + ENTRY_OVERHEAD;
        self.entries.push_back(entry);
        while self.bytes > self.limit && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.data.len() + ENTRY_OVERHEAD;
                self.dropped_through = old.seq;
            }
        }
    }

    /// Kept entries of `filter` with `seq > after`, the last `tail` of them when given.
    pub(crate) fn query(&self, filter: LogStreamFilter, after: u64, tail: Option<usize>) -> Vec<LogEntry> {
        // Entries are in sequence order: skip the old ones without scanning them.
        let start = self.entries.partition_point(|e| e.seq <= after);
        let matching = self.entries.range(start..).filter(|e| filter.accepts(e.stream));
        match tail {
            Some(n) => {
                let mut v: Vec<LogEntry> = matching.rev().take(n).cloned().collect();
                v.reverse();
                v
            }
            None => matching.cloned().collect(),
        }
    }

    /// Whether entries after `after` were dropped before they could be read.
    pub(crate) fn dropped_after(&self, after: u64) -> bool {
        self.dropped_through > after
    }
}

/// Splits `text` into entries: one per line (keeping the `\n`), the unterminated rest as one more, and
/// nothing longer than [`MAX_ENTRY`].
fn split_entries(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n').flat_map(|line| {
        let mut rest = line;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let mut cut = rest.len().min(MAX_ENTRY);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = rest.split_at(cut);
            rest = tail;
            Some(head)
        })
    })
}

/// Reads one output pipe of `proc` into its log until end of file.
pub(crate) async fn pump<R: AsyncRead + Unpin>(mut pipe: R, stream: LogStream, proc: Arc<Managed>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let ready = complete_utf8_len(&pending);
        if ready == 0 {
            continue;
        }
        let text = String::from_utf8_lossy(&pending[..ready]).into_owned();
        pending.drain(..ready);
        proc.append(stream, split_entries(&text));
    }
    if !pending.is_empty() {
        let text = String::from_utf8_lossy(&pending).into_owned();
        proc.append(stream, split_entries(&text));
    }
}

/// The SSE response following `proc`'s log from `after`: kept entries, live ones, then `exit`.
pub(crate) fn follow(proc: Arc<Managed>, filter: LogStreamFilter, after: u64, tail: Option<usize>) -> Response {
    Sse::new(follow_stream(proc, filter, after, tail)).keep_alive(KeepAlive::default()).into_response()
}

struct Follow {
    proc: Arc<Managed>,
    rx: tokio::sync::watch::Receiver<()>,
    filter: LogStreamFilter,
    after: u64,
    tail: Option<usize>,
    queue: VecDeque<Event>,
    finished: bool,
}

fn follow_stream(
    proc: Arc<Managed>,
    filter: LogStreamFilter,
    after: u64,
    tail: Option<usize>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before the first read, so nothing appended in between is missed.
    let rx = proc.subscribe();
    let state = Follow { proc, rx, filter, after, tail, queue: VecDeque::new(), finished: false };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.queue.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.finished {
                return None;
            }
            // Read the exit state before the log: once exited, the log is complete, so an empty read
            // after seeing "exited" really is the end.
            let exited = st.proc.exited_info();
            let entries = st.proc.log_query(st.filter, st.after, st.tail.take());
            if let Some(last) = entries.last() {
                st.after = last.seq;
            }
            for e in &entries {
                let data = serde_json::to_string(e).unwrap_or_default();
                st.queue.push_back(Event::default().event(LOG_EVENT).id(e.seq.to_string()).data(data));
            }
            if !entries.is_empty() {
                continue;
            }
            if let Some(info) = exited {
                let data = serde_json::to_string(&info).unwrap_or_default();
                st.queue.push_back(Event::default().event(EXIT_EVENT).data(data));
                st.finished = true;
                continue;
            }
            if st.rx.changed().await.is_err() {
                // The process record is gone (deleted): end the stream.
                st.finished = true;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_drops_oldest_and_queries() {
        let mut log = LogBuffer::new((ENTRY_OVERHEAD as u64 + 2) * 3);
        for i in 0..5 {
            log.push(if i % 2 == 0 { LogStream::Stdout } else { LogStream::Stderr }, format!("{i}\n"));
        }
        let all = log.query(LogStreamFilter::Combined, 0, None);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(log.dropped_after(0));
        assert!(!log.dropped_after(2));
        let out = log.query(LogStreamFilter::Stdout, 0, None);
        assert_eq!(out.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), vec!["2\n", "4\n"]);
        assert_eq!(log.query(LogStreamFilter::Combined, 3, Some(1))[0].seq, 5);
    }

    #[test]
    fn splits_lines() {
        let v: Vec<&str> = split_entries("a\nb\nc").collect();
        assert_eq!(v, vec!["a\n", "b\n", "c"]);
        let long = "x".repeat(MAX_ENTRY + 1);
        assert_eq!(split_entries(&long).count(), 2);
    }
}
