//! A managed process's kept log: a byte-bounded ring of entries with one sequence over both streams,
//! and the read positions (cursors) of the clients following it.
//!
//! The ring never loses output a follower has not read: when it is full, the oldest entry goes only
//! if every cursor is past it; otherwise [`LogBuffer::try_push`] refuses and the pipe reader waits
//! (backpressure: the process blocks on its full pipe). What nobody follows is dropped, counted, and
//! reported to whoever reads there later as a [`LogDropped`] marker.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::os::now_ms;
use crate::api::process::{LogDropped, LogEntry, LogStream, LogStreamFilter};

/// Bytes an entry costs beyond its data (sequence, time, bookkeeping), so many tiny entries still count.
pub(crate) const ENTRY_OVERHEAD: usize = 64;

/// How long a follower that went away keeps its place: a reconnect (`Last-Event-ID`) within this
/// time resumes without a gap.
pub(crate) const LINGER: Duration = Duration::from_secs(30);

fn idx(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

/// A reader's place: everything up to `seq` has been taken out of the ring.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    seq: u64,
    /// When a cursor whose client left stops holding output back; `None` while connected.
    expires: Option<Instant>,
}

/// Why a push must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// When the earliest cursor in the way expires (the reader should retry then at the latest).
    pub(crate) retry_at: Option<Instant>,
}

/// The kept log of one process.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    limit: usize,
    next_seq: u64,
    /// Bytes written to each stream so far (the next entry's offset).
    written: [u64; 2],
    /// The highest sequence number dropped (0 = none).
    dropped_through: u64,
    /// Bytes of each stream dropped (all entries up to `dropped_through`).
    dropped_bytes: [u64; 2],
    cursors: HashMap<u64, Cursor>,
    next_cursor: u64,
    /// The place held for a client that has not come yet (`holdOutputMs`), until the first one does.
    initial: Option<u64>,
}

