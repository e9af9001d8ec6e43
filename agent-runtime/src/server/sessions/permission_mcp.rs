//! `sbx-agent permission-mcp --socket PATH`: the MCP server Claude Code asks before it uses a tool
//! (`--permission-prompt-tool mcp__sbx__approve`).
//!
//! Claude Code starts this as a stdio MCP server (JSON-RPC 2.0, one object per line). Each
//! `tools/call` of `approve` is relayed as one JSON line to the session's Unix socket, where the
//! runtime turns it into `permission.requested` (or `question.requested`) and, once answered, writes
//! back one line: `{"behavior":"allow","updatedInput":…}` or `{"behavior":"deny","message":…}`, which
//! goes back to Claude Code as the tool's text result.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Value};

/// The MCP server's name in Claude Code's config, and its tool: `mcp__sbx__approve`.
pub(crate) const SERVER_NAME: &str = "sbx";
/// The tool's name.
pub(crate) const TOOL_NAME: &str = "approve";

/// Runs the stdio server until stdin closes.
pub fn run(socket: &Path) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(id) = msg.get("id").cloned() else { continue }; // a notification: nothing to answer
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
        let reply = match method {
            "initialize" => {
                let version = msg.pointer("/params/protocolVersion").cloned().unwrap_or(json!("2025-06-18"));
                json!({"protocolVersion": version, "capabilities": {"tools": {}},
                       "serverInfo": {"name": "sbx-agent-permissions", "version": crate::VERSION}})
            }
            "ping" => json!({}),
            "tools/list" => json!({"tools": [{
                "name": TOOL_NAME,
                "description": "Asks the sbx user whether a tool may run.",
                "inputSchema": {"type": "object", "properties": {
                    "tool_name": {"type": "string"}, "input": {"type": "object"}, "tool_use_id": {"type": "string"}},
                    "required": ["tool_name", "input"]}
            }]}),
            "tools/call" => {
                let args = msg.pointer("/params/arguments").cloned().unwrap_or(json!({}));
                let decision = ask(socket, &args).unwrap_or_else(|e| {
                    json!({"behavior": "deny", "message": format!("sbx could not ask for permission: {e}")})
                });
                json!({"content": [{"type": "text", "text": decision.to_string()}]})
            }
            _ => {
                let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("unknown method {method}")}});
                writeln!(stdout, "{err}")?;
                stdout.flush()?;
                continue;
            }
        };
        writeln!(stdout, "{}", json!({"jsonrpc": "2.0", "id": id, "result": reply}))?;
        stdout.flush()?;
    }
    Ok(())
}

/// Relays one request to the runtime and returns its decision.
fn ask(socket: &Path, args: &Value) -> std::io::Result<Value> {
    let mut stream = UnixStream::connect(socket)?;
    writeln!(stream, "{args}")?;
    stream.flush()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}
