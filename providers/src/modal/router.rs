//! Commands in a running sandbox through the task command router (Modal's second gRPC service, reached
//! at the URL and with the JWT the control plane hands out): start, stdout and stderr read at the same
//! time (each re-opened at its byte offset after a dropped stream), stdin streamed, then the exit code.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::grpc::{self, MAX_MESSAGE};
use super::proto::client::{secret_source, SecretSource, StringMap};
use super::proto::task_command_router as tcr;
use super::proto::task_command_router::task_command_router_client::TaskCommandRouterClient;
use super::{ModalProvider, NAME};
use crate::{ByteStream, Error, ExecOutput, Result};

/// Longest one `TaskExecWait` is held open (the SDK's per-attempt limit); it is asked again until the
/// command ends or the caller's limit runs out.
const WAIT_ATTEMPT: Duration = Duration::from_secs(60);
/// Stdin goes in chunks of at most this many bytes.
const STDIN_CHUNK: usize = 1 << 20;

/// How to reach one sandbox's command router.
#[derive(Debug, Clone)]
pub(super) struct Access {
    pub(super) task_id: String,
    pub(super) url: String,
    pub(super) jwt: String,
}

/// One command to run.
pub(super) struct Command<'a> {
    pub(super) argv: &'a [String],
    pub(super) env: &'a std::collections::BTreeMap<String, String>,
    pub(super) cwd: Option<&'a str>,
    pub(super) limit: Duration,
    pub(super) stdin: Option<ByteStream>,
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bearer(jwt: &str) -> Option<AsciiMetadataValue> {
    AsciiMetadataValue::try_from(format!("Bearer {jwt}")).ok()
}

impl ModalProvider {
    /// A router client for `access` (one channel per router URL, shared).
    fn router(&self, access: &Access) -> Result<TaskCommandRouterClient<Channel>> {
        if access.url.starts_with("http://") && !grpc::is_loopback(&self.api.url) {
            // The SDK's rule: the JWT crosses the network only over TLS.
            return Err(Error::Provider {
                provider: NAME,
                message: format!("the command router URL `{}` is not https:// (refused outside a local test setup)", access.url),
            });
        }
        let mut channels = self.routers.lock().expect("routers");
        let ch = match channels.get(&access.url) {
            Some(c) => c.clone(),
            None => {
                let c = grpc::channel(&access.url)?;
                channels.insert(access.url.clone(), c.clone());
                c
            }
        };
        Ok(TaskCommandRouterClient::new(ch).max_decoding_message_size(MAX_MESSAGE))
    }

