//! The fake's task command router: each exec is a `docker exec -i` in the sandbox's container, its
//! output kept as bytes (replayed from any offset), its stdin fed by `TaskExecStdinWriteStream`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use sbx_providers::modal::proto::client::secret_source::Source;
use sbx_providers::modal::proto::task_command_router::{self as tcr, task_command_router_server::TaskCommandRouter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status, Streaming};

use super::{docker, Shared};

/// Where each exec's pid is kept inside the container (to kill it when its timeout runs out).
const PID_DIR: &str = "/tmp/.fake-modal";
/// The SDK's in-sandbox file helper, which does not exist outside Modal: played by `sh` here.
const FS_TOOLS: &str = "/__modal/.bin/modal-sandbox-fs-tools";
const READ_FILE: &str = r#"if [ -d "$1" ]; then printf '{"error_kind":"IsDirectory","message":"%s is a directory"}' "$1" >&2; exit 1; fi
if [ ! -e "$1" ]; then printf '{"error_kind":"NotFound","message":"%s: no such file"}' "$1" >&2; exit 1; fi
exec cat -- "$1""#;
const WRITE_FILE: &str = r#"if [ -d "$1" ]; then printf '{"error_kind":"IsDirectory","message":"%s is a directory"}' "$1" >&2; exit 1; fi
mkdir -p -- "$(dirname -- "$1")" && exec cat > "$1""#;

#[derive(Default)]
struct Out {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_done: bool,
    stderr_done: bool,
    exit: Option<i32>,
}

pub(crate) struct Exec {
    container: String,
    exec_id: String,
    out: Mutex<Out>,
    changed: tokio::sync::watch::Sender<u64>,
    stdin: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    written: AtomicU64,
    closed: AtomicBool,
}

impl Exec {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    async fn wait(&self, max: Duration) -> Option<i32> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + max;
        loop {
            if let Some(code) = self.out.lock().unwrap().exit {
                return Some(code);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return None;
            }
        }
    }
}

/// Reads `pipe` to its end into stdout (`err` false) or stderr.
async fn pump(exec: Arc<Exec>, err: bool, merge: bool, mut pipe: impl tokio::io::AsyncRead + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut out = exec.out.lock().unwrap();
            if err && !merge { out.stderr.extend_from_slice(&buf[..n]) } else { out.stdout.extend_from_slice(&buf[..n]) }
        }
        exec.bump();
    }
    let mut out = exec.out.lock().unwrap();
    if err {
        out.stderr_done = true;
    } else {
        out.stdout_done = true;
    }
    drop(out);
    exec.bump();
}

pub(crate) struct Router(pub(crate) Arc<Shared>);

impl Router {
    /// The exec `(task, exec_id)` of the sandbox the caller's JWT is for.
    fn exec(&self, sandbox: &str, task_id: &str, exec_id: &str) -> Result<Arc<Exec>, Status> {
        self.task(sandbox, task_id)?;
        self.0.execs.lock().unwrap().get(&(task_id.to_owned(), exec_id.to_owned())).cloned().ok_or_else(|| Status::not_found(format!("exec {exec_id} not found")))
    }

