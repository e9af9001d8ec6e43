//! The client half of ACP: the agent's requests to us during a turn.
//!
//! - `session/request_permission` goes through the session's permission policy or a person
//!   (`permission.requested`), and is answered with the agent's option that the decision maps to:
//!   allow → `allow_once`, allow always → `allow_always`, deny → `reject_once` (or `reject_always`);
//!   a cancelled turn answers `cancelled`, as ACP asks.
//! - `fs/read_text_file` and `fs/write_text_file` work on UTF-8 text inside the session's working
//!   directory only (`..` and symlinks that lead out are refused).
//! - `terminal/*` run commands as managed processes of the runtime (they show in
//!   `GET /v1/processes`); a session only reaches its own terminals.
//! - Anything else gets "method not found", so the agent never waits.

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Future;
use serde_json::{json, Value};

use super::rpc::{self, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND};
use super::translate::Tool;
use crate::api::process::{CreateProcessRequest, LogStreamFilter};
use crate::api::session::PermissionDecision;
use crate::server::processes::ProcessManager;
use crate::server::sessions::driver::TurnCtx;

pub(super) type Answer<'a> = Pin<Box<dyn Future<Output = Value> + Send + 'a>>;

/// What answering needs besides the turn: where the session works, and its terminals.
#[derive(Clone)]
pub(super) struct Client {
    /// The session's working directory, resolved.
    pub(super) cwd: PathBuf,
    /// The session's environment (commands in terminals get it, as the agent's own tools would).
    pub(super) env: BTreeMap<String, String>,
    pub(super) processes: Option<Arc<ProcessManager>>,
    /// This session's terminals (process ids) and their `outputByteLimit`s.
    pub(super) terminals: Arc<Mutex<BTreeMap<String, Option<u64>>>>,
}

/// Answers one request of the agent (`tool`: what the translator knows of the call it is about).
pub(super) async fn answer(client: Client, req: Value, tool: Option<Tool>, ctx: &TurnCtx) -> Value {
    let method = req.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
    let p = req.get("params").cloned().unwrap_or(Value::Null);
    let out = match method.as_str() {
        "session/request_permission" => Ok(permission(&req, &p, tool, ctx).await),
        "fs/read_text_file" => client.read(&p).await,
        "fs/write_text_file" => client.write(&p).await,
        m if m.starts_with("terminal/") => client.terminal(m, &p, ctx).await,
        other => Err((METHOD_NOT_FOUND, format!("sbx-agent does not handle `{other}`"))),
    };
    match out {
        Ok(result) => rpc::result(&req, result),
        Err((code, message)) => rpc::error(&req, code, &message),
    }
}

type Reply = Result<Value, (i64, String)>;

fn bad(message: impl Into<String>) -> (i64, String) {
    (INVALID_PARAMS, message.into())
}

async fn permission(req: &Value, p: &Value, tool: Option<Tool>, ctx: &TurnCtx) -> Value {
    let call = p.get("toolCall").cloned().unwrap_or(Value::Null);
    let tool = tool.unwrap_or_default();
    let s = |k: &str| call.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = call.pointer("/_meta/tool_name").and_then(Value::as_str).map(str::to_owned).unwrap_or(tool.name.clone());
    let kind_str = s("kind").unwrap_or(tool.kind.clone());
    let title = s("title").filter(|t| !t.is_empty()).unwrap_or(if tool.title.is_empty() { name.clone() } else { tool.title.clone() });
    let name = if name.is_empty() { title.clone() } else { name };
    let input = call.get("rawInput").filter(|v| !v.is_null()).cloned().unwrap_or(tool.input.clone());
    let item = (!tool.item_id.is_empty()).then(|| tool.item_id.clone());
    let (decision, _message) = ctx.ask_permission(&name, Tool::permission_kind(&kind_str), title, input, item, Some(req.clone())).await;
    let options = p.get("options").and_then(Value::as_array).cloned().unwrap_or_default();
    match pick_option(&options, decision) {
        Some(id) if !ctx.cancel.is_cancelled() => json!({"outcome": {"outcome": "selected", "optionId": id}}),
        _ => json!({"outcome": {"outcome": "cancelled"}}),
    }
}

/// The agent's option for a decision: its own kinds first, then the other of the same sense.
pub(super) fn pick_option(options: &[Value], decision: PermissionDecision) -> Option<String> {
    let kinds: &[&str] = match decision {
        PermissionDecision::Allow => &["allow_once", "allow_always"],
        PermissionDecision::AllowAlways => &["allow_always", "allow_once"],
        PermissionDecision::Deny => &["reject_once", "reject_always"],
    };
    kinds.iter().find_map(|k| {
        options
            .iter()
            .find(|o| o.get("kind").and_then(Value::as_str) == Some(*k))
            .and_then(|o| o.get("optionId").and_then(Value::as_str))
            .map(str::to_owned)
    })
}

