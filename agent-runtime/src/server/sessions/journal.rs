//! A session's event log: numbered, written to an append-only file first, then kept in memory and
//! announced to readers.
//!
//! Emitting is synchronous and cheap (number the event, serialize it, queue it); one writer task per
//! session drains the queue in batches, appends each batch to `events.jsonl` with one write, and only
//! then makes the events visible. So whatever a reader has seen is on disk: a runtime killed with
//! SIGKILL serves every event it ever acknowledged after a restart, and never serves one twice (the
//! sequence is the position in the file). A torn last line (killed mid-write) was never visible and is
//! cut off when the journal is opened again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::api::session::{Event, EventData, EventSource};

/// One recorded event: its sequence and its JSON line (without the newline).
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) json: Box<str>,
}

struct Queued {
    sequence: u64,
    json: String,
}

struct Numbering {
    next: u64,
    /// `None` once the writer has stopped (after `session.ended`, or a write error).
    tx: Option<mpsc::UnboundedSender<Queued>>,
}

/// The event log of one session.
pub(crate) struct Journal {
    session_id: String,
    path: PathBuf,
    numbering: Mutex<Numbering>,
    visible: Mutex<Vec<Arc<Stored>>>,
    /// Set while the events of an ended session are not held in memory (see [`Journal::open_with`]);
    /// held during a reload so concurrent readers wait for it instead of seeing nothing.
    unloaded: tokio::sync::Mutex<bool>,
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
    /// Opens (or creates) the journal in `dir`, loading what it holds and starting its writer.
    pub(crate) async fn open(session_id: &str, dir: &Path) -> std::io::Result<Arc<Self>> {
        Self::open_with(session_id, dir, false).await
    }