    /// The container of a running task; NOT_FOUND once the sandbox ended.
    fn task(&self, sandbox: &str, task_id: &str) -> Result<(String, Option<String>), Status> {
        let map = self.0.sandboxes.lock().unwrap();
        match map.get(sandbox) {
            Some(s) if s.task_id == task_id && s.result.is_none() => Ok((s.container.clone(), s.workdir.clone())),
            Some(s) if s.task_id == task_id => Err(Status::not_found(format!("Task {task_id} has finished; the sandbox is unavailable"))),
            _ => Err(Status::permission_denied(format!("this token is not for task {task_id}"))),
        }
    }
}

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl TaskCommandRouter for Router {
    async fn task_exec_start(&self, req: Request<tcr::TaskExecStartRequest>) -> Result<Response<tcr::TaskExecStartResponse>, Status> {
        let sandbox = self.0.router_gate("TaskExecStart", req.metadata())?;
        let r = req.into_inner();
        let (container, sb_workdir) = self.task(&sandbox, &r.task_id)?;
        let key = (r.task_id.clone(), r.exec_id.clone());
        if r.exec_id.is_empty() || r.command_args.is_empty() {
            return Err(Status::invalid_argument("exec_id and command_args are required"));
        }
        if self.0.execs.lock().unwrap().contains_key(&key) {
            // The exec id is the idempotency key: a repeated start starts nothing.
            return Ok(Response::new(tcr::TaskExecStartResponse {}));
        }
        let mut argv = r.command_args.clone();
        if argv[0] == FS_TOOLS {
            let spec: serde_json::Value = serde_json::from_str(argv.get(1).map(String::as_str).unwrap_or("")).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let (script, path) = match (spec.pointer("/ReadFile/path"), spec.pointer("/WriteFile/path")) {
                (Some(p), _) => (READ_FILE, p),
                (_, Some(p)) => (WRITE_FILE, p),
                _ => return Err(Status::unimplemented(format!("the fake's fs-tools does ReadFile and WriteFile only, not {spec}"))),
            };
            argv = vec!["sh".into(), "-c".into(), script.into(), "sh".into(), path.as_str().unwrap_or("").into()];
        }
        let mut env = BTreeMap::new();
        for s in &r.secret_sources {
            if let Some(Source::Env(m)) = &s.source {
                env.extend(m.contents.clone());
            }
        }
        env.extend(r.env.clone());
        let mut c = tokio::process::Command::new("docker");
        c.arg("exec").arg("-i");
        if let Some(w) = r.workdir.clone().filter(|w| !w.is_empty()).or(sb_workdir) {
            c.args(["-w", &w]);
        }
        for (k, v) in &env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        // The pid goes to a file first, so a timeout can reach the process in the container.
        let wrapper = format!("mkdir -p {PID_DIR} && echo $$ > {PID_DIR}/{} && exec \"$@\"", r.exec_id);
        c.args([&container, "sh", "-c", &wrapper, "sh"]).args(&argv);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().map_err(|e| Status::internal(format!("exec: {e}")))?;
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let exec = Arc::new(Exec {
            container: container.clone(),
            exec_id: r.exec_id.clone(),
            out: Mutex::default(),
            changed: tx,
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
            written: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        self.0.execs.lock().unwrap().insert(key, exec.clone());
        let merge = r.stderr_config == tcr::TaskExecStderrConfig::Stdout as i32;
        let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let limit = r.timeout_secs.filter(|t| *t > 0).map(|t| Duration::from_secs(u64::from(t)));
        tokio::spawn(async move {
            let pumps = futures::future::join(pump(exec.clone(), false, merge, stdout), pump(exec.clone(), true, merge, stderr));
            let both = async { futures::future::join(pumps, child.wait()).await.1 };
            tokio::pin!(both);
            let status = match limit {
                None => both.await,
                Some(limit) => match tokio::time::timeout(limit, &mut both).await {
                    Ok(s) => s,
                    Err(_) => {
                        let kill = format!("kill -9 \"$(cat {PID_DIR}/{})\"", exec.exec_id);
                        let _ = docker(&["exec", &exec.container, "sh", "-c", &kill]).await;
                        both.await
                    }
                },
            };
            use std::os::unix::process::ExitStatusExt;
            let code = match status {
                Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
                Err(_) => -1,
            };
            exec.out.lock().unwrap().exit = Some(code);
            exec.bump();
        });
        Ok(Response::new(tcr::TaskExecStartResponse {}))
    }

    type TaskExecStdioReadStream = Stream2<tcr::TaskExecStdioReadResponse>;

    async fn task_exec_stdio_read(&self, req: Request<tcr::TaskExecStdioReadRequest>) -> Result<Response<Self::TaskExecStdioReadStream>, Status> {
        let sandbox = self.0.router_gate("TaskExecStdioRead", req.metadata())?;
        let r = req.into_inner();
        let exec = self.exec(&sandbox, &r.task_id, &r.exec_id)?;
        let stderr = r.file_descriptor == tcr::TaskExecStdioFileDescriptor::Stderr as i32;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut sent = r.offset as usize;
            let mut changed = exec.changed.subscribe();
            loop {
                let (chunk, done) = {
                    let out = exec.out.lock().unwrap();
                    let (buf, done) = if stderr { (&out.stderr, out.stderr_done) } else { (&out.stdout, out.stdout_done) };
                    let end = buf.len().min(sent + (1 << 20));
                    (buf.get(sent..end).map(<[u8]>::to_vec).unwrap_or_default(), done && end >= buf.len())
                };
                if !chunk.is_empty() {
                    sent += chunk.len();
                    if tx.send(Ok(tcr::TaskExecStdioReadResponse { data: chunk })).await.is_err() {
                        return;
                    }
                    continue;
                }
                if done || changed.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn task_exec_wait(&self, req: Request<tcr::TaskExecWaitRequest>) -> Result<Response<tcr::TaskExecWaitResponse>, Status> {
        let sandbox = self.0.router_gate("TaskExecWait", req.metadata())?;
        let r = req.into_inner();
        let exec = self.exec(&sandbox, &r.task_id, &r.exec_id)?;
        match exec.wait(self.0.config.max_wait).await {
            Some(code) => Ok(Response::new(tcr::TaskExecWaitResponse { exit_status: Some(tcr::task_exec_wait_response::ExitStatus::Code(code)) })),
            None => Err(Status::deadline_exceeded("still running")),
        }
    }

    async fn task_exec_poll(&self, req: Request<tcr::TaskExecPollRequest>) -> Result<Response<tcr::TaskExecPollResponse>, Status> {
        let sandbox = self.0.router_gate("TaskExecPoll", req.metadata())?;
        let r = req.into_inner();
        let exec = self.exec(&sandbox, &r.task_id, &r.exec_id)?;
        let exit = exec.out.lock().unwrap().exit;
        Ok(Response::new(tcr::TaskExecPollResponse { exit_status: exit.map(tcr::task_exec_poll_response::ExitStatus::Code) }))
    }

    async fn task_exec_stdin_write_stream(
        &self,
        req: Request<Streaming<tcr::TaskExecStdinWriteStreamRequest>>,
    ) -> Result<Response<tcr::TaskExecStdinWriteStreamResponse>, Status> {
        let sandbox = self.0.router_gate("TaskExecStdinWriteStream", req.metadata())?;
        let mut stream = req.into_inner();
        use tcr::task_exec_stdin_write_stream_request::Payload;
        let Some(Payload::Start(start)) = stream.message().await?.and_then(|m| m.payload) else {
            return Err(Status::invalid_argument("the first message must be `start`"));
        };
        let exec = self.exec(&sandbox, &start.task_id, &start.exec_id)?;
        let mut stdin = exec.stdin.lock().await;
        // Bytes before `offset` were written by an earlier stream; only the rest goes in.
        let mut skip = exec.written.load(Ordering::SeqCst).saturating_sub(start.offset);
        while let Some(msg) = stream.message().await? {
            match msg.payload {
                Some(Payload::Data(mut data)) => {
                    let s = (skip as usize).min(data.len());
                    data.drain(..s);
                    skip -= s as u64;
                    let Some(pipe) = stdin.as_mut() else { return Err(Status::failed_precondition("stdin is closed")) };
                    if pipe.write_all(&data).await.is_err() {
                        // The command stopped reading (it exited): like a broken pipe, not the caller's fault.
                        *stdin = None;
                        exec.closed.store(true, Ordering::SeqCst);
                        return Err(Status::failed_precondition("the command no longer reads its stdin"));
                    }
                    exec.written.fetch_add(data.len() as u64, Ordering::SeqCst);
                }
                Some(Payload::End(_)) => {
                    if let Some(mut pipe) = stdin.take() {
                        let _ = pipe.shutdown().await;
                    }
                    exec.closed.store(true, Ordering::SeqCst);
                }
                Some(Payload::Start(_)) | None => return Err(Status::invalid_argument("`start` only comes first")),
            }
        }
        Ok(Response::new(tcr::TaskExecStdinWriteStreamResponse {}))
    }

    async fn task_exec_stdin_status(&self, req: Request<tcr::TaskExecStdinStatusRequest>) -> Result<Response<tcr::TaskExecStdinStatusResponse>, Status> {
        let sandbox = self.0.router_gate("TaskExecStdinStatus", req.metadata())?;
        let r = req.into_inner();
        let exec = self.exec(&sandbox, &r.task_id, &r.exec_id)?;
        Ok(Response::new(tcr::TaskExecStdinStatusResponse { num_bytes_written: exec.written.load(Ordering::SeqCst), closed: exec.closed.load(Ordering::SeqCst) }))
    }
}
