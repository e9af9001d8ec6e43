//! `/v1/processes/*`: run-to-completion, managed processes, logs (JSON and SSE), stdin, signals, limits.

use std::time::Duration;

use futures::StreamExt;
use sbx_agent::api::process::{
    CreateProcessRequest, LogStream, LogStreamFilter, LogsQuery, ProcessLimits, ProcessLimitsUpdate, ProcessStatus,
    RunRequest,
};
use sbx_agent::api::ProblemKind;
use sbx_agent::client::{Client, ClientError, FollowOptions, LogEvent};
use sbx_tests::{wait_for, TestRuntime};

const WAIT: Duration = Duration::from_secs(10);

/// Whether `pid` is a live process (a zombie counts as dead: nothing may reap it in a container).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn kind(err: &ClientError) -> Option<ProblemKind> {
    err.problem_kind()
}

async fn wait_exited(client: &Client, id: &str) -> sbx_agent::api::process::ProcessInfo {
    let exited = wait_for(WAIT, || async {
        client.get_process(id).await.expect("get").status == ProcessStatus::Exited
    })
    .await;
    let info = client.get_process(id).await.expect("get");
    assert!(exited, "{id} did not exit: {info:?}");
    info
}

#[tokio::test]
async fn run_reports_exit_codes_and_keeps_streams_apart() {
    let rt = TestRuntime::start().await;
    let ok = rt.client.run(&RunRequest::command("true", Vec::<String>::new())).await.unwrap();
    assert_eq!((ok.exit_code, ok.signal.as_deref(), ok.timed_out), (Some(0), None, false));
    assert!(ok.success());

    let three = rt.client.run(&RunRequest::shell("echo out; echo err >&2; exit 3")).await.unwrap();
    assert_eq!(three.exit_code, Some(3));
    assert_eq!(three.stdout, "out\n");
    assert_eq!(three.stderr, "err\n");
    assert!(!three.stdout_truncated && !three.stderr_truncated);

    let args = rt.client.run(&RunRequest::command("printf", ["%s|%s", "a b", "c"])).await.unwrap();
    assert_eq!(args.stdout, "a b|c", "arguments are passed without a shell");

    // Output is bytes: not-UTF-8 output arrives as it was written, base64 on the wire.
    let raw = rt.client.run(&RunRequest::command("printf", ["\\377\\000\\n\\303"])).await.unwrap();
    assert_eq!(&raw.stdout[..], &[0xff, 0x00, b'\n', 0xc3]);
    assert_eq!(raw.stdout_text(), None);
    let json = rt.client.request(reqwest::Method::POST, "/v1/processes/run").json(&RunRequest::shell("printf '\\377'")).send().await.unwrap();
    let json: serde_json::Value = json.json().await.unwrap();
    assert_eq!(json["stdoutBase64"], "/w==", "{json}");
    rt.stop().await;
}

#[tokio::test]
async fn run_honours_env_cwd_and_stdin() {
    let rt = TestRuntime::start().await;
    let dir = tempfile::tempdir().unwrap();
    let canon = std::fs::canonicalize(dir.path()).unwrap();
    let mut req = RunRequest::shell("echo \"$GREETING\"; pwd");
    req.env.insert("GREETING".into(), "hi there".into());
    req.cwd = Some(canon.to_string_lossy().into_owned());
    let out = rt.client.run(&req).await.unwrap();
    assert_eq!(out.stdout_text(), Some(format!("hi there\n{}\n", canon.display()).as_str()));

    let mut cat = RunRequest::command("cat", Vec::<String>::new());
    cat.stdin = Some("line one\nline two\n".into());
    assert_eq!(rt.client.run(&cat).await.unwrap().stdout, "line one\nline two\n");

    let mut bin = RunRequest::command("od", ["-An", "-tx1"]);
    bin.stdin_base64 = Some("AP8K".into()); // 00 ff 0a
    let out = rt.client.run(&bin).await.unwrap();
    assert_eq!(out.stdout_text().unwrap().split_whitespace().collect::<Vec<_>>(), vec!["00", "ff", "0a"]);

    // Without stdin, the child reads end of file immediately instead of hanging.
    let empty = rt.client.run(&RunRequest::command("cat", Vec::<String>::new())).await.unwrap();
    assert_eq!((empty.exit_code, &empty.stdout[..]), (Some(0), &b""[..]));
    rt.stop().await;
}

