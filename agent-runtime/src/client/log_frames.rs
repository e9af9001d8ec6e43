//! An incremental reader of the binary form of a followed process log
//! ([`frame`](crate::api::process::frame)): feed it the body's bytes as they arrive, take frames out.

use bytes::{Buf, Bytes, BytesMut};

use super::{ClientError, Result};
use crate::api::process::{frame, LogDropped, LogEntry, LogStream, ProcessInfo};

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFrame {
    /// Output bytes.
    Entry(LogEntry),
    /// Output was lost here.
    Dropped(LogDropped),
    /// The process exited and its output is complete; nothing follows.
    Exit(ProcessInfo),
    /// A keep-alive, or a kind this client does not know (skipped).
    Other(u8),
}

/// Feed it bytes; take complete frames out.
#[derive(Debug, Default)]
pub struct LogFrameParser {
    buf: BytesMut,
}

impl LogFrameParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received that do not make a whole frame yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, if the bytes so far hold one; an error for a malformed frame.
    pub fn next_frame(&mut self) -> Result<Option<LogFrame>> {
        if self.buf.len() < frame::HEADER_LEN {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if self.buf.len() < frame::HEADER_LEN + len {
            // Make room for the rest in one go instead of growing step by step.
            self.buf.reserve(frame::HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(frame::HEADER_LEN);
        let mut payload = self.buf.split_to(len).freeze();
        let bad = |what: String| ClientError::Protocol(format!("bad log frame of kind {kind}: {what}"));
        Ok(Some(match kind {
            frame::STDOUT | frame::STDERR => {
                if payload.len() < frame::DATA_PREFIX_LEN {
                    return Err(bad(format!("{len} bytes is shorter than its header")));
                }
                let seq = payload.get_u64();
                let offset = payload.get_u64();
                let time_ms = payload.get_u64();
                let stream = if kind == frame::STDOUT { LogStream::Stdout } else { LogStream::Stderr };
                LogFrame::Entry(LogEntry { seq, stream, offset, data: payload, time_ms })
            }
            frame::DROPPED => LogFrame::Dropped(json(&payload).map_err(bad)?),
            frame::EXIT => LogFrame::Exit(json(&payload).map_err(bad)?),
            other => LogFrame::Other(other),
        }))
    }
}

fn json<T: serde::de::DeserializeOwned>(payload: &Bytes) -> std::result::Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&[frame::STDOUT, 0, 0, 0, 27]);
        wire.extend_from_slice(&7u64.to_be_bytes());
        wire.extend_from_slice(&100u64.to_be_bytes());
        wire.extend_from_slice(&5u64.to_be_bytes());
        wire.extend_from_slice(&[0xff, 0x00, b'\n']);
        wire.extend_from_slice(&[frame::KEEP_ALIVE, 0, 0, 0, 0]);
        let gap = br#"{"throughSeq":9,"stdoutBytes":3,"stderrBytes":0}"#;
        wire.push(frame::DROPPED);
        wire.extend_from_slice(&(gap.len() as u32).to_be_bytes());
        wire.extend_from_slice(gap);
        for cut in 0..wire.len() {
            let mut p = LogFrameParser::new();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                p.feed(part);
                while let Some(f) = p.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "cut at {cut}");
            let LogFrame::Entry(e) = &got[0] else { panic!("{got:?}") };
            assert_eq!((e.seq, e.offset, e.time_ms, e.stream, &e.data[..]), (7, 100, 5, LogStream::Stdout, &[0xff, 0, b'\n'][..]));
            assert_eq!(got[1], LogFrame::Other(frame::KEEP_ALIVE));
            assert_eq!(got[2], LogFrame::Dropped(LogDropped { through_seq: 9, stdout_bytes: 3, stderr_bytes: 0 }));
        }
    }
}