    fn router_request<T>(access: &Access, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        if let Some(v) = bearer(&access.jwt) {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    /// A router status as an error (`id`: the sandbox).
    fn router_error(&self, id: &str, op: &str, s: &Status, after: Duration) -> Error {
        match s.code() {
            // The task is gone: the sandbox ended.
            Code::NotFound => Error::NotFound { sandbox: id.to_owned() },
            _ => grpc::error(s, op, Some(id), after),
        }
    }

    /// Runs `cmd` in sandbox `id` to completion. A router that refuses the JWT gets one fresh access
    /// (`SandboxGetCommandRouterAccess`) before the command starts.
    pub(super) async fn run(&self, id: &str, cmd: Command<'_>) -> Result<ExecOutput> {
        let mut access = self.access(id).await?;
        let exec_id = uuid::Uuid::new_v4().to_string();
        let secret_sources = if cmd.env.is_empty() {
            Vec::new()
        } else {
            // The command's env goes as an inline secret source, as the SDK sends `env=`: never on argv.
            let contents: HashMap<String, String> = cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            vec![SecretSource { source: Some(secret_source::Source::Env(StringMap { contents })) }]
        };
        let start = tcr::TaskExecStartRequest {
            task_id: access.task_id.clone(),
            exec_id: exec_id.clone(),
            command_args: cmd.argv.to_vec(),
            stdout_config: tcr::TaskExecStdoutConfig::Pipe as i32,
            stderr_config: tcr::TaskExecStderrConfig::Pipe as i32,
            timeout_secs: Some(u32::try_from(cmd.limit.as_secs().max(1)).unwrap_or(u32::MAX)),
            workdir: cmd.cwd.map(str::to_owned),
            env: HashMap::new(),
            secret_sources,
        };
        // The exec id makes a start idempotent, so a start that may have been carried out is sent again.
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let mut client = self.router(&access)?;
            let r = Self::router_request(&access, start.clone(), self.api.timeout);
            match client.task_exec_start(r).await {
                Ok(_) => break,
                Err(s) if s.code() == Code::Unauthenticated && !refreshed => {
                    refreshed = true;
                    access = self.refresh_access(id).await?;
                }
                Err(s) if grpc::transient(s.code()) && attempt + 1 < self.api.retry.attempts => {
                    tokio::time::sleep(self.api.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(s) => return Err(self.router_error(id, "exec", &s, self.api.timeout)),
            }
        }
        let started = tokio::time::Instant::now();
        let deadline = started + cmd.limit + Duration::from_secs(30);
        let all = self.collect(id, &access, &exec_id, cmd.stdin, deadline);
        let (code, stdout, stderr, stdin) = match tokio::time::timeout_at(deadline, all).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout { op: format!("{NAME} exec {:?}", cmd.argv[0]), after: cmd.limit }),
        };
        if code == 137 && started.elapsed() >= cmd.limit {
            return Err(Error::Timeout { op: format!("{NAME} exec {:?}", cmd.argv[0]), after: cmd.limit });
        }
        // A command that ended before reading all its input says why on stderr; that is the answer then.
        if let Err(e) = stdin {
            if code == 0 {
                return Err(e);
            }
        }
        Ok(ExecOutput { exit_code: code, stdout, stderr })
    }

    /// Both output streams and the stdin stream at once (a command blocked on a full pipe or on input
    /// would otherwise never end), then the exit code.
    async fn collect(
        &self,
        id: &str,
        access: &Access,
        exec_id: &str,
        stdin: Option<ByteStream>,
        deadline: tokio::time::Instant,
    ) -> Result<(i64, Vec<u8>, Vec<u8>, Result<()>)> {
        // Boxed: erasing the three futures' types keeps rustc's `Send` proof of `exec` tractable.
        let out: BoxFuture<'_, Result<Vec<u8>>> = Box::pin(self.read_fd(id, access, exec_id, tcr::TaskExecStdioFileDescriptor::Stdout));
        let err: BoxFuture<'_, Result<Vec<u8>>> = Box::pin(self.read_fd(id, access, exec_id, tcr::TaskExecStdioFileDescriptor::Stderr));
        let input: BoxFuture<'_, Result<()>> = Box::pin(self.write_stdin(id, access, exec_id, stdin));
        let (stdout, stderr, stdin) = futures::join!(out, err, input);
        let code = self.wait_exit(id, access, exec_id, deadline).await?;
        Ok((code, stdout?, stderr?, stdin))
    }

    /// All of one output stream, re-opened at the bytes already read when it drops.
    async fn read_fd(&self, id: &str, access: &Access, exec_id: &str, fd: tcr::TaskExecStdioFileDescriptor) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut attempt = 0;
        loop {
            let req = tcr::TaskExecStdioReadRequest {
                task_id: access.task_id.clone(),
                exec_id: exec_id.to_owned(),
                offset: buf.len() as u64,
                file_descriptor: fd as i32,
            };
            let mut client = self.router(access)?;
            // No deadline on the stream itself: it lasts as long as the command (the caller bounds it).
            let mut r = tonic::Request::new(req);
            if let Some(v) = bearer(&access.jwt) {
                r.metadata_mut().insert("authorization", v);
            }
            let res = async {
                let mut stream = client.task_exec_stdio_read(r).await?.into_inner();
                while let Some(chunk) = stream.message().await? {
                    buf.extend_from_slice(&chunk.data);
                }
                Ok::<_, Status>(())
            }
            .await;
            match res {
                Ok(()) => return Ok(buf),
                Err(s) if grpc::transient(s.code()) && attempt + 1 < self.api.retry.attempts => {
                    tracing::debug!(sandbox = id, code = ?s.code(), "modal: reading output again from byte {}", buf.len());
                    tokio::time::sleep(self.api.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(s) => return Err(self.router_error(id, "read output", &s, self.api.timeout)),
            }
        }
    }

    /// Streams `data` (if any) to the command's stdin, then closes it. Not retried: a stream cannot be
    /// replayed.
    async fn write_stdin(&self, id: &str, access: &Access, exec_id: &str, data: Option<ByteStream>) -> Result<()> {
        use tcr::task_exec_stdin_write_stream_request::Payload;
        let Some(data) = data else { return Ok(()) };
        let msg = |p: Payload| tcr::TaskExecStdinWriteStreamRequest { payload: Some(p) };
        let start = msg(Payload::Start(tcr::TaskExecStdinWriteStreamStart {
            task_id: access.task_id.clone(),
            exec_id: exec_id.to_owned(),
            offset: 0,
        }));
        // The request stream is a channel fed from here: the client-streaming call's future is then
        // `Send` for rustc inside the provider's async trait methods (with combinator or boxed streams
        // it cannot prove that), and it runs on a task of its own, ended by the guard if the command is
        // given up.
        let (tx, rx) = tokio::sync::mpsc::channel::<tcr::TaskExecStdinWriteStreamRequest>(4);
        let mut client = self.router(access)?;
        let mut r = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(v) = bearer(&access.jwt) {
            r.metadata_mut().insert("authorization", v);
        }
        let mut task = AbortOnDrop(tokio::spawn(async move { client.task_exec_stdin_write_stream(r).await.map(drop) }));
        let feed = async {
            let mut data = data;
            if tx.send(start).await.is_err() {
                return Ok(());
            }
            while let Some(chunk) = data.next().await {
                let b = chunk.map_err(|e| Error::io("reading the data to send", e))?;
                for i in (0..b.len()).step_by(STDIN_CHUNK) {
                    let part = b.slice(i..(i + STDIN_CHUNK).min(b.len()));
                    if tx.send(msg(Payload::Data(part.to_vec()))).await.is_err() {
                        // The call ended (the command stopped reading): its answer says why.
                        return Ok(());
                    }
                }
            }
            let _ = tx.send(msg(Payload::End(tcr::TaskExecStdinWriteStreamEnd {}))).await;
            Ok(())
        };
        let fed: Result<()> = feed.await;
        drop(tx);
        let res = match (&mut task.0).await {
            Ok(r) => r,
            Err(e) => Err(Status::internal(format!("the stdin task failed: {e}"))),
        };
        fed?;
        res.map_err(|s| self.router_error(id, "write stdin", &s, self.api.timeout))
    }

    /// The exit code (128 + N for signal N), asked again while the long poll comes back without one.
    async fn wait_exit(&self, id: &str, access: &Access, exec_id: &str, deadline: tokio::time::Instant) -> Result<i64> {
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let per = WAIT_ATTEMPT.min(left.max(Duration::from_secs(1)));
            let req = tcr::TaskExecWaitRequest { task_id: access.task_id.clone(), exec_id: exec_id.to_owned() };
            let mut client = self.router(access)?;
            match client.task_exec_wait(Self::router_request(access, req, per)).await {
                Ok(resp) => {
                    use tcr::task_exec_wait_response::ExitStatus;
                    return Ok(match resp.into_inner().exit_status {
                        Some(ExitStatus::Code(c)) => i64::from(c),
                        Some(ExitStatus::Signal(s)) => 128 + i64::from(s),
                        None => -1,
                    });
                }
                // The long poll's own limit: ask again (the caller bounds the whole wait).
                Err(s) if s.code() == Code::DeadlineExceeded => {}
                Err(s) if grpc::transient(s.code()) && attempt + 1 < self.api.retry.attempts => {
                    tokio::time::sleep(self.api.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(s) => return Err(self.router_error(id, "wait for the command", &s, per)),
            }
        }
    }
}
