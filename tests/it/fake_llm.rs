//! The fake LLM (`sbx_tests::fake_llm`): its wire format on its own, then against the real `claude`
//! and `codex` binaries (`SBX_CLAUDE_BIN`, `SBX_CODEX_BIN` from `install/test-deps.sh`; those tests
//! skip with a printed reason when unset, or fail when `SBX_REQUIRE_AGENTS=1`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sbx_tests::fake_llm::{codex_home, Api, FakeLlm, Reply};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// An agent binary from the environment, or `None` (test skipped) when unset.
fn agent_bin(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.exists(), "{var}={} does not exist", p.display());
            Some(p)
        }
        _ => {
            if std::env::var("SBX_REQUIRE_AGENTS").as_deref() == Ok("1") {
                panic!("{var} is required (SBX_REQUIRE_AGENTS=1): run install/test-deps.sh and source ~/.cache/sbx-test/env.sh");
            }
            eprintln!("skipping: {var} is not set (run install/test-deps.sh, then source ~/.cache/sbx-test/env.sh)");
            None
        }
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    timed_out: bool,
}

impl Run {
    /// stdout's JSON lines.
    fn lines(&self) -> Vec<Value> {
        self.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}{}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.elapsed,
            if self.timed_out { " (TIMED OUT, killed)" } else { "" },
            self.stdout,
            tail(&self.stderr, 4000)
        )
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[start..]
}

/// Runs `cmd` to completion or `timeout` (then kills it), collecting its output.
async fn run(mut cmd: Command, timeout: Duration) -> Run {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn agent");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        buf
    });
    let (code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.expect("wait").code(), false),
        Err(_) => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            (None, true)
        }
    };
    let elapsed = started.elapsed();
    // Grandchildren may hold the pipes open: don't wait for them forever.
    let grab = |t: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        }
    };
    Run { code, stdout: grab(out_task).await, stderr: grab(err_task).await, elapsed, timed_out }
}

/// A minimal environment (nothing leaks in from the host's own agent configuration).
fn base_env(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("TMPDIR", std::env::temp_dir());
}

/// `claude -p PROMPT` against `llm`, fresh HOME, cwd `cwd`, stream-json output.
fn claude_cmd(bin: &Path, llm: &FakeLlm, home: &Path, cwd: &Path, prompt: &str) -> Command {
    let mut cmd = Command::new(bin);
    base_env(&mut cmd, home);
    cmd.current_dir(cwd)
        .env("ANTHROPIC_BASE_URL", llm.base_url())
        .env("ANTHROPIC_API_KEY", "test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .args(["-p", prompt, "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"]);
    cmd
}

fn dump(llm: &FakeLlm) -> String {
    llm.requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}{} api={:?} auth={} stream={} conversation={} model={:?} tools={:?} last_user={:?}",
                r.method,
                r.path,
                r.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default(),
                r.api,
                r.auth,
                r.stream,
                r.conversation,
                r.model(),
                r.tool_names(),
                r.last_user_text().map(|t| tail(&t, 120).to_string()),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the wire format, without agents ----------------------------------------------------------

/// Parses an SSE body into (event, data) pairs.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, serde_json::from_str(&data).expect("event data is JSON"))
        })
        .collect()
}

