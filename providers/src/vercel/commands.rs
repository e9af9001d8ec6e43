//! Commands in a session: the bootstrap channel's run-to-completion (started detached, waited, logs
//! read) and the runtime's own start, which runs as a detached command that Vercel keeps running.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::{Error, ExecOutput, ExecSpec, Result};

use super::{client, io, VercelProvider, NAME};

/// `[bin, "daemon", "start", args…]`: the bootstrap starting the runtime.
pub(super) fn is_daemon_start(argv: &[String]) -> bool {
    argv.get(1).map(String::as_str) == Some("daemon") && argv.get(2).map(String::as_str) == Some("start")
}

impl VercelProvider {
    /// Starts the runtime (`sbx-agent daemon start ARGS`) as `sbx-agent server ARGS`, a detached
    /// command of the session, so that Vercel keeps it running as the command it tracks rather than as
    /// a background child of a command that ended. A runtime this session still runs (one that stopped
    /// answering, when the bootstrap restarts it) is killed first, so the new one gets the port. Returns
    /// at once with exit code 0; the bootstrap then waits for `/v1/health`.
    pub(super) async fn start_runtime(&self, id: &str, sid: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        let bin = cmd.argv[0].clone();
        let list_path = format!("v2/sandboxes/sessions/{sid}/cmd");
        let listed = self.api.json("list commands", Some(id), || self.api.req(Method::GET, &list_path)).await?;
        for c in listed.get("commands").and_then(Value::as_array).into_iter().flatten() {
            let running = c.get("exitCode").is_none_or(Value::is_null);
            let ours = c.get("name").and_then(Value::as_str) == Some(bin.as_str())
                && c.pointer("/args/0").and_then(Value::as_str) == Some("server");
            if let (true, true, Some(cid)) = (running, ours, c.get("id").and_then(Value::as_str)) {
                let path = format!("v2/sandboxes/sessions/{sid}/cmd/{cid}/kill");
                let body = json!({"signal": 9});
                if let Err(e) = self.api.json("kill the old runtime", Some(id), || self.api.req(Method::POST, &path).json(&body)).await {
                    tracing::debug!(sandbox = id, error = %e, "vercel: killing the old runtime");
                }
            }
        }
        let mut args = vec!["server".to_owned()];
        args.extend(cmd.argv[3..].iter().cloned());
        let mut body = json!({"command": bin, "args": args, "env": cmd.env, "sudo": false});
        if let Some(cwd) = &cmd.cwd {
            body["cwd"] = json!(cwd);
        }
        self.api.json_once("start the runtime", Some(id), || self.api.req(Method::POST, &list_path).json(&body)).await?;
        Ok(ExecOutput::default())
    }

    /// Starts `cmd` detached and returns its id; runs `argv` under the output wrapper.
    pub(super) async fn start_command(&self, id: &str, sid: &str, cmd: &ExecSpec, limit: Duration) -> Result<String> {
        let mut args = vec!["-c".to_owned(), io::EXEC_WRAPPER.to_owned(), "sh".to_owned()];
        args.extend(cmd.argv.iter().cloned());
        let mut body = json!({
            "command": "sh",
            "args": args,
            "env": cmd.env,
            "sudo": false,
            "timeout": u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        });
        if let Some(cwd) = &cmd.cwd {
            body["cwd"] = json!(cwd);
        }
        let path = format!("v2/sandboxes/sessions/{sid}/cmd");
        let v = self.api.json_once("run command", Some(id), || self.api.req(Method::POST, &path).json(&body)).await?;
        v.pointer("/command/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Provider { provider: NAME, message: format!("run command: no command id in {v}") })
    }

    /// Waits for command `cmd_id` to exit and reads its logs: (exit code, stdout, stderr).
    pub(super) async fn finish_command(&self, id: &str, sid: &str, cmd_id: &str, limit: Duration) -> Result<(i64, client::Logs)> {
        let path = format!("v2/sandboxes/sessions/{sid}/cmd/{cmd_id}");
        let wait = || self.api.req(Method::GET, &path).query(&[("wait", "true")]).timeout(limit);
        // A long poll may come back before the command ends (a proxy's own limit): ask again. The
        // caller bounds the whole wait.
        let code = loop {
            let done = self.api.json("wait for command", Some(id), wait).await?;
            if let Some(code) = done.pointer("/command/exitCode").and_then(Value::as_i64) {
                break code;
            }
        };
        // The logs replay from the beginning on every request, so a broken read is simply read again.
        let logs_path = format!("{path}/logs");
        let mut attempt = 0;
        loop {
            let req = self.api.req(Method::GET, &logs_path).timeout(limit);
            let res = async {
                let (client, req) = req.build_split();
                let req = req.map_err(|e| Error::Provider { provider: NAME, message: format!("logs: bad request: {e}") })?;
                let resp = client.execute(req).await.map_err(|e| self.api.http.transport(e, "logs", &logs_path, limit))?;
                if !resp.status().is_success() {
                    let (status, headers) = (resp.status(), resp.headers().clone());
                    let body = resp.bytes().await.unwrap_or_default();
                    return Err(self.api.ok(crate::http::Reply { status, headers, body }, "logs", Some(id)).expect_err("not a success"));
                }
                client::read_logs(resp, "logs", limit).await
            }
            .await;
            match res {
                Ok(logs) => return Ok((code, logs)),
                Err(e)
                    if attempt + 1 < self.api.http.retry.attempts
                        && matches!(e, Error::Unavailable { .. } | Error::RateLimited { .. } | Error::Api { status: 500.., .. }) =>
                {
                    tracing::debug!(sandbox = id, error = %e, "vercel: reading logs again");
                    tokio::time::sleep(self.api.http.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