impl Client {
    /// `path` (absolute, or relative to the cwd) if it stays inside the cwd once `..` and symlinks
    /// are resolved; for a file that does not exist yet, its nearest existing ancestor is checked.
    pub(super) fn confine(&self, path: &str) -> Result<PathBuf, (i64, String)> {
        if path.is_empty() || path.contains('\0') {
            return Err(bad("`path` is empty or holds a NUL byte"));
        }
        let joined = self.cwd.join(path);
        let mut clean = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::ParentDir => {
                    clean.pop();
                }
                Component::CurDir => {}
                other => clean.push(other),
            }
        }
        let outside = || bad(format!("`{path}` is outside the session's working directory {}", self.cwd.display()));
        // The nearest existing ancestor, resolved, must be inside the cwd; so must the file itself.
        let mut probe = clean.clone();
        let mut rest = Vec::new();
        let real = loop {
            match std::fs::canonicalize(&probe) {
                Ok(r) => break r,
                Err(_) => match (probe.file_name().map(|n| n.to_os_string()), probe.parent()) {
                    (Some(name), Some(parent)) => {
                        rest.push(name);
                        probe = parent.to_path_buf();
                    }
                    _ => return Err(outside()),
                },
            }
        };
        if !real.starts_with(&self.cwd) {
            return Err(outside());
        }
        let mut full = real;
        for name in rest.into_iter().rev() {
            full.push(name);
        }
        Ok(full)
    }

    async fn read(&self, p: &Value) -> Reply {
        let path = self.confine(p.get("path").and_then(Value::as_str).unwrap_or_default())?;
        let bytes = tokio::fs::read(&path).await.map_err(|e| (INTERNAL_ERROR, format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(format!("{} is not UTF-8 text", path.display())))?;
        let line = p.get("line").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
        let limit = p.get("limit").and_then(Value::as_u64).map(|l| l as usize);
        let content = if line == 1 && limit.is_none() {
            text
        } else {
            let lines = text.split_inclusive('\n').skip(line - 1);
            match limit {
                Some(n) => lines.take(n).collect(),
                None => lines.collect(),
            }
        };
        Ok(json!({ "content": content }))
    }

    async fn write(&self, p: &Value) -> Reply {
        let path = self.confine(p.get("path").and_then(Value::as_str).unwrap_or_default())?;
        let content = p.get("content").and_then(Value::as_str).ok_or_else(|| bad("`content` (a string) is missing"))?;
        let io = |e: std::io::Error| (INTERNAL_ERROR, format!("cannot write {}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // Atomic: a reader sees the old file or the new one, never half of it.
        let tmp = path.with_file_name(format!(".{}.sbx-tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
        tokio::fs::write(&tmp, content.as_bytes()).await.map_err(io)?;
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            let _ = tokio::fs::set_permissions(&tmp, meta.permissions()).await;
        }
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(Value::Null)
    }

    fn own(&self, p: &Value) -> Result<String, (i64, String)> {
        let id = p.get("terminalId").and_then(Value::as_str).ok_or_else(|| bad("`terminalId` is missing"))?;
        if self.terminals.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(bad(format!("no terminal `{id}` in this session")))
        }
    }

    async fn terminal(&self, method: &str, p: &Value, ctx: &TurnCtx) -> Reply {
        let pm = self.processes.clone().ok_or_else(|| (METHOD_NOT_FOUND, "this runtime offers no terminals".to_owned()))?;
        let api = |e: crate::server::ApiError| (INTERNAL_ERROR, e.to_string());
        match method {
            "terminal/create" => {
                let command = p.get("command").and_then(Value::as_str).ok_or_else(|| bad("`command` is missing"))?;
                let args: Vec<String> = p
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let mut env = self.env.clone();
                for e in p.get("env").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                    if let (Some(k), Some(v)) = (e.get("name").and_then(Value::as_str), e.get("value").and_then(Value::as_str)) {
                        env.insert(k.to_owned(), v.to_owned());
                    }
                }
                let cwd = match p.get("cwd").and_then(Value::as_str) {
                    Some(c) => self.confine(c)?,
                    None => self.cwd.clone(),
                };
                let req = CreateProcessRequest {
                    command: Some(command.to_owned()),
                    args,
                    cwd: Some(cwd.to_string_lossy().into_owned()),
                    env,
                    ..CreateProcessRequest::default()
                };
                let info = pm.start(req).await.map_err(api)?;
                let limit = p.get("outputByteLimit").and_then(Value::as_u64);
                self.terminals.lock().unwrap_or_else(|e| e.into_inner()).insert(info.id.clone(), limit);
                Ok(json!({ "terminalId": info.id }))
            }
            "terminal/output" => {
                let id = self.own(p)?;
                let proc = pm.get(&id).map_err(api)?;
                let bytes: Vec<u8> = proc.log_query(LogStreamFilter::Combined, 0, None).iter().flat_map(|e| e.data.to_vec()).collect();
                let limit = self.terminals.lock().unwrap_or_else(|e| e.into_inner()).get(&id).copied().flatten();
                let (output, truncated) = tail_text(&bytes, limit);
                let mut out = json!({"output": output, "truncated": truncated});
                if let Some(info) = proc.exited_info() {
                    out["exitStatus"] = json!({"exitCode": info.exit_code, "signal": info.signal});
                }
                Ok(out)
            }
            "terminal/wait_for_exit" => {
                let id = self.own(p)?;
                let proc = pm.get(&id).map_err(api)?;
                loop {
                    if proc.wait_exit(Duration::from_millis(500)).await {
                        break;
                    }
                    if ctx.cancel.is_cancelled() {
                        return Err((INTERNAL_ERROR, "the turn was cancelled".into()));
                    }
                }
                let info = proc.exited_info().ok_or_else(|| (INTERNAL_ERROR, "the process exit was not recorded".to_owned()))?;
                Ok(json!({"exitCode": info.exit_code, "signal": info.signal}))
            }
            "terminal/kill" => {
                let id = self.own(p)?;
                let proc = pm.get(&id).map_err(api)?;
                if proc.is_running() {
                    let _ = proc.signal(nix::sys::signal::Signal::SIGKILL);
                }
                Ok(json!({}))
            }
            "terminal/release" => {
                let id = self.own(p)?;
                pm.remove(&id, true).await.map_err(api)?;
                self.terminals.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Ok(json!({}))
            }
            other => Err((METHOD_NOT_FOUND, format!("sbx-agent does not handle `{other}`"))),
        }
    }

    /// Kills and forgets every terminal of the session (it is ending).
    pub(super) async fn release_all(&self) {
        let Some(pm) = &self.processes else { return };
        let ids = std::mem::take(&mut *self.terminals.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids.into_keys() {
            let _ = pm.remove(&id, true).await;
        }
    }
}

/// The output as text (invalid UTF-8 replaced: ACP carries strings), cut from the front to at most
/// `limit` bytes on a character boundary.
pub(super) fn tail_text(bytes: &[u8], limit: Option<u64>) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match limit.map(|l| l as usize) {
        Some(l) if text.len() > l => {
            let mut cut = text.len() - l;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            (text[cut..].to_owned(), true)
        }
        _ => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn client(dir: &Path) -> Client {
        Client { cwd: std::fs::canonicalize(dir).unwrap(), env: BTreeMap::new(), processes: None, terminals: Arc::default() }
    }

    #[test]
    fn paths_stay_inside_the_working_directory() {
        let root = tempfile::tempdir().unwrap();
        let cwd = root.path().join("w");
        std::fs::create_dir_all(cwd.join("sub")).unwrap();
        std::os::unix::fs::symlink(root.path(), cwd.join("up")).unwrap();
        let c = client(&cwd);
        assert_eq!(c.confine("sub/new/a.txt").unwrap(), c.cwd.join("sub/new/a.txt"));
        assert_eq!(c.confine(&c.cwd.join("x").to_string_lossy()).unwrap(), c.cwd.join("x"));
        assert!(c.confine("../x").is_err());
        assert!(c.confine("sub/../../x").is_err());
        assert!(c.confine("up/x").is_err(), "a symlink out of the cwd");
        assert!(c.confine("/etc/passwd").is_err());
    }

    #[test]
    fn options_follow_the_decision() {
        let opts: Vec<Value> = serde_json::from_str(
            r#"[{"optionId":"a1","kind":"allow_once"},{"optionId":"aa","kind":"allow_always"},{"optionId":"ap","kind":"allow_always"},{"optionId":"r","kind":"reject_once"}]"#,
        )
        .unwrap();
        assert_eq!(pick_option(&opts, PermissionDecision::Allow).as_deref(), Some("a1"));
        assert_eq!(pick_option(&opts, PermissionDecision::AllowAlways).as_deref(), Some("aa"));
        assert_eq!(pick_option(&opts, PermissionDecision::Deny).as_deref(), Some("r"));
        assert_eq!(pick_option(&opts[..1], PermissionDecision::Deny), None);
    }

    #[test]
    fn terminal_output_is_cut_from_the_front_on_a_char_boundary() {
        assert_eq!(tail_text("héllo".as_bytes(), Some(4)), ("llo".into(), true));
        assert_eq!(tail_text(b"abc", None), ("abc".into(), false));
    }
}
