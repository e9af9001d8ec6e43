//! `/v1/pty`: a terminal over WebSocket.

use std::time::Duration;

use futures::SinkExt;
use sbx_agent::api::process::{CreateProcessRequest, ProcessLimitsUpdate};
use sbx_agent::api::ProblemKind;
use sbx_agent::client::{Client, PtyEvent, PtyOptions, PtySession};
use sbx_tests::{wait_for, TestRuntime};
use tokio_tungstenite::tungstenite::Message;

use crate::processes::alive;

const WAIT: Duration = Duration::from_secs(10);

/// Reads output into `out` until it contains `needle`; panics on exit, close or timeout.
async fn read_until(pty: &mut PtySession, out: &mut String, needle: &str) {
    let found = tokio::time::timeout(WAIT, async {
        while !out.contains(needle) {
            match pty.next_event().await {
                Some(Ok(PtyEvent::Output(b))) => out.push_str(&String::from_utf8_lossy(&b)),
                other => panic!("expected output containing {needle:?}, got {other:?}; output so far: {out:?}"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {needle:?}; output so far: {out:?}");
}

/// Reads until the exit frame, then expects the socket to close.
async fn read_exit(pty: &mut PtySession) -> (Option<i32>, Option<String>) {
    let exit = tokio::time::timeout(WAIT, async {
        loop {
            match pty.next_event().await {
                Some(Ok(PtyEvent::Output(_))) => continue,
                Some(Ok(PtyEvent::Exit { exit_code, signal })) => return (exit_code, signal),
                other => panic!("expected the exit frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("exit frame in time");
    let after = tokio::time::timeout(WAIT, pty.next_event()).await.expect("close in time");
    assert!(after.is_none(), "the socket closes after the exit frame: {after:?}");
    exit
}

fn sh() -> PtyOptions {
    PtyOptions::command("sh", Vec::<String>::new())
}

#[tokio::test]
async fn pty_runs_a_shell_resizes_and_reports_the_exit_code() {
    let rt = TestRuntime::start().await;
    let mut pty = rt.client.pty(&sh().size(80, 24)).await.unwrap();
    let mut out = String::new();
    // printf's output differs from the echoed command line, so the match is on real output.
    pty.send_input("printf 'hello-%s\\n' pty\n").await.unwrap();
    read_until(&mut pty, &mut out, "hello-pty").await;

    pty.send_input("stty size | tr ' ' x\n").await.unwrap();
    read_until(&mut pty, &mut out, "24x80").await;
    pty.resize(100, 30).await.unwrap();
    pty.send_input("stty size | tr ' ' x\n").await.unwrap();
    read_until(&mut pty, &mut out, "30x100").await;

    // It is a real terminal.
    pty.send_input("test -t 0 && echo is-a-tty | tr a-z A-Z\n").await.unwrap();
    read_until(&mut pty, &mut out, "IS-A-TTY").await;

    pty.send_input("exit 7\n").await.unwrap();
    assert_eq!(read_exit(&mut pty).await, (Some(7), None));
    rt.stop().await;
}

#[tokio::test]
async fn pty_takes_json_input_and_reports_bad_control_messages() {
    let rt = TestRuntime::start().await;
    let opts = PtyOptions { env: vec![("SBX_PTY_TEST".into(), "from-env".into())], ..sh() };
    let pty = rt.client.pty(&opts).await.unwrap();
    let mut ws = pty.into_inner();
    ws.send(Message::text(r#"{"type":"bogus"}"#)).await.unwrap();
    ws.send(Message::text(r#"{"type":"input","data":"echo \"$SBX_PTY_TEST\" | tr a-z A-Z\n"}"#)).await.unwrap();
    let mut out = String::new();
    let mut saw_error = false;
    let done = tokio::time::timeout(WAIT, async {
        while !(out.contains("FROM-ENV") && saw_error) {
            match futures::StreamExt::next(&mut ws).await {
                Some(Ok(Message::Binary(b))) => out.push_str(&String::from_utf8_lossy(&b)),
                Some(Ok(Message::Text(t))) => {
                    assert!(t.contains(r#""type":"error""#), "{t}");
                    saw_error = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(done.is_ok(), "output {out:?}, error frame seen: {saw_error}");
    rt.stop().await;
}

#[tokio::test]
async fn pty_exit_by_signal_and_cwd() {
    let rt = TestRuntime::start().await;
    let dir = tempfile::tempdir().unwrap();
    let canon = std::fs::canonicalize(dir.path()).unwrap();
    let opts = PtyOptions { cwd: Some(canon.to_string_lossy().into_owned()), ..sh() };
    let mut pty = rt.client.pty(&opts).await.unwrap();
    let mut out = String::new();
    pty.send_input("pwd | tr / :\n").await.unwrap();
    read_until(&mut pty, &mut out, &canon.to_string_lossy().replace('/', ":")).await;
    pty.send_input("kill -KILL $$\n").await.unwrap();
    assert_eq!(read_exit(&mut pty).await, (None, Some("KILL".into())));
    rt.stop().await;
}

#[tokio::test]
async fn closing_the_socket_hangs_up_the_terminal() {
    let rt = TestRuntime::start().await;
    let mut pty = rt.client.pty(&sh()).await.unwrap();
    let mut out = String::new();
    pty.send_input("printf 'pid=%s.\\n' $$\n").await.unwrap();
    read_until(&mut pty, &mut out, ".\r\n").await;
    let pid: u32 = out
        .split("pid=")
        .filter_map(|s| s.split('.').next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    assert!(alive(pid));
    pty.close().await.unwrap();
    drop(pty);
    assert!(wait_for(WAIT, || async { !alive(pid) }).await, "the shell survived the closed socket");
    rt.stop().await;
}

#[tokio::test]
async fn pty_counts_towards_the_process_limit() {
    let rt = TestRuntime::start().await;
    let one = ProcessLimitsUpdate { max_concurrent_processes: Some(1), ..Default::default() };
    rt.client.set_process_config(one).await.unwrap();
    let mut pty = rt.client.pty(&sh()).await.unwrap();
    let err = rt.client.start_process(&CreateProcessRequest::command("sleep", ["100"])).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some(ProblemKind::LimitReached), "{err}");
    let err = rt.client.pty(&sh()).await.unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    pty.send_input("exit 0\n").await.unwrap();
    assert_eq!(read_exit(&mut pty).await, (Some(0), None));
    // The slot is released once the terminal is gone.
    let c = &rt.client;
    let freed = wait_for(WAIT, || async {
        match c.start_process(&CreateProcessRequest::command("true", Vec::<String>::new())).await {
            Ok(_) => true,
            Err(e) if e.status() == Some(429) => false,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    assert!(freed, "the terminal's slot was not released");
    rt.stop().await;
}

#[tokio::test]
async fn pty_refuses_bad_requests_and_needs_the_token() {
    let rt = TestRuntime::start().await;
    let err = rt.client.pty(&PtyOptions::command("no-such-program-sbx", Vec::<String>::new())).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("cannot start `no-such-program-sbx`"), "{err}");
    let err = rt.client.pty(&sh().size(0, 24)).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    let anonymous = Client::new(&rt.url(), None).unwrap();
    let err = anonymous.pty(&sh()).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some(ProblemKind::Unauthorized), "{err}");

    // A plain GET (no upgrade) is a clear 400, not a hang.
    let resp = rt.client.request(reqwest::Method::GET, "/v1/pty").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    rt.stop().await;
}

#[tokio::test]
async fn shutdown_kills_open_terminals() {
    let rt = TestRuntime::start().await;
    let mut pty = rt.client.pty(&sh()).await.unwrap();
    let mut out = String::new();
    pty.send_input("printf 'pid=%s.\\n' $$\n").await.unwrap();
    read_until(&mut pty, &mut out, ".\r\n").await;
    let pid: u32 = out
        .split("pid=")
        .filter_map(|s| s.split('.').next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    rt.stop().await;
    assert!(wait_for(WAIT, || async { !alive(pid) }).await, "the terminal survived shutdown");
}
