//! A session's event log: numbered, written to an append-only file first, then announced to readers.
//!
//! Emitting is synchronous and cheap (number the event, serialize it, queue it); one writer task per
//! session drains the queue in batches, appends each batch to `events.jsonl` with one write, and only
//! then makes the events visible. So whatever a reader has seen is on disk: a runtime killed with
//! SIGKILL serves every event it ever acknowledged after a restart, and never serves one twice (the
//! sequence is the position in the file). A torn last line (killed mid-write) was never visible and is
//! cut off when the journal is opened again.
//!
//! Memory stays bounded however long a session runs: only the most recent events (at most
//! [`TAIL_EVENTS`] and [`TAIL_BYTES`]) are held, for the readers that follow the session live; older
//! ones are read back from the file, found through a sparse index (the byte offset of every
//! [`INDEX_STRIDE`]th event, 8 bytes per thousand events).
//!
//! Durability: every batch reaches the kernel before it becomes visible (it survives the runtime being
//! killed), and a batch holding a `turn.completed` or `session.ended` is also fsynced first (it survives
//! the machine losing power): a client that saw a turn end can rely on the whole turn being on disk.

use std::collections::VecDeque;
use std::io::{BufRead as _, Seek as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::api::session::{Event, EventData, EventSource};

/// At most this many recent events are kept in memory.
pub(crate) const TAIL_EVENTS: usize = 4096;
/// … and at most this many bytes of them.
pub(crate) const TAIL_BYTES: usize = 4 << 20;
/// The index holds the byte offset of event 1, 1 + stride, 1 + 2 × stride, …
pub(crate) const INDEX_STRIDE: u64 = 1024;

/// One recorded event: its sequence and its JSON line (without the newline).
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) json: Box<str>,
}

struct Queued {
    sequence: u64,
    json: String,
    /// Ends a turn or the session: fsync before it becomes visible.
    durable: bool,
}

struct Numbering {
    next: u64,
    /// `None` once the writer has stopped (after `session.ended`, or a write error).
    tx: Option<mpsc::UnboundedSender<Queued>>,
}

/// The recent events in memory, and where the older ones are in the file.
#[derive(Default)]
struct Window {
    tail: VecDeque<Arc<Stored>>,
    tail_bytes: usize,
    /// `index[k]` is the byte offset of event `k * INDEX_STRIDE + 1`.
    index: Vec<u64>,
}

impl Window {
    fn push(&mut self, stored: Arc<Stored>) {
        self.tail_bytes += stored.json.len();
        self.tail.push_back(stored);
        while self.tail.len() > TAIL_EVENTS || (self.tail_bytes > TAIL_BYTES && self.tail.len() > 1) {
            if let Some(old) = self.tail.pop_front() {
                self.tail_bytes -= old.json.len();
            }
        }
    }
}

/// The event log of one session.
pub(crate) struct Journal {
    session_id: String,
    path: PathBuf,
    numbering: Mutex<Numbering>,
    window: Mutex<Window>,
    /// The sequence of the last visible event.
    last: watch::Sender<u64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("session_id", &self.session_id).field("path", &self.path).finish()
    }
}

/// The file name of a session's events inside its directory.
pub(crate) const EVENTS_FILE: &str = "events.jsonl";