#[tokio::test]
async fn run_timeout_kills_the_whole_process_group() {
    let rt = TestRuntime::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut req = RunRequest::shell("sleep 300 & echo $! > pidfile; wait");
    req.cwd = Some(dir.path().to_string_lossy().into_owned());
    req.timeout_ms = Some(300);
    let out = rt.client.run(&req).await.unwrap();
    assert!(out.timed_out, "{out:?}");
    assert_eq!((out.exit_code, out.signal.as_deref()), (None, Some("KILL")));
    assert!(out.duration_ms >= 300 && out.duration_ms < 10_000, "{}", out.duration_ms);
    let pid: u32 = std::fs::read_to_string(dir.path().join("pidfile")).unwrap().trim().parse().unwrap();
    assert!(wait_for(WAIT, || async { !alive(pid) }).await, "grandchild {pid} survived the timeout");
    rt.stop().await;
}

#[tokio::test]
async fn run_truncates_output_but_drains_it() {
    let rt = TestRuntime::start().await;
    let mut req = RunRequest::shell("head -c 300000 /dev/zero | tr '\\0' x; echo done >&2");
    req.max_output_bytes = Some(1000);
    let out = rt.client.run(&req).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "the writer must not block on a full pipe: {out:?}");
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout_truncated);
    assert_eq!((out.stderr_text().unwrap(), out.stderr_truncated), ("done\n", false));

    // The request cannot raise the cap above the configured limit.
    rt.client.set_process_config(ProcessLimitsUpdate { max_output_bytes: Some(10), ..Default::default() }).await.unwrap();
    let mut req = RunRequest::shell("echo 0123456789abcdef");
    req.max_output_bytes = Some(1_000_000);
    let out = rt.client.run(&req).await.unwrap();
    assert_eq!((out.stdout_text().unwrap(), out.stdout_truncated), ("0123456789", true));
    rt.stop().await;
}

#[tokio::test]
async fn run_refuses_bad_requests_clearly() {
    let rt = TestRuntime::start().await;
    let both = RunRequest { command: Some("ls".into()), shell: Some("ls".into()), ..Default::default() };
    let neither = RunRequest::default();
    let shell_args = RunRequest { shell: Some("ls".into()), args: vec!["-l".into()], ..Default::default() };
    let too_long = RunRequest { timeout_ms: Some(100_000_000), ..RunRequest::shell("true") };
    let bad_cwd = RunRequest { cwd: Some("/no/such/dir".into()), ..RunRequest::shell("true") };
    for req in [both, neither, shell_args, too_long, bad_cwd] {
        let err = rt.client.run(&req).await.expect_err("refused");
        assert_eq!(kind(&err), Some(ProblemKind::BadRequest), "{req:?}: {err}");
    }
    let err = rt.client.run(&RunRequest::command("no-such-program-sbx", Vec::<String>::new())).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("cannot start `no-such-program-sbx`: No such file or directory"), "{err}");
    rt.stop().await;
}

