//! JSON-RPC 2.0 over an ACP agent's stdio: one JSON object per line. A reader task turns the agent's
//! stdout into [`Incoming`] messages; a line that is not a JSON-RPC message becomes
//! [`Incoming::Malformed`] (reported, never a hang), and the end of the output [`Incoming::Closed`].

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The longest line read from an agent; a longer one is dropped (and reported).
pub(super) const MAX_LINE: usize = 64 << 20;

/// What came from the agent.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A request to us (it has a method and an id).
    Request(Value),
    /// A notification (a method, no id).
    Notification(Value),
    /// An answer to one of our requests (our ids are numbers).
    Response { id: Option<u64>, result: Result<Value, Value>, raw: Value },
    /// A line that is no JSON-RPC message: what it was, for the report.
    Malformed(String),
    /// The agent closed its output (exited).
    Closed,
}

/// Classifies one line of the agent's output.
pub(super) fn parse(line: &[u8]) -> Option<Incoming> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    let msg: Value = match serde_json::from_slice(trimmed) {
        Ok(v) => v,
        Err(e) => return Some(Incoming::Malformed(format!("not JSON ({e}): {}", snippet(trimmed)))),
    };
    if !msg.is_object() {
        return Some(Incoming::Malformed(format!("not a JSON-RPC object: {}", snippet(trimmed))));
    }
    let method = msg.get("method").and_then(Value::as_str).is_some();
    let id = msg.get("id").filter(|i| !i.is_null());
    Some(match (method, id) {
        (true, Some(_)) => Incoming::Request(msg),
        (true, None) => Incoming::Notification(msg),
        (false, Some(id)) if msg.get("result").is_some() || msg.get("error").is_some() => {
            let result = match msg.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
            };
            Incoming::Response { id: id.as_u64(), result, raw: msg }
        }
        _ => Incoming::Malformed(format!("neither a request, a notification nor a response: {}", snippet(trimmed))),
    })
}

/// The first 200 characters of a line, for messages (bytes that are no UTF-8 shown as `\xNN`).
fn snippet(line: &[u8]) -> String {
    let cut = &line[..line.len().min(200)];
    let mut s = cut.escape_ascii().to_string();
    if line.len() > cut.len() {
        s.push('…');
    }
    s
}

/// Reads the agent's output until it closes, sending each message to `tx`; ends when nobody listens.
pub(super) fn spawn_reader<R: AsyncBufRead + Unpin + Send + 'static>(mut out: R, tx: mpsc::UnboundedSender<Incoming>) {
    tokio::spawn(async move {
        let mut line = Vec::new();
        loop {
            line.clear();
            let msg = match read_line(&mut out, &mut line).await {
                Ok(0) => Incoming::Closed,
                Ok(n) if n > MAX_LINE => Incoming::Malformed(format!("a line of {n} bytes (more than {MAX_LINE}); dropped")),
                Ok(_) => match parse(&line) {
                    Some(m) => m,
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "reading the ACP agent's output failed");
                    Incoming::Closed
                }
            };
            let closed = matches!(msg, Incoming::Closed);
            if tx.send(msg).is_err() || closed {
                return;
            }
        }
    });
}

/// Reads up to and including the next `\n` (or end of file), keeping at most [`MAX_LINE`] bytes of it
/// in `buf`; returns how many bytes the line had.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(total);
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() < MAX_LINE {
            let room = MAX_LINE - buf.len();
            buf.extend_from_slice(&chunk[..take.min(room)]);
        }
        total += take;
        r.consume(take);
        if done {
            return Ok(total);
        }
    }
}

/// Writes one message as a line.
pub(super) async fn write<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, msg: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}

pub(super) fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub(super) fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

pub(super) fn result(request: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request.get("id").cloned().unwrap_or(Value::Null), "result": result})
}

/// JSON-RPC error codes we answer with.
pub(super) const METHOD_NOT_FOUND: i64 = -32601;
pub(super) const INVALID_PARAMS: i64 = -32602;
pub(super) const INTERNAL_ERROR: i64 = -32603;

pub(super) fn error(request: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": request.get("id").cloned().unwrap_or(Value::Null),
           "error": {"code": code, "message": message}})
}

/// An agent's error object as one line for a person.
pub(super) fn error_text(err: &Value) -> String {
    let message = err.get("message").and_then(Value::as_str).unwrap_or("error");
    match err.get("data").filter(|d| !d.is_null()) {
        Some(Value::String(d)) => format!("{message}: {d}"),
        Some(d) => format!("{message}: {d}"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_classified_and_garbage_is_reported_with_its_bytes() {
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":3,"method":"fs/read_text_file","params":{}}"#), Some(Incoming::Request(_))));
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","method":"session/update","params":{}}"#), Some(Incoming::Notification(_))));
        match parse(br#"{"jsonrpc":"2.0","id":7,"result":{"stopReason":"end_turn"}}"#) {
            Some(Incoming::Response { id: Some(7), result: Ok(r), .. }) => assert_eq!(r["stopReason"], "end_turn"),
            other => panic!("{other:?}"),
        }
        match parse(br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"auth"}}"#) {
            Some(Incoming::Response { result: Err(e), .. }) => assert_eq!(error_text(&e), "auth"),
            other => panic!("{other:?}"),
        }
        assert!(parse(b"   \r\n").is_none());
        match parse(b"hello \xff world\n") {
            Some(Incoming::Malformed(m)) => assert!(m.contains("hello \\xff world"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(b"[1,2]"), Some(Incoming::Malformed(_))));
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":1}"#), Some(Incoming::Malformed(_))));
    }

    #[tokio::test]
    async fn the_reader_splits_lines_and_ends_with_closed() {
        let data: &[u8] = b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\nnot json\n{\"jsonrpc\":\"2.0\",\"method\":\"b\"}";
        let (tx, mut rx) = mpsc::unbounded_channel();
        spawn_reader(tokio::io::BufReader::new(data), tx);
        let mut kinds = Vec::new();
        while let Some(m) = rx.recv().await {
            kinds.push(match m {
                Incoming::Notification(v) => v["method"].as_str().unwrap().to_owned(),
                Incoming::Malformed(_) => "malformed".into(),
                Incoming::Closed => "closed".into(),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(kinds, ["a", "malformed", "b", "closed"]);
    }
}