impl Journal {
    /// Opens (or creates) the journal in `dir`, indexing what it holds (without keeping it in memory)
    /// and starting its writer.
    pub(crate) async fn open(session_id: &str, dir: &Path) -> std::io::Result<Arc<Self>> {
        let path = dir.join(EVENTS_FILE);
        let scanned = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read(&path, &mut |_| {})).await.map_err(std::io::Error::other)??
        };
        let next = scanned.count + 1;
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (last, _) = watch::channel(scanned.count);
        let journal = Arc::new(Self {
            session_id: session_id.to_owned(),
            path,
            numbering: Mutex::new(Numbering { next, tx: Some(tx) }),
            window: Mutex::new(Window { index: scanned.index, ..Window::default() }),
            last,
        });
        tokio::spawn(write_loop(Arc::clone(&journal), file, scanned.len, rx));
        Ok(journal)
    }

    /// Records an event and returns its sequence. It becomes visible once it is on disk.
    pub(crate) fn emit(&self, source: EventSource, body: EventData, raw: Option<serde_json::Value>) -> u64 {
        let mut n = self.numbering.lock().unwrap_or_else(|e| e.into_inner());
        let sequence = n.next;
        let ended = matches!(body, EventData::SessionEnded(_));
        let durable = ended || matches!(body, EventData::TurnCompleted(_));
        let event = Event { session_id: self.session_id.clone(), sequence, time: now_rfc3339(), source, body, raw };
        let json = match serde_json::to_string(&event) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(session = %self.session_id, error = %e, "cannot serialize an event; dropped");
                return sequence.saturating_sub(1);
            }
        };
        let Some(tx) = n.tx.as_ref() else {
            tracing::warn!(session = %self.session_id, kind = event.body.type_name(), "event after the journal closed; dropped");
            return sequence.saturating_sub(1);
        };
        if tx.send(Queued { sequence, json, durable }).is_err() {
            n.tx = None;
            return sequence.saturating_sub(1);
        }
        n.next += 1;
        if ended {
            // Nothing comes after `session.ended`: closing the queue lets the writer finish.
            n.tx = None;
        }
        sequence
    }

    /// The sequence of the last visible event.
    pub(crate) fn last_sequence(&self) -> u64 {
        *self.last.borrow()
    }

    /// Visible events with a sequence above `after`, at most `limit`: from memory when they are
    /// recent, else read back from the file.
    pub(crate) async fn after(&self, after: u64, limit: usize) -> std::io::Result<Vec<Arc<Stored>>> {
        let last = self.last_sequence();
        if after >= last || limit == 0 {
            return Ok(Vec::new());
        }
        let (checkpoint, offset) = {
            let window = self.window.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(first) = window.tail.front().map(|s| s.sequence).filter(|first| *first <= after + 1) {
                // Sequences in the tail are consecutive: the event after `after` is at this index.
                let start = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
                return Ok(window.tail.iter().skip(start).take(limit).cloned().collect());
            }
            // The writer indexes an event before it becomes visible, so this entry exists.
            let k = after / INDEX_STRIDE;
            let offset = usize::try_from(k).ok().and_then(|k| window.index.get(k).copied());
            let Some(offset) = offset else {
                return Err(std::io::Error::other(format!("journal index has no entry for event {}", after + 1)));
            };
            (k * INDEX_STRIDE + 1, offset)
        };
        let upto = last.min(after.saturating_add(limit as u64));
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read_range(&path, offset, checkpoint, after + 1, upto)).await.map_err(std::io::Error::other)?
    }

    /// Stops taking events (a session that had already ended before a restart): readers then see
    /// the journal as finished.
    pub(crate) fn close(&self) {
        self.numbering.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
    }

    /// A receiver that changes whenever events become visible (and errs once the writer is gone).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    /// Whether the journal is closed and every event it took is visible: nothing more will come.
    pub(crate) fn finished(&self) -> bool {
        let n = self.numbering.lock().unwrap_or_else(|e| e.into_inner());
        n.tx.is_none() && *self.last.borrow() + 1 >= n.next
    }

    /// Waits until every emitted event is visible (used before answering "it ended").
    pub(crate) async fn flushed(&self) {
        let target = self.numbering.lock().unwrap_or_else(|e| e.into_inner()).next - 1;
        let mut rx = self.last.subscribe();
        let _ = rx.wait_for(|v| *v >= target).await;
    }
}