#[tokio::test]
async fn run_cwd_is_confined_to_the_root() {
    let rt = TestRuntime::start_rooted().await;
    std::fs::create_dir(rt.root_path().join("sub")).unwrap();
    let out = rt.client.run(&RunRequest { cwd: Some("sub".into()), ..RunRequest::shell("pwd") }).await.unwrap();
    let root = std::fs::canonicalize(rt.root_path()).unwrap();
    assert_eq!(out.stdout_text().unwrap().trim(), root.join("sub").to_string_lossy());
    let default = rt.client.run(&RunRequest::shell("pwd")).await.unwrap();
    assert_eq!(default.stdout_text().unwrap().trim(), root.to_string_lossy(), "the default cwd is the root");
    let err = rt.client.run(&RunRequest { cwd: Some("/".into()), ..RunRequest::shell("pwd") }).await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::PathOutsideRoot), "{err}");
    rt.stop().await;
}

#[tokio::test]
async fn signal_term_ends_a_managed_process() {
    let rt = TestRuntime::start().await;
    let p = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap();
    assert_eq!(p.status, ProcessStatus::Running);
    assert!(p.id.starts_with("proc_") && p.pid > 0 && p.exited_at_ms.is_none());
    rt.client.signal_process(&p.id, "TERM").await.unwrap();
    let info = wait_exited(&rt.client, &p.id).await;
    assert_eq!((info.exit_code, info.signal.as_deref()), (None, Some("TERM")));
    assert!(info.exited_at_ms.is_some());
    let err = rt.client.signal_process(&p.id, "TERM").await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::Conflict), "signalling an exited process: {err}");
    let err = rt.client.signal_process(&p.id, "NOPE").await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::BadRequest));

    let q = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap();
    let killed = rt.client.kill_process(&q.id, Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!((killed.status, killed.signal.as_deref()), (ProcessStatus::Exited, Some("KILL")));
    assert!(!alive(q.pid));
    rt.stop().await;
}

#[tokio::test]
async fn follow_logs_streams_lines_then_exit_and_resumes() {
    let rt = TestRuntime::start().await;
    let p = rt
        .client
        .start_process(&CreateProcessRequest::shell("for i in 1 2 3; do echo $i; sleep 0.1; done"))
        .await
        .unwrap();
    let mut follow = rt.client.follow_logs(&p.id, FollowOptions::default()).await.unwrap();
    let mut lines = Vec::new();
    let mut exit = None;
    while let Some(ev) = tokio::time::timeout(WAIT, follow.next()).await.expect("event in time") {
        match ev.unwrap() {
            LogEvent::Log(e) => lines.push(e),
            LogEvent::Exit(info) => exit = Some(info),
            LogEvent::Dropped(gap) => panic!("nothing may be dropped: {gap:?}"),
        }
    }
    let text: Vec<&[u8]> = lines.iter().map(|e| &e.data[..]).collect();
    assert_eq!(text, vec![b"1\n", b"2\n", b"3\n"]);
    assert!(lines.iter().all(|e| e.stream == LogStream::Stdout));
    assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));
    let exit = exit.expect("an exit event ends the stream");
    assert_eq!((exit.status, exit.exit_code), (ProcessStatus::Exited, Some(0)));

    // Resuming after the first entry gets only the later ones (and the exit again).
    let after = FollowOptions { after: Some(lines[0].seq), ..Default::default() };
    let events: Vec<LogEvent> = rt.client.follow_logs(&p.id, after).await.unwrap().map(Result::unwrap).collect().await;
    let data: Vec<bytes::Bytes> = events
        .iter()
        .filter_map(|e| if let LogEvent::Log(l) = e { Some(l.data.clone()) } else { None })
        .collect();
    assert_eq!(data, vec!["2\n", "3\n"]);
    assert!(matches!(events.last(), Some(LogEvent::Exit(_))));

    // The same with a raw SSE request and Last-Event-ID.
    let resp = rt
        .client
        .request(reqwest::Method::GET, &format!("/v1/processes/{}/logs", p.id))
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", lines[1].seq.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    assert!(body.contains(&format!("id: {}", lines[2].seq)), "{body}");
    assert!(!body.contains(&format!("id: {}\n", lines[1].seq)), "{body}");
    assert!(body.contains("event: exit"), "{body}");
    rt.stop().await;
}