impl LogBuffer {
    /// An empty log keeping at most `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            next_seq: 1,
            written: [0; 2],
            dropped_through: 0,
            dropped_bytes: [0; 2],
            cursors: HashMap::new(),
            next_cursor: 1,
            initial: None,
        }
    }

    /// Appends `data`, first dropping old entries no cursor still needs while over the limit. Refuses
    /// (and changes nothing) when that is not enough: the caller waits for a reader to move on.
    pub(crate) fn try_push(&mut self, stream: LogStream, data: &Bytes) -> Result<(), Full> {
        let cost = data.len() + ENTRY_OVERHEAD;
        let now = Instant::now();
        self.cursors.retain(|_, c| c.expires.is_none_or(|t| t > now));
        let hold = self.cursors.values().map(|c| c.seq).min();
        while self.bytes + cost > self.limit && !self.entries.is_empty() {
            let front = self.entries.front().map_or(0, |e| e.seq);
            if hold.is_some_and(|h| h < front) {
                let retry_at = self.cursors.values().filter(|c| c.seq < front).filter_map(|c| c.expires).min();
                return Err(Full { retry_at });
            }
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.data.len() + ENTRY_OVERHEAD;
                self.dropped_through = old.seq;
                self.dropped_bytes[idx(old.stream)] += old.data.len() as u64;
            }
        }
        let i = idx(stream);
        let entry = LogEntry { seq: self.next_seq, stream, offset: self.written[i], data: data.clone(), time_ms: now_ms() };
        self.next_seq += 1;
        self.written[i] += data.len() as u64;
        self.bytes += cost;
        self.entries.push_back(entry);
        Ok(())
    }

    /// Holds all output back until `until` or until the first reader attaches, whichever is first.
    pub(crate) fn hold_until(&mut self, until: Instant) {
        self.initial = Some(self.insert_cursor(Cursor { seq: 0, expires: Some(until) }));
    }

    /// Registers a reader at `after` (it has everything up to there), taking over from the initial
    /// hold; returns its id.
    pub(crate) fn attach(&mut self, after: u64) -> u64 {
        if let Some(initial) = self.initial.take() {
            self.cursors.remove(&initial);
        }
        self.insert_cursor(Cursor { seq: after, expires: None })
    }

    fn insert_cursor(&mut self, c: Cursor) -> u64 {
        let id = self.next_cursor;
        self.next_cursor += 1;
        self.cursors.insert(id, c);
        id
    }

    /// Lets a reader's place go after [`LINGER`] (its client went away and may come back).
    pub(crate) fn detach(&mut self, id: u64) {
        if let Some(c) = self.cursors.get_mut(&id) {
            c.expires = Some(Instant::now() + LINGER);
        }
    }

    /// Forgets a reader's place now.
    #[cfg(test)]
    pub(crate) fn remove_cursor(&mut self, id: u64) {
        self.cursors.remove(&id);
    }

    /// Forgets every place (the process record is going away: nothing may hold its pipes back).
    pub(crate) fn clear_cursors(&mut self) {
        self.cursors.clear();
    }

    /// Moves a reader on to `seq` (it never moves back), and marks it connected.
    pub(crate) fn advance(&mut self, id: u64, seq: u64) {
        if let Some(c) = self.cursors.get_mut(&id) {
            c.seq = c.seq.max(seq);
            c.expires = None;
        }
    }

    /// For a reader that has everything up to `after` and `next` bytes of each stream: the marker for
    /// output dropped after it, if any. `next` is `None` when the reader's offsets are not known
    /// (a fresh request resuming at a seq that is itself gone): the counts then run from the start.
    pub(crate) fn gap_after(&self, after: u64, next: Option<[u64; 2]>) -> Option<LogDropped> {
        if after >= self.dropped_through {
            return None;
        }
        let have = next.unwrap_or([0, 0]);
        Some(LogDropped {
            through_seq: self.dropped_through,
            stdout_bytes: self.dropped_bytes[0].saturating_sub(have[0]),
            stderr_bytes: self.dropped_bytes[1].saturating_sub(have[1]),
        })
    }

    /// Where each stream continues after seq `after`, when that is known: the offsets of the next kept
    /// entries (or what has been written, when no entry of that stream follows).
    pub(crate) fn offsets_after(&self, after: u64) -> Option<[u64; 2]> {
        if after == 0 {
            return Some([0, 0]);
        }
        if after < self.dropped_through {
            return None;
        }
        let start = self.entries.partition_point(|e| e.seq <= after);
        let mut next = [None, None];
        for e in self.entries.range(start..) {
            let slot = &mut next[idx(e.stream)];
            if slot.is_none() {
                *slot = Some(e.offset);
                if next.iter().all(Option::is_some) {
                    break;
                }
            }
        }
        Some([next[0].unwrap_or(self.written[0]), next[1].unwrap_or(self.written[1])])
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

    /// Up to about `max_bytes` of kept entries of `filter` after `after` (at least one when there is
    /// one), and the seq read through: past the last one returned, or past every entry looked at,
    /// including other streams' (so a one-stream reader never holds the other stream back). `next`
    /// (each stream's offset after the reader's place, when known) moves along.
    pub(crate) fn read(
        &self,
        filter: LogStreamFilter,
        after: u64,
        max_bytes: usize,
        next: &mut Option<[u64; 2]>,
    ) -> (Vec<LogEntry>, u64) {
        let start = self.entries.partition_point(|e| e.seq <= after);
        let mut out = Vec::new();
        let mut through = after;
        let mut size = 0;
        for e in self.entries.range(start..) {
            if filter.accepts(e.stream) {
                if size > 0 && size + e.data.len() > max_bytes {
                    break;
                }
                size += e.data.len();
                out.push(e.clone());
            }
            through = e.seq;
            if let Some(n) = next.as_mut() {
                n[idx(e.stream)] = e.offset + e.data.len() as u64;
            }
        }
        (out, through)
    }

    /// The seq of the newest entry (0 before any).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Bytes written to each stream so far.
    pub(crate) fn written(&self) -> [u64; 2] {
        self.written
    }

    /// Whether entries after `after` were dropped before they could be read, and how many bytes of
    /// each stream (see [`LogBuffer::gap_after`]).
    pub(crate) fn dropped_after(&self, after: u64) -> Option<LogDropped> {
        self.gap_after(after, self.offsets_after(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(log: &mut LogBuffer, s: &str) -> Result<(), Full> {
        log.try_push(LogStream::Stdout, &Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn drops_oldest_when_nobody_follows_and_counts_it() {
        let mut log = LogBuffer::new((ENTRY_OVERHEAD as u64 + 2) * 3);
        for i in 0..5 {
            let stream = if i % 2 == 0 { LogStream::Stdout } else { LogStream::Stderr };
            log.try_push(stream, &Bytes::from(format!("{i}\n"))).unwrap();
        }
        let all = log.query(LogStreamFilter::Combined, 0, None);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(log.dropped_after(0), Some(LogDropped { through_seq: 2, stdout_bytes: 2, stderr_bytes: 2 }));
        assert_eq!(log.dropped_after(2), None);
        let out = log.query(LogStreamFilter::Stdout, 0, None);
        assert_eq!(out.iter().map(|e| (e.data.as_ref(), e.offset)).collect::<Vec<_>>(), vec![(&b"2\n"[..], 2), (b"4\n", 4)]);
        assert_eq!(log.query(LogStreamFilter::Combined, 3, Some(1))[0].seq, 5);
    }

    #[test]
    fn a_cursor_holds_output_back_until_it_moves_on() {
        let mut log = LogBuffer::new((ENTRY_OVERHEAD as u64 + 2) * 2);
        log.hold_until(Instant::now() + Duration::from_secs(60));
        let id = log.attach(0);
        push(&mut log, "a\n").unwrap();
        push(&mut log, "b\n").unwrap();
        assert_eq!(push(&mut log, "c\n"), Err(Full { retry_at: None }), "only the reader holds, not the initial hold");
        let mut next = Some([0, 0]);
        let (got, through) = log.read(LogStreamFilter::Combined, 0, 1, &mut next);
        assert_eq!(next, Some([2, 0]));
        assert_eq!((got.len(), through), (1, 1), "one entry when it alone is over max_bytes");
        log.advance(id, through);
        push(&mut log, "c\n").unwrap();
        assert_eq!(log.dropped_after(1), None, "only what the reader had was dropped");
        log.detach(id);
        assert!(matches!(push(&mut log, "d\n"), Err(Full { retry_at: Some(_) })), "a left reader holds on");
        log.remove_cursor(id);
        push(&mut log, "d\n").unwrap();
        let gap = log.gap_after(1, Some([2, 0])).unwrap();
        assert_eq!((gap.through_seq, gap.stdout_bytes), (2, 2));
    }

    #[test]
    fn offsets_after_a_kept_seq() {
        let mut log = LogBuffer::new(1 << 20);
        push(&mut log, "abc").unwrap();
        log.try_push(LogStream::Stderr, &Bytes::from_static(b"e")).unwrap();
        push(&mut log, "de").unwrap();
        assert_eq!(log.offsets_after(1), Some([3, 0]));
        assert_eq!(log.offsets_after(2), Some([3, 1]));
        assert_eq!(log.offsets_after(3), Some([5, 1]));
    }
}