/// The writer: drains whatever is queued, appends it with one write (and fsyncs it when it ends a
/// turn), indexes it, then publishes it. `len` is the file's length when it was opened.
async fn write_loop(journal: Arc<Journal>, mut file: tokio::fs::File, mut len: u64, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut batch: Vec<Queued> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut offsets: Vec<u64> = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        buf.clear();
        offsets.clear();
        for q in &batch {
            if (q.sequence - 1) % INDEX_STRIDE == 0 {
                offsets.push(len + buf.len() as u64);
            }
            buf.extend_from_slice(q.json.as_bytes());
            buf.push(b'\n');
        }
        let durable = batch.iter().any(|q| q.durable);
        // `write_all` + `flush` hand the bytes to the kernel: they survive the process being killed;
        // `sync_data` at a turn's end makes them survive the machine going down too.
        if let Err(e) = async {
            file.write_all(&buf).await?;
            file.flush().await?;
            if durable {
                file.sync_data().await?;
            }
            std::io::Result::Ok(())
        }
        .await
        {
            tracing::error!(session = %journal.session_id, path = %journal.path.display(), error = %e,
                "cannot append to the session journal; the session stops recording");
            journal.numbering.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
            break;
        }
        len += buf.len() as u64;
        let last = batch.last().map(|q| q.sequence);
        {
            let mut window = journal.window.lock().unwrap_or_else(|e| e.into_inner());
            window.index.extend_from_slice(&offsets);
            for q in batch.drain(..) {
                window.push(Arc::new(Stored { sequence: q.sequence, json: q.json.into_boxed_str() }));
            }
        }
        if let Some(last) = last {
            journal.last.send_replace(last);
        }
    }
    // Make the end durable too (a crash of the machine, not just the process).
    let _ = file.sync_all().await;
}

/// Reads events `from..=upto` from the journal file, starting at byte `offset` where event `at` begins.
fn read_range(path: &Path, offset: u64, at: u64, from: u64, upto: u64) -> std::io::Result<Vec<Arc<Stored>>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut out = Vec::with_capacity(usize::try_from(upto.saturating_sub(from) + 1).unwrap_or(0).min(4096));
    let mut line = Vec::new();
    let mut sequence = at;
    while sequence <= upto {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.pop() != Some(b'\n') {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("journal ends before event {sequence}")));
        }
        if sequence >= from {
            let json = String::from_utf8(std::mem::take(&mut line)).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            out.push(Arc::new(Stored { sequence, json: json.into_boxed_str() }));
        }
        sequence += 1;
    }
    Ok(out)
}

/// Visits every event of the journal file at `path` (parsed) without keeping them in memory, and
/// cuts a torn tail off as opening it would. Returns how many there are.
pub(crate) fn scan(path: &Path, visit: &mut dyn FnMut(Event)) -> std::io::Result<u64> {
    let mut each = |text: &str| {
        if let Ok(e) = serde_json::from_str::<Event>(text) {
            visit(e);
        }
    };
    Ok(read(path, &mut each)?.count)
}

/// What a pass over a journal file found.
struct Scanned {
    /// Complete, numbered events.
    count: u64,
    /// The length of the file that holds them.
    len: u64,
    /// Offsets of events 1, 1 + stride, … (see [`Window::index`]).
    index: Vec<u64>,
}

/// Reads the complete, numbered lines of a journal file, handing each to `visit`; a torn or
/// unparsable tail (never acknowledged) is cut off the file. Line by line: never whole in memory.
fn read(path: &Path, visit: &mut dyn FnMut(&str)) -> std::io::Result<Scanned> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scanned { count: 0, len: 0, index: Vec::new() }),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut index = Vec::new();
    let mut count = 0u64;
    let mut good_len = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            break; // end of file, or a torn write: never acknowledged
        }
        let text = match std::str::from_utf8(&line[..line.len() - 1]) {
            Ok(t) => t,
            Err(_) => break,
        };
        match serde_json::from_str::<SequenceOnly>(text) {
            Ok(s) if s.sequence == count + 1 => {}
            _ => break,
        }
        visit(text);
        if count % INDEX_STRIDE == 0 {
            index.push(good_len);
        }
        count += 1;
        good_len += line.len() as u64;
    }
    if good_len < total {
        tracing::warn!(path = %path.display(), kept = count, cut_bytes = total - good_len,
            "session journal had a torn or bad tail; cut it off");
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(good_len)?;
    }
    Ok(Scanned { count, len: good_len, index })
}

#[derive(serde::Deserialize)]
struct SequenceOnly {
    sequence: u64,
}