#[tokio::test]
async fn follow_sees_live_output_of_a_running_process() {
    let rt = TestRuntime::start().await;
    let p = rt.client.start_process(&CreateProcessRequest::command("cat", Vec::<String>::new())).await.unwrap();
    let mut follow = rt.client.follow_logs(&p.id, FollowOptions::default()).await.unwrap();
    rt.client.write_input(&p.id, b"first\n", false).await.unwrap();
    let ev = tokio::time::timeout(WAIT, follow.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&ev, LogEvent::Log(e) if e.data == "first\n"), "{ev:?}");
    rt.client.write_input(&p.id, b"second\n", true).await.unwrap();
    let ev = tokio::time::timeout(WAIT, follow.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&ev, LogEvent::Log(e) if e.data == "second\n"), "{ev:?}");
    let ev = tokio::time::timeout(WAIT, follow.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&ev, LogEvent::Exit(i) if i.exit_code == Some(0)), "{ev:?}");
    assert!(tokio::time::timeout(WAIT, follow.next()).await.unwrap().is_none());
    rt.stop().await;
}

#[tokio::test]
async fn stdin_reaches_a_managed_cat_and_eof_ends_it() {
    let rt = TestRuntime::start().await;
    let p = rt.client.start_process(&CreateProcessRequest::command("cat", Vec::<String>::new())).await.unwrap();
    let w = rt.client.write_input(&p.id, b"hello stdin\n", false).await.unwrap();
    assert_eq!((w.bytes_written, w.closed), (12, false));
    let got = wait_for(WAIT, || async {
        let logs = rt.client.process_logs(&p.id, &LogsQuery::default()).await.unwrap();
        logs.entries.iter().any(|e| e.data == "hello stdin\n")
    })
    .await;
    assert!(got, "cat did not echo its input");
    // Non-UTF-8 input goes base64 and arrives byte for byte.
    rt.client.write_input(&p.id, &[0xff, b'\n'], false).await.unwrap();
    assert!(rt.client.close_input(&p.id).await.unwrap().closed);
    let info = wait_exited(&rt.client, &p.id).await;
    assert_eq!(info.exit_code, Some(0));
    let err = rt.client.write_input(&p.id, b"late", false).await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::Conflict), "{err}");
    rt.stop().await;
}

#[tokio::test]
async fn logs_filter_by_stream_and_tail() {
    let rt = TestRuntime::start().await;
    let p = rt.client.start_process(&CreateProcessRequest::shell("echo a; echo b >&2; echo c")).await.unwrap();
    wait_exited(&rt.client, &p.id).await;
    let all = rt.client.process_logs(&p.id, &LogsQuery::default()).await.unwrap();
    assert_eq!(all.entries.len(), 3);
    assert_eq!(all.status, ProcessStatus::Exited);
    assert!(!all.dropped);
    let q = LogsQuery { stream: Some(LogStreamFilter::Stdout), ..Default::default() };
    let out: Vec<bytes::Bytes> =
        rt.client.process_logs(&p.id, &q).await.unwrap().entries.into_iter().map(|e| e.data).collect();
    assert_eq!(out, vec!["a\n", "c\n"]);
    let q = LogsQuery { stream: Some(LogStreamFilter::Stderr), ..Default::default() };
    let err = rt.client.process_logs(&p.id, &q).await.unwrap().entries;
    assert_eq!((err.len(), &err[0].data[..], err[0].stream), (1, &b"b\n"[..], LogStream::Stderr));
    // Stdout and stderr are separate pipes: their interleaving is the order they were read, so the
    // tail is checked within one stream.
    let q = LogsQuery { tail: Some(1), stream: Some(LogStreamFilter::Stdout), ..Default::default() };
    let last = rt.client.process_logs(&p.id, &q).await.unwrap().entries;
    assert_eq!((last.len(), &last[0].data[..]), (1, &b"c\n"[..]));
    let q = LogsQuery { tail: Some(2), ..Default::default() };
    assert_eq!(rt.client.process_logs(&p.id, &q).await.unwrap().entries.len(), 2);
    let q = LogsQuery { after: Some(all.entries[0].seq), ..Default::default() };
    assert_eq!(rt.client.process_logs(&p.id, &q).await.unwrap().entries, all.entries[1..].to_vec());
    rt.stop().await;
}

