//! A small incremental parser for server-sent events (the `text/event-stream` format), shared by the
//! client's followers (process logs, session events).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`"message"` when absent).
    pub event: String,
    /// The `id:` field, when the event had one.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feed it bytes as they arrive; take complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start: lines are consumed by moving this, not by shifting
    /// the buffer, which would cost a copy of the rest of a large chunk per line.
    pos: usize,
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the bytes so far hold one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let rest = &self.buf[self.pos..];
            let nl = rest.iter().position(|&b| b == b'\n')?;
            let mut line = &rest[..nl];
            self.pos += nl + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    return Some(SseEvent {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        id: self.id.take(),
                        data,
                    });
                }
                // An event without data is not dispatched (per the spec); forget its fields.
                self.event = None;
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment (keep-alive)
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "id" => self.id = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_events() {
        let mut p = SseParser::new();
        p.feed(b": keep-alive\n\nevent: log\nid: 3\nda");
        assert_eq!(p.next_event(), None);
        p.feed(b"ta: {\"a\":1}\r\ndata: x\n\ndata:plain\n\n");
        let e = p.next_event().unwrap();
        assert_eq!((e.event.as_str(), e.id.as_deref(), e.data.as_str()), ("log", Some("3"), "{\"a\":1}\nx"));
        let e = p.next_event().unwrap();
        assert_eq!((e.event.as_str(), e.id, e.data.as_str()), ("message", None, "plain"));
        assert_eq!(p.next_event(), None);
    }
}