    /// Like [`Journal::open`]; with `lazy`, the events stay on disk until [`Journal::ensure_loaded`]
    /// (for sessions that had ended: nobody may ever read them again).
    pub(crate) async fn open_with(session_id: &str, dir: &Path, lazy: bool) -> std::io::Result<Arc<Self>> {
        let path = dir.join(EVENTS_FILE);
        let (loaded, count) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read(&path, &mut |_| {}, !lazy)).await.map_err(std::io::Error::other)??
        };
        let next = count + 1;
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (last, _) = watch::channel(next - 1);
        let journal = Arc::new(Self {
            session_id: session_id.to_owned(),
            path,
            numbering: Mutex::new(Numbering { next, tx: Some(tx) }),
            visible: Mutex::new(loaded),
            unloaded: tokio::sync::Mutex::new(lazy),
            last,
        });
        tokio::spawn(write_loop(Arc::clone(&journal), file, rx));
        Ok(journal)
    }

    /// Records an event and returns its sequence. It becomes visible once it is on disk.
    pub(crate) fn emit(&self, source: EventSource, body: EventData, raw: Option<serde_json::Value>) -> u64 {
        let mut n = self.numbering.lock().unwrap_or_else(|e| e.into_inner());
        let sequence = n.next;
        let ended = matches!(body, EventData::SessionEnded(_));
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
        if tx.send(Queued { sequence, json }).is_err() {
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

    /// Visible events with a sequence above `after`, at most `limit`.
    pub(crate) fn after(&self, after: u64, limit: usize) -> Vec<Arc<Stored>> {
        let visible = self.visible.lock().unwrap_or_else(|e| e.into_inner());
        // Sequences are 1, 2, 3, …: the event with sequence s is at index s - 1.
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(visible.len());
        visible[start..].iter().take(limit).cloned().collect()
    }

    /// Every visible event, parsed (for recovery and tests).
    pub(crate) fn parsed(&self) -> Vec<Event> {
        self.after(0, usize::MAX).iter().filter_map(|s| serde_json::from_str(&s.json).ok()).collect()
    }

    /// Stops taking events (a session that had already ended before a restart): readers then see
    /// the journal as finished.
    pub(crate) fn close(&self) {
        self.numbering.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
    }

    /// Reads the events back from disk if they were unloaded; call before [`Journal::after`].
    pub(crate) async fn ensure_loaded(&self) -> std::io::Result<()> {
        let mut unloaded = self.unloaded.lock().await;
        if *unloaded {
            let path = self.path.clone();
            let events = tokio::task::spawn_blocking(move || load(&path)).await.map_err(std::io::Error::other)??;
            *self.visible.lock().unwrap_or_else(|e| e.into_inner()) = events;
            *unloaded = false;
        }
        Ok(())
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

/// The writer: drains whatever is queued, appends it with one write, then publishes it.
async fn write_loop(journal: Arc<Journal>, mut file: tokio::fs::File, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut batch: Vec<Queued> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        buf.clear();
        for q in &batch {
            buf.extend_from_slice(q.json.as_bytes());
            buf.push(b'\n');
        }
        // `write_all` + `flush` hand the bytes to the kernel: they survive the process being killed.
        if let Err(e) = async {
            file.write_all(&buf).await?;
            file.flush().await
        }
        .await
        {
            tracing::error!(session = %journal.session_id, path = %journal.path.display(), error = %e,
                "cannot append to the session journal; the session stops recording");
            journal.numbering.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
            break;
        }
        let last = batch.last().map(|q| q.sequence);
        {
            let mut visible = journal.visible.lock().unwrap_or_else(|e| e.into_inner());
            visible.extend(batch.drain(..).map(|q| Arc::new(Stored { sequence: q.sequence, json: q.json.into_boxed_str() })));
        }
        if let Some(last) = last {
            journal.last.send_replace(last);
        }
    }
    // Make the end durable too (a crash of the machine, not just the process).
    let _ = file.sync_all().await;
}

/// Reads a journal file: every complete line, numbered 1, 2, 3…; a torn or unparsable tail is cut off.
fn load(path: &Path) -> std::io::Result<Vec<Arc<Stored>>> {
    Ok(read(path, &mut |_| {}, true)?.0)
}

/// Visits every event of the journal file at `path` (parsed) without keeping them in memory, and
/// cuts a torn tail off as opening it would. Returns how many there are.
pub(crate) fn scan(path: &Path, visit: &mut dyn FnMut(Event)) -> std::io::Result<u64> {
    let mut each = |text: &str| {
        if let Ok(e) = serde_json::from_str::<Event>(text) {
            visit(e);
        }
    };
    Ok(read(path, &mut each, false)?.1)
}

/// Reads the complete, numbered lines of a journal file, handing each to `visit` and keeping them
/// when `keep`; a torn or unparsable tail (never acknowledged) is cut off the file.
fn read(path: &Path, visit: &mut dyn FnMut(&str), keep: bool) -> std::io::Result<(Vec<Arc<Stored>>, u64)> {
    use std::io::BufRead as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    // Line by line: a long journal is never in memory as a whole unless `keep` asks for it.
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut out = Vec::new();
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
        let sequence = match serde_json::from_str::<SequenceOnly>(text) {
            Ok(s) if s.sequence == count + 1 => s.sequence,
            _ => break,
        };
        visit(text);
        if keep {
            out.push(Arc::new(Stored { sequence, json: text.into() }));
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
    Ok((out, count))
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

    #[tokio::test]
    async fn events_are_numbered_written_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open("s1", dir.path()).await.unwrap();
        for n in 1..=5 {
            assert_eq!(j.emit(EventSource::Runtime, turn(n), None), u64::from(n));
        }
        j.flushed().await;
        assert_eq!(j.after(2, 2).iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![3, 4]);
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
        let all = j.parsed();
        assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        assert!(all[5].time.ends_with('Z'));
    }

    #[tokio::test]
    async fn a_lazily_opened_journal_reads_its_events_back_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open("s2", dir.path()).await.unwrap();
        for n in 1..=3 {
            j.emit(EventSource::Runtime, turn(n), None);
        }
        j.flushed().await;
        drop(j);
        let j = Journal::open_with("s2", dir.path(), true).await.unwrap();
        j.close();
        assert!(j.after(0, 10).is_empty(), "nothing held in memory");
        assert_eq!(j.last_sequence(), 3);
        assert!(j.finished());
        j.ensure_loaded().await.unwrap();
        assert_eq!(j.after(0, 10).iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