/// Now as RFC 3339 UTC with milliseconds.
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let ms = now.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::session::{ErrorData, TurnStarted};

    fn turn(n: u32) -> EventData {
        EventData::TurnStarted(TurnStarted { turn_id: format!("turn_{n}") })
    }

    async fn sequences(j: &Journal, after: u64, limit: usize) -> Vec<u64> {
        j.after(after, limit).await.unwrap().iter().map(|s| s.sequence).collect()
    }

    #[tokio::test]
    async fn events_are_numbered_written_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open("s1", dir.path()).await.unwrap();
        for n in 1..=5 {
            assert_eq!(j.emit(EventSource::Runtime, turn(n), None), u64::from(n));
        }
        j.flushed().await;
        assert_eq!(sequences(&j, 2, 2).await, vec![3, 4]);
        drop(j);
        // A torn line at the end (as after SIGKILL mid-write) is cut off on reopen.
        let path = dir.path().join(EVENTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"sessionId\":\"s1\",\"seq");
        std::fs::write(&path, bytes).unwrap();
        let j = Journal::open("s1", dir.path()).await.unwrap();
        assert_eq!(j.last_sequence(), 5);
        let e = EventData::Error(ErrorData { message: "x".into(), code: "c".into(), status: None });
        assert_eq!(j.emit(EventSource::Runtime, e, None), 6);
        j.flushed().await;
        let all = j.after(0, usize::MAX).await.unwrap();
        assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        let parsed: Vec<Event> = all.iter().map(|s| serde_json::from_str(&s.json).unwrap()).collect();
        assert_eq!(parsed.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        assert!(parsed[5].time.ends_with('Z'));
    }

    #[tokio::test]
    async fn a_reopened_journal_serves_its_events_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open("s2", dir.path()).await.unwrap();
        for n in 1..=3 {
            j.emit(EventSource::Runtime, turn(n), None);
        }
        j.flushed().await;
        drop(j);
        let j = Journal::open("s2", dir.path()).await.unwrap();
        j.close();
        assert!(j.window.lock().unwrap().tail.is_empty(), "nothing held in memory");
        assert_eq!(j.last_sequence(), 3);
        assert!(j.finished());
        assert_eq!(sequences(&j, 0, 10).await, vec![1, 2, 3]);
        assert_eq!(sequences(&j, 1, 1).await, vec![2]);
        assert!(sequences(&j, 3, 10).await.is_empty());
    }

    #[tokio::test]
    async fn memory_stays_bounded_and_every_event_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open("s3", dir.path()).await.unwrap();
        let n = (TAIL_EVENTS as u32) * 3 + 17;
        for i in 1..=n {
            j.emit(EventSource::Runtime, turn(i), None);
        }
        j.flushed().await;
        {
            let w = j.window.lock().unwrap();
            assert_eq!(w.tail.len(), TAIL_EVENTS, "only the recent tail is in memory");
            assert_eq!(w.index.len() as u64, u64::from(n).div_ceil(INDEX_STRIDE));
        }
        // Old events come from the file, recent ones from memory, and a page may span both.
        let n = u64::from(n);
        let first_in_tail = n - TAIL_EVENTS as u64 + 1;
        for (after, limit) in [(0, 5), (1023, 3), (1024, 2), (first_in_tail - 3, 6), (n - 2, 10), (5000, 2000)] {
            let got = sequences(&j, after, limit).await;
            let want: Vec<u64> = (after + 1..=n).take(limit).collect();
            assert_eq!(got, want, "after {after}, limit {limit}");
        }
        // Every line read back is the event with that sequence.
        for s in j.after(2047, 3).await.unwrap() {
            let e: Event = serde_json::from_str(&s.json).unwrap();
            assert_eq!(e.sequence, s.sequence);
        }
        // Reopened: the index is rebuilt from the file and later events continue it.
        drop(j);
        let j = Journal::open("s3", dir.path()).await.unwrap();
        assert_eq!(j.window.lock().unwrap().index.len() as u64, n.div_ceil(INDEX_STRIDE));
        for _ in 0..INDEX_STRIDE {
            j.emit(EventSource::Runtime, turn(0), None);
        }
        j.flushed().await;
        let total = n + INDEX_STRIDE;
        let all = j.after(0, usize::MAX).await.unwrap();
        assert_eq!(all.len() as u64, total);
        assert!(all.iter().enumerate().all(|(i, s)| s.sequence == i as u64 + 1));
    }
}