#[tokio::test]
async fn logs_keep_at_most_the_configured_bytes() {
    let rt = TestRuntime::start().await;
    let update = ProcessLimitsUpdate { max_log_bytes_per_process: Some(2000), ..Default::default() };
    rt.client.set_process_config(update).await.unwrap();
    // Nearly 600 kB: many reads of the pipe (one read, however big, is kept whole as the newest entry).
    let p = rt.client.start_process(&CreateProcessRequest::shell("seq 1 100000")).await.unwrap();
    wait_exited(&rt.client, &p.id).await;
    let all: Vec<u8> = (1..=100000).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    let logs = rt.client.process_logs(&p.id, &LogsQuery::default()).await.unwrap();
    assert!(logs.dropped);
    let kept: Vec<u8> = logs.entries.iter().flat_map(|e| e.data.iter().copied()).collect();
    assert!(all.ends_with(&kept), "the newest output is kept, in order");
    assert_eq!(kept.len() as u64 + logs.dropped_stdout_bytes, all.len() as u64, "what is gone is counted");
    assert_eq!(logs.entries[0].offset, logs.dropped_stdout_bytes);
    rt.stop().await;
}

#[tokio::test]
async fn list_get_and_remove() {
    let rt = TestRuntime::start().await;
    let sleeper = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap();
    let quick = rt.client.start_process(&CreateProcessRequest::command("true", Vec::<String>::new())).await.unwrap();
    let list = rt.client.list_processes().await.unwrap();
    assert_eq!(list.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![sleeper.id.clone(), quick.id.clone()]);
    let got = rt.client.get_process(&sleeper.id).await.unwrap();
    assert_eq!((got.command.as_str(), got.args.clone(), got.pid), ("sleep", vec!["100".to_owned()], sleeper.pid));

    let err = rt.client.remove_process(&sleeper.id, false).await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::Conflict), "{err}");
    rt.client.remove_process(&sleeper.id, true).await.unwrap();
    assert!(!alive(sleeper.pid), "force removal kills the process");
    wait_exited(&rt.client, &quick.id).await;
    rt.client.remove_process(&quick.id, false).await.unwrap();
    assert!(rt.client.list_processes().await.unwrap().is_empty());
    let err = rt.client.get_process(&quick.id).await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::NotFound));
    rt.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let rt = TestRuntime::start().await;
    let c = &rt.client;
    for id in ["proc_999", "nope", "a b"] {
        let errs = [
            c.get_process(id).await.unwrap_err(),
            c.process_logs(id, &LogsQuery::default()).await.unwrap_err(),
            c.follow_logs(id, FollowOptions::default()).await.unwrap_err(),
            c.write_input(id, b"x", false).await.unwrap_err(),
            c.signal_process(id, "TERM").await.unwrap_err(),
            c.kill_process(id, None).await.unwrap_err(),
            c.remove_process(id, true).await.unwrap_err(),
        ];
        for e in errs {
            assert_eq!(kind(&e), Some(ProblemKind::NotFound), "{id}: {e}");
        }
    }
    let err = c.start_process(&CreateProcessRequest::command("no-such-program-sbx", Vec::<String>::new())).await;
    assert_eq!(err.unwrap_err().status(), Some(400));
    rt.stop().await;
}