#[tokio::test]
async fn fake_llm_speaks_both_wire_formats_and_only_conversations_consume_the_script() {
    let llm = FakeLlm::start().await;
    let http = reqwest::Client::new();
    let tools = json!([{"name": "Write", "description": "w", "input_schema": {"type": "object"}}]);
    llm.push(Reply::tool("Write", json!({"file_path": "/x", "content": "hi"})));
    llm.push(Reply::text("hello there"));

    // A side request (no tools) gets the default text and leaves the script alone.
    let side: Value = http
        .post(format!("{}/v1/messages?beta=true", llm.base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-haiku", "max_tokens": 1, "messages": [{"role": "user", "content": "quota"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(side["type"], "message");
    assert_eq!(side["content"][0]["text"], "ok");
    assert_eq!(llm.pending(), 2);

    // Anthropic streaming tool_use.
    let body = http
        .post(format!("{}/v1/messages?beta=true", llm.base_url()))
        .header("x-api-key", "k")
        .json(&json!({"model": "m", "stream": true, "tools": tools, "messages": [{"role": "user", "content": "go"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.windows(2).any(|w| w == ["content_block_stop", "message_delta"]), "{names:?}");
    let json_text: String =
        events.iter().filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str)).collect();
    assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), json!({"file_path": "/x", "content": "hi"}));
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    assert!(delta.1["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // OpenAI Responses streaming text; the tool_result helper on an Anthropic request.
    let resp = http
        .post(format!("{}/responses", llm.openai_base_url()))
        .bearer_auth("k")
        .json(&json!({"model": "gpt", "stream": true, "tools": [{"type": "function", "name": "exec_command"}],
                      "input": [{"type": "function_call_output", "call_id": "c1", "output": "done"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
    let events = sse_events(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "response.created");
    assert_eq!(names.last(), Some(&"response.completed"));
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "hello there");
    assert!(events.iter().filter(|(n, _)| n == "response.output_text.delta").count() > 1);
    assert!(events.last().unwrap().1["response"]["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // OpenAI: a tool offered as `custom` (freeform, e.g. apply_patch) is called as custom_tool_call.
    llm.push(Reply::tool("apply_patch", json!("*** Begin Patch\n*** End Patch")));
    let body = http
        .post(format!("{}/responses", llm.openai_base_url()))
        .json(
            &json!({"model": "gpt", "stream": true, "tools": [{"type": "custom", "name": "apply_patch"}], "input": []}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let done = sse_events(&body).into_iter().find(|(n, _)| n == "response.output_item.done").unwrap().1;
    assert_eq!(done["item"]["type"], "custom_tool_call");
    assert_eq!(done["item"]["input"], "*** Begin Patch\n*** End Patch");
    llm.push(Reply::Error { status: 429, retry_after: Some(7) });

    // Errors: status, body shape, Retry-After.
    let resp = http
        .post(format!("{}/v1/messages", llm.base_url()))
        .json(&json!({"model": "m", "stream": true, "tools": tools, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let err: Value = resp.json().await.unwrap();
    assert_eq!((err["type"].as_str(), err["error"]["type"].as_str()), (Some("error"), Some("rate_limit_error")));
    assert_eq!(llm.pending(), 0);

    // Empty script: the default text, not a hang.
    let resp: Value = http
        .post(format!("{}/v1/messages", llm.base_url()))
        .json(&json!({"model": "m", "tools": tools, "messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["content"][0]["text"], "ok");

    // Unknown paths: JSON 404.
    let resp = http.get(format!("{}/nope", llm.base_url())).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.unwrap()["error"]["message"].is_string());

    let reqs = llm.requests();
    assert_eq!(reqs.iter().filter(|r| r.conversation).count(), 5, "{}", dump(&llm));
    assert!(!reqs[0].conversation && reqs[0].auth && reqs[0].api == Api::Anthropic);
    assert_eq!(reqs[2].api, Api::OpenAi);
    assert_eq!(reqs[2].tool_names(), ["exec_command"]);
    assert_eq!(reqs[2].function_call_output().unwrap().content, "done");
    llm.stop().await;
}

#[tokio::test]
async fn fake_llm_hang_does_not_block_and_slow_text_is_slow() {
    let llm = FakeLlm::start().await;
    let http = reqwest::Client::new();
    let tools = json!([{"name": "Bash", "input_schema": {"type": "object"}}]);
    llm.push(Reply::Hang);
    llm.push(Reply::SlowText { text: "abcdef".into(), chunks: 3, delay_ms: 150 });
    let url = format!("{}/v1/messages", llm.base_url());
    let body = json!({"model": "m", "stream": true, "tools": tools, "messages": []});

    let hung = tokio::spawn(http.post(&url).json(&body).send());
    assert!(sbx_tests::wait_for(Duration::from_secs(5), || async { llm.pending() == 1 }).await);

    let started = Instant::now();
    let resp = http.post(&url).json(&body).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut first_delta_at = None;
    while let Some(chunk) = stream.next().await {
        let chunk = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
        if chunk.contains("text_delta") && first_delta_at.is_none() {
            first_delta_at = Some(started.elapsed());
        }
        text.push_str(&chunk);
    }
    let deltas: String = sse_events(&text)
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str).map(str::to_string))
        .collect();
    assert_eq!(deltas, "abcdef");
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
    assert!(first_delta_at.unwrap() < Duration::from_millis(400), "deltas are streamed, not buffered");
    assert!(!hung.is_finished(), "the hung request is still waiting");

    // Stall: 200 and the opening event, then silence (the stream stays open).
    llm.push(Reply::Stall);
    let resp = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.starts_with("event: message_start\n"), "{first}");
    let mut seen = first;
    let more = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(c)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&c));
            if seen.contains("content_block") || seen.contains("message_stop") {
                return true;
            }
        }
        true
    })
    .await;
    assert!(more.is_err(), "a stalled stream sends nothing more and stays open: {seen}");

    // Stopping ends the hung request instead of waiting for it.
    tokio::time::timeout(Duration::from_secs(5), llm.stop()).await.expect("stop does not wait for hung requests");
    let _ = tokio::time::timeout(Duration::from_secs(5), hung).await.expect("hung request ended");
}

// ---- the real agents ------------------------------------------------------------------------

#[tokio::test]
async fn fake_llm_drives_real_claude_through_a_write_tool_call() {
    let Some(bin) = agent_bin("SBX_CLAUDE_BIN") else { return };
    let llm = FakeLlm::start().await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("hello.txt");
    llm.push(Reply::tool("Write", json!({"file_path": target.to_str().unwrap(), "content": "hi"})));
    llm.push(Reply::text("done"));

    let run =
        run(claude_cmd(&bin, &llm, home.path(), work.path(), "write hi to hello.txt"), Duration::from_secs(120)).await;
    eprintln!("claude requests:\n{}", dump(&llm));
    assert!(!run.timed_out && run.code == Some(0), "{}", run.describe());
    assert_eq!(std::fs::read_to_string(&target).ok().as_deref(), Some("hi"), "{}", run.describe());
    let lines = run.lines();
    let result =
        lines.iter().find(|l| l["type"] == "result").unwrap_or_else(|| panic!("no result line: {}", run.describe()));
    assert_eq!(result["subtype"], "success", "{}", run.describe());
    assert_eq!(result["result"], "done");
    assert!(lines.iter().any(|l| l["type"] == "system" && l["subtype"] == "init"));

    assert_eq!(llm.pending(), 0);
    let convo = llm.conversation_requests();
    assert_eq!(convo.len(), 2, "{}", dump(&llm));
    assert!(convo.iter().all(|r| r.api == Api::Anthropic && r.auth && r.stream && r.path == "/v1/messages"));
    assert!(convo[0].tool_names().iter().any(|t| t == "Write"), "{:?}", convo[0].tool_names());
    assert!(convo[0].last_tool_result().is_none());
    let tr = convo[1].last_tool_result().expect("the second request carries the tool_result");
    assert!(!tr.is_error, "{tr:?}");
    assert!(tr.id.starts_with("toolu_"), "{tr:?}");
    // Side requests (if any) never carry tools.
    assert!(llm.requests().iter().filter(|r| !r.conversation).all(|r| r.tool_names().is_empty()));
}

/// The `result` line of a claude run.
fn result_line(run: &Run) -> Value {
    run.lines()
        .into_iter()
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result line: {}", run.describe()))
}

/// Claude Code retries every API error (401 included) up to `CLAUDE_CODE_MAX_RETRIES` times (default
/// 10, clamped to 15) with backoff from ~0.6 s doubling to ~32-38 s, honouring `Retry-After`: a
/// persistent 401 takes ~3 minutes with the defaults. A failed turn still prints `subtype: success`,
/// with `is_error: true`, `api_error_status` and `terminal_reason: api_error`, and exits 1.
#[tokio::test]
async fn fake_llm_claude_api_errors_end_the_turn_quickly_with_retries_bounded() {
    let Some(bin) = agent_bin("SBX_CLAUDE_BIN") else { return };
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let claude = |llm: &FakeLlm, retries: &str| {
        let mut cmd = claude_cmd(&bin, llm, home.path(), work.path(), "hi");
        cmd.env("CLAUDE_CODE_MAX_RETRIES", retries);
        cmd
    };

    // A persistent 401, no retries: one request, a failed result, fast.
    let llm = FakeLlm::start().await;
    llm.set_default(Reply::error(401));
    let run401 = run(claude(&llm, "0"), Duration::from_secs(60)).await;
    assert!(!run401.timed_out && run401.code == Some(1), "{}", run401.describe());
    let result = result_line(&run401);
    assert_eq!(
        (result["is_error"].as_bool(), result["api_error_status"].as_u64()),
        (Some(true), Some(401)),
        "{result}"
    );
    assert_eq!(llm.conversation_requests().len(), 1, "{}", dump(&llm));
    assert!(run401.elapsed < Duration::from_secs(30), "{}", run401.describe());
    llm.stop().await;

    // A persistent 500 with one retry: two requests, then a failed result.
    let llm = FakeLlm::start().await;
    llm.set_default(Reply::error(500));
    let run500 = run(claude(&llm, "1"), Duration::from_secs(60)).await;
    assert!(!run500.timed_out && run500.code == Some(1), "{}", run500.describe());
    assert_eq!(result_line(&run500)["api_error_status"], 500);
    assert_eq!(llm.conversation_requests().len(), 2, "{}", dump(&llm));
    assert!(
        run500.lines().iter().any(|l| l["subtype"] == "api_retry" && l["error_status"] == 500),
        "{}",
        run500.describe()
    );
    llm.stop().await;

    // 429 with Retry-After: 1, then text: retried after the advertised delay, then success.
    let llm = FakeLlm::start().await;
    llm.push(Reply::Error { status: 429, retry_after: Some(1) });
    llm.push(Reply::text("after retry"));
    let run429 = run(claude(&llm, "2"), Duration::from_secs(60)).await;
    assert!(!run429.timed_out && run429.code == Some(0), "{}", run429.describe());
    assert_eq!(result_line(&run429)["result"], "after retry", "{}", run429.describe());
    let retry = run429.lines().into_iter().find(|l| l["subtype"] == "api_retry").expect("an api_retry line");
    assert!(retry["retry_delay_ms"].as_u64().unwrap() >= 1000, "Retry-After honoured: {retry}");
    assert_eq!(llm.conversation_requests().len(), 2, "{}", dump(&llm));
    llm.stop().await;

    // A request that never gets an answer: API_TIMEOUT_MS bounds it.
    let llm = FakeLlm::start().await;
    llm.set_default(Reply::Hang);
    let mut cmd = claude(&llm, "0");
    cmd.env("API_TIMEOUT_MS", "2000");
    let hung = run(cmd, Duration::from_secs(60)).await;
    assert!(!hung.timed_out && hung.code == Some(1), "{}", hung.describe());
    assert!(result_line(&hung)["result"].as_str().unwrap_or_default().contains("timed out"), "{}", hung.describe());
    eprintln!(
        "claude: 401 {:?}, 500+1 retry {:?}, 429+Retry-After 1 {:?}, hang with API_TIMEOUT_MS=2000 {:?}",
        run401.elapsed, run500.elapsed, run429.elapsed, hung.elapsed
    );
}

fn codex_cmd(bin: &Path, codex_home: &Path, home: &Path, cwd: &Path, prompt: &str) -> Command {
    let mut cmd = Command::new(bin);
    base_env(&mut cmd, home);
    cmd.current_dir(cwd).env("CODEX_HOME", codex_home).env("FAKE_KEY", "test").args([
        "exec",
        "--skip-git-repo-check",
        "--json",
        "--dangerously-bypass-approvals-and-sandbox",
        prompt,
    ]);
    cmd
}

#[tokio::test]
async fn fake_llm_drives_real_codex_through_an_exec_command_call() {
    let Some(bin) = agent_bin("SBX_CODEX_BIN") else { return };
    let llm = FakeLlm::start().await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let chome = codex_home(&llm, "");
    let target = work.path().join("hello.txt");
    let script = format!("printf hi > '{}'", target.display());
    // Call the shell tool by the name this codex offers (0.163: `exec_command` with `cmd`).
    llm.push(Reply::with(move |req| {
        let names = req.tool_names();
        if names.iter().any(|n| n == "exec_command") {
            Reply::tool("exec_command", json!({"cmd": script}))
        } else if names.iter().any(|n| n == "shell") {
            Reply::tool("shell", json!({"command": ["bash", "-lc", script]}))
        } else {
            Reply::text(format!("no shell tool among {names:?}"))
        }
    }));
    llm.push(Reply::text("done"));

    let run =
        run(codex_cmd(&bin, chome.path(), home.path(), work.path(), "write hi to hello.txt"), Duration::from_secs(120))
            .await;
    eprintln!("codex requests:\n{}", dump(&llm));
    assert!(!run.timed_out && run.code == Some(0), "{}", run.describe());
    assert_eq!(std::fs::read_to_string(&target).ok().as_deref(), Some("hi"), "{}", run.describe());
    let lines = run.lines();
    assert!(lines.iter().any(|l| l["type"] == "turn.completed"), "{}", run.describe());
    assert!(lines.iter().any(|l| l["type"] == "item.completed" && l["item"]["text"] == "done"), "{}", run.describe());

    assert_eq!(llm.pending(), 0);
    let convo = llm.conversation_requests();
    assert_eq!(convo.len(), 2, "{}", dump(&llm));
    assert!(convo.iter().all(|r| r.api == Api::OpenAi && r.auth && r.stream && r.path == "/v1/responses"));
    assert!(convo[0].tool_names().iter().any(|t| t == "exec_command"), "{:?}", convo[0].tool_names());
    let out = convo[1].function_call_output().expect("the second request carries the function_call_output");
    assert!(out.id.starts_with("call_"), "{out:?}");
    eprintln!("codex function_call_output: {out:?}");
}

/// Codex retries a failed stream `stream_max_retries` times (default 5, backoff from 0.2 s doubling;
/// 401 included), and within each attempt retries 5xx/429 HTTP errors `request_max_retries` times
/// (default 4). A request that gets no response headers is never timed out (`stream_idle_timeout_ms`
/// only covers silence after the headers): use [`Reply::Stall`] for that.
#[tokio::test]
async fn fake_llm_codex_api_errors_and_stalls_fail_the_turn_quickly() {
    let Some(bin) = agent_bin("SBX_CODEX_BIN") else { return };
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let no_retries = "request_max_retries = 0\nstream_max_retries = 0\nstream_idle_timeout_ms = 2000\n";

    for (reply, expect) in [(Reply::error(401), "401 Unauthorized"), (Reply::Stall, "idle timeout")] {
        let llm = FakeLlm::start().await;
        llm.set_default(reply);
        let chome = codex_home(&llm, no_retries);
        let run = run(codex_cmd(&bin, chome.path(), home.path(), work.path(), "hi"), Duration::from_secs(60)).await;
        assert!(!run.timed_out && run.code == Some(1), "{}", run.describe());
        let failed = run.lines().into_iter().find(|l| l["type"] == "turn.failed").expect("turn.failed");
        assert!(failed["error"]["message"].as_str().unwrap().contains(expect), "{failed}");
        assert_eq!(llm.conversation_requests().len(), 1, "{}", dump(&llm));
        assert!(run.elapsed < Duration::from_secs(30), "{}", run.describe());
        eprintln!("codex {expect}: failed after {:?}", run.elapsed);
    }

    // 429 with Retry-After, then text: one stream retry, then the turn completes.
    let llm = FakeLlm::start().await;
    llm.push(Reply::Error { status: 429, retry_after: Some(1) });
    llm.push(Reply::text("after retry"));
    let chome = codex_home(&llm, "request_max_retries = 0\nstream_max_retries = 1\n");
    let run = run(codex_cmd(&bin, chome.path(), home.path(), work.path(), "hi"), Duration::from_secs(60)).await;
    assert!(!run.timed_out && run.code == Some(0), "{}", run.describe());
    let lines = run.lines();
    assert!(
        lines.iter().any(|l| l["type"] == "item.completed" && l["item"]["text"] == "after retry"),
        "{}",
        run.describe()
    );
    assert!(lines.iter().any(|l| l["type"] == "turn.completed"), "{}", run.describe());
    assert_eq!(llm.conversation_requests().len(), 2, "{}", dump(&llm));
}

/// Bound to the Docker bridge gateway, the fake is reachable from a container on the default network.
#[tokio::test]
async fn fake_llm_on_the_docker_bridge_gateway_is_reachable_from_a_container() {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available");
        return;
    }
    let Some(gateway) = sbx_tests::fake_llm::docker_bridge_gateway() else {
        assert_ne!(std::env::var("SBX_REQUIRE_DOCKER").as_deref(), Ok("1"), "no bindable Docker bridge gateway");
        eprintln!("skipping: no bindable Docker bridge gateway (remote engine?)");
        return;
    };
    let llm = FakeLlm::start_on(gateway).await;
    llm.push(Reply::text("from the host"));
    let body = json!({"model": "m", "max_tokens": 5, "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                      "messages": [{"role": "user", "content": "hi"}]});
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", &crate::conformance::base_image(), "curl", "-sS", "--max-time", "20"])
        .args(["-H", "content-type: application/json", "-H", "x-api-key: k", "-d", &body.to_string()])
        .arg(format!("{}/v1/messages", llm.base_url()));
    let run = run(cmd, Duration::from_secs(120)).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let answer: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.describe()));
    assert_eq!(answer["content"][0]["text"], "from the host", "{}", run.describe());
    assert_eq!(llm.pending(), 0);
    assert!(llm.requests()[0].auth);
}