#[tokio::test]
async fn concurrency_limit_is_429() {
    let rt = TestRuntime::start().await;
    let limits = rt
        .client
        .set_process_config(ProcessLimitsUpdate { max_concurrent_processes: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(limits.max_concurrent_processes, 1);
    let first = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap();
    let err = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap_err();
    assert_eq!((kind(&err), err.status()), (Some(ProblemKind::LimitReached), Some(429)), "{err}");
    rt.client.kill_process(&first.id, Some(Duration::from_secs(5))).await.unwrap();
    // An exited process no longer counts.
    let second = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap();
    rt.client.kill_process(&second.id, None).await.unwrap();
    rt.stop().await;
}

#[tokio::test]
async fn config_round_trips_and_rejects_bad_values() {
    let rt = TestRuntime::start().await;
    let c = &rt.client;
    assert_eq!(c.process_config().await.unwrap(), ProcessLimits::default());
    let partial = c
        .set_process_config(ProcessLimitsUpdate { max_output_bytes: Some(1234), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(partial, ProcessLimits { max_output_bytes: 1234, ..ProcessLimits::default() });
    assert_eq!(c.process_config().await.unwrap(), partial);

    let full = ProcessLimits {
        max_concurrent_processes: 7,
        default_run_timeout_ms: 1000,
        max_run_timeout_ms: 2000,
        max_output_bytes: 4096,
        max_log_bytes_per_process: 8192,
    };
    assert_eq!(c.set_process_config(full.clone()).await.unwrap(), full);

    // POST does the same as PUT.
    let resp = c
        .request(reqwest::Method::POST, "/v1/processes/config")
        .json(&serde_json::json!({"maxConcurrentProcesses": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(c.process_config().await.unwrap().max_concurrent_processes, 8);

    let bad = [
        ProcessLimitsUpdate { max_concurrent_processes: Some(0), ..Default::default() },
        ProcessLimitsUpdate { max_output_bytes: Some(0), ..Default::default() },
        ProcessLimitsUpdate { default_run_timeout_ms: Some(5000), ..Default::default() }, // > max 2000
    ];
    for b in bad {
        let err = c.set_process_config(b.clone()).await.unwrap_err();
        assert_eq!(kind(&err), Some(ProblemKind::BadRequest), "{b:?}: {err}");
    }
    let resp = c
        .request(reqwest::Method::PUT, "/v1/processes/config")
        .json(&serde_json::json!({"maxConcurrentProcesses": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(c.process_config().await.unwrap().max_concurrent_processes, 8, "bad values change nothing");

    // The run timeout limit is enforced.
    let err = c.run(&RunRequest { timeout_ms: Some(2001), ..RunRequest::shell("true") }).await.unwrap_err();
    assert_eq!(kind(&err), Some(ProblemKind::BadRequest));
    rt.stop().await;
}

#[tokio::test]
async fn openapi_documents_every_process_route() {
    let rt = TestRuntime::start().await;
    let doc = rt.client.openapi().await.unwrap();
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/v1/processes/run", &["post"][..]),
        ("/v1/processes", &["get", "post"]),
        ("/v1/processes/config", &["get", "put", "post"]),
        ("/v1/processes/{id}", &["get", "delete"]),
        ("/v1/processes/{id}/logs", &["get"]),
        ("/v1/processes/{id}/input", &["post"]),
        ("/v1/processes/{id}/signal", &["post"]),
        ("/v1/processes/{id}/stop", &["post"]),
        ("/v1/processes/{id}/kill", &["post"]),
        ("/v1/pty", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} missing from the OpenAPI document");
        }
    }
    assert!(paths["/v1/processes/{id}"]["get"]["responses"]["404"].is_object());
    assert!(paths["/v1/processes"]["post"]["responses"]["429"].is_object());
    // Every schema these routes refer to is in the document (query parameters' enums included).
    let schemas = &doc["components"]["schemas"];
    for (path, item) in paths.as_object().unwrap() {
        if !(path.starts_with("/v1/processes") || path == "/v1/pty") {
            continue;
        }
        let text = item.to_string();
        for r in text.split("#/components/schemas/").skip(1) {
            let name: String = r.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            assert!(schemas[&name].is_object(), "{path} refers to missing schema {name}");
        }
    }
    for name in ["PtyClientMessage", "PtyServerMessage", "RunRequest", "ProcessInfo", "LogEntry"] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    rt.stop().await;
}

#[tokio::test]
async fn shutdown_kills_managed_processes() {
    let rt = TestRuntime::start().await;
    let p = rt.client.start_process(&CreateProcessRequest::shell("sleep 100 & sleep 100; wait")).await.unwrap();
    assert!(alive(p.pid));
    rt.stop().await;
    assert!(wait_for(WAIT, || async { !alive(p.pid) }).await, "managed process survived shutdown");
}

/// Fails today: `RunningServer::shutdown` (server/mod.rs) waits for in-flight responses before it calls
/// `kill_all`, and a follow of a running process is an in-flight response until the process exits.
/// Calling `kill_all` before awaiting the serve tasks fixes it (the follow then ends with its exit event).
#[tokio::test]
async fn shutdown_ends_open_log_follows() {
    let rt = TestRuntime::start().await;
    let p = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap();
    let mut follow = rt.client.follow_logs(&p.id, FollowOptions::default()).await.unwrap();
    let reader = tokio::spawn(async move { while follow.next().await.is_some() {} });
    tokio::time::timeout(WAIT, rt.stop()).await.expect("shutdown does not wait forever for a log follower");
    let _ = tokio::time::timeout(WAIT, reader).await;
    assert!(!alive(p.pid));
}

/// The client resumes a broken follow from the last entry it got (`Last-Event-ID`), against a fake
/// server whose first stream ends before the exit event.
#[tokio::test]
async fn follow_logs_reconnects_and_resumes_after_the_last_entry() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    let app = axum::Router::new().route(
        "/v1/processes/{id}/logs",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                use sbx_agent::api::process::frame;
                // Binary frames, as the runtime sends them to the typed client.
                let entry = |seq: u64, data: &[u8]| {
                    let mut f = vec![frame::STDOUT];
                    f.extend_from_slice(&((frame::DATA_PREFIX_LEN + data.len()) as u32).to_be_bytes());
                    f.extend_from_slice(&seq.to_be_bytes());
                    f.extend_from_slice(&(seq - 1).to_be_bytes());
                    f.extend_from_slice(&0u64.to_be_bytes());
                    f.extend_from_slice(data);
                    f
                };
                let body = if n == 0 {
                    entry(1, b"a") // ...and the stream ends without an exit event
                } else {
                    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
                    assert_eq!(last, Some("1"), "the reconnect resumes after the last entry");
                    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
                    assert_eq!(accept, Some(frame::MEDIA_TYPE));
                    let exit = br#"{"id":"proc_1","pid":1,"command":"x","args":[],"cwd":"/","status":"exited","exitCode":0,"signal":null,"startedAtMs":0,"exitedAtMs":1}"#;
                    let mut body = entry(2, b"b");
                    body.push(frame::EXIT);
                    body.extend_from_slice(&(exit.len() as u32).to_be_bytes());
                    body.extend_from_slice(exit);
                    body
                };
                ([("content-type", frame::MEDIA_TYPE)], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(&format!("http://{addr}"), None).unwrap();
    let events: Vec<LogEvent> =
        client.follow_logs("proc_1", FollowOptions::default()).await.unwrap().map(Result::unwrap).collect().await;
    let data: Vec<bytes::Bytes> =
        events.iter().filter_map(|e| if let LogEvent::Log(l) = e { Some(l.data.clone()) } else { None }).collect();
    assert_eq!(data, vec!["a", "b"]);
    assert!(matches!(events.last(), Some(LogEvent::Exit(i)) if i.exit_code == Some(0)));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
