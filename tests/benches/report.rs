//! `report.html` benchmark: the report of a run of 1,000 tasks (each with a transcript of a few dozen
//! events, a diff and a check log; one in ten failed), written by `sbx runs report` and opened from
//! disk in headless Chromium. Prints how long writing it, opening it (until the table is drawn),
//! filtering it by status and by name, and opening one task's diff take (the target: open and
//! filter in under a second). Never fails on time.
//!
//! Run: `cargo bench -p sbx-tests --bench report` (or, quicker to build, `cargo test -p sbx-tests
//! --bench report`, which runs it against the debug `sbx`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TASKS: usize = 1000;

fn phases(i: usize) -> Value {
    let names = ["create", "runtime_upload", "start", "healthy", "workspace", "setup", "agent_install", "agent", "diff", "check", "down"];
    Value::Array(names.iter().enumerate().map(|(k, n)| json!({"name": n, "durationMs": 50 + (i * 37 + k * 101) % 4000, "outcome": "ok"})).collect())
}

fn events(i: usize) -> String {
    let ev = |seq: usize, ty: &str, data: Value| {
        json!({"sessionId": format!("s{i}"), "sequence": seq, "time": "2026-12-02T10:00:00Z", "source": "agent", "type": ty, "data": data})
            .to_string()
    };
    let mut lines = vec![
        ev(1, "session.started", json!({"agent": "claude", "cwd": "/work"})),
        ev(2, "turn.started", json!({"turnId": "turn_1"})),
        ev(
            3,
            "item.completed",
            json!({"itemId": "item_1", "kind": "message", "role": "user", "status": "completed", "content": [{"type": "text", "text": format!("fix issue {i}")}]}),
        ),
    ];
    let mut seq = 4;
    for k in 0..8 {
        lines.push(ev(seq, "permission.requested", json!({"permissionId": format!("perm_{k}"), "toolName": "Bash", "kind": "execute", "title": "run `cargo test`", "input": {"command": "cargo test"}})));
        lines.push(ev(seq + 1, "permission.resolved", json!({"permissionId": format!("perm_{k}"), "decision": "allow", "by": "policy"})));
        let call = json!([{"type": "tool_call", "name": "Bash", "call_id": format!("c{k}"), "arguments": {"command": "cargo test --all"}}]);
        lines.push(ev(
            seq + 2,
            "item.completed",
            json!({"itemId": format!("item_{}", 10 + k), "kind": "tool_call", "role": "assistant", "status": "completed", "content": call}),
        ));
        let out = "test result: ok. 42 passed; 0 failed\n".repeat(20);
        let result = json!([{"type": "tool_result", "call_id": format!("c{k}"), "output": out, "is_error": false}]);
        lines.push(ev(
            seq + 3,
            "item.completed",
            json!({"itemId": format!("item_{}", 30 + k), "kind": "tool_result", "role": "tool", "status": "completed", "content": result}),
        ));
        for d in 0..5 {
            lines.push(ev(seq + 4 + d, "item.delta", json!({"itemId": "item_99", "delta": "thinking "})));
        }
        seq += 9;
    }
    lines.push(ev(seq, "item.completed", json!({"itemId": "item_99", "kind": "message", "role": "assistant", "status": "completed", "content": [{"type": "text", "text": "Done: the tests pass."}]})));
    let usage = json!({"inputTokens": 12000 + i, "outputTokens": 800, "cacheReadTokens": 4000, "cacheWriteTokens": 0});
    lines.push(ev(
        seq + 1,
        "turn.completed",
        json!({"turnId": "turn_1", "outcome": "completed", "usage": usage, "costUsd": 0.042, "durationMs": 30000}),
    ));
    lines.push(ev(seq + 2, "session.ended", json!({"reason": "completed", "terminatedBy": "user"})));
    lines.join("\n") + "\n"
}

fn diff(i: usize) -> String {
    let mut d =
        format!("diff --git a/src/m{i}.rs b/src/m{i}.rs\nindex 1111111..2222222 100644\n--- a/src/m{i}.rs\n+++ b/src/m{i}.rs\n@@ -1,40 +1,40 @@\n");
    for k in 0..40 {
        d.push_str(&format!(" fn f{k}() -> u32 {{ {k} }}\n-let old_{k} = \"value {k}\"; // old\n+let new_{k} = \"value {k}\"; // new\n"));
    }
    d
}

fn results(dir: &Path) {
    let mut tasks = Vec::new();
    let t0: u64 = 1_764_669_600_000;
    for i in 0..TASKS {
        let agent = ["claude", "codex"][i % 2];
        let provider = ["docker", "e2b", "daytona", "modal"][i % 4];
        let name = format!("task-{i:04}.{agent}");
        let failed = i % 10 == 3;
        let td = dir.join(&name);
        std::fs::create_dir_all(&td).unwrap();
        std::fs::write(td.join("events.jsonl"), events(i)).unwrap();
        let patch = diff(i);
        std::fs::write(td.join("diff.patch"), &patch).unwrap();
        std::fs::write(td.join("check.log"), format!("$ cargo test\n{}(exit {})\n", "running 42 tests\n".repeat(30), if failed { 101 } else { 0 }))
            .unwrap();
        tasks.push(json!({
            "name": name, "status": if failed { "failed" } else { "passed" },
            "message": if failed { json!("the check exited with 101 (see check.log)") } else { Value::Null },
            "agent": agent, "provider": provider, "sandbox": format!("rbench-{i}"),
            "attempts": 1, "phases": phases(i), "startedAtMs": t0 + (i as u64 / 16) * 40_000 + (i as u64 % 16) * 50, "durationMs": 20_000 + (i * 53) % 20_000,
            "checkExitCode": if failed { 101 } else { 0 }, "usage": {"inputTokens": 12000 + i, "outputTokens": 800, "cacheReadTokens": 4000, "cacheWriteTokens": 0},
            "costUsd": 0.042, "events": 80, "artifacts": [], "diff": {"path": format!("{name}/diff.patch"), "bytes": patch.len(), "inlined": true},
            "kept": false, "agentInstall": null,
        }));
    }
    let failed = tasks.iter().filter(|t| t["status"] == "failed").count();
    let summary = json!({
        "runId": "20261202-100000-bench", "config": "sbx.yaml", "startedAt": t0 / 1000, "durationMs": 2_600_000, "interrupted": false,
        "total": TASKS, "passed": TASKS - failed, "failed": failed, "errors": 0, "notRun": [], "tasks": tasks,
    });
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).unwrap();
}

/// Runs `js` (an async function body returning milliseconds) in the page.
async fn timed(b: &mut sbx_tests::browser::Browser, js: &str) -> f64 {
    b.eval(&format!("(async () => {{ {js} }})()")).await.expect("timed step").as_f64().expect("milliseconds")
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("results");
    std::fs::create_dir_all(&res).unwrap();
    results(&res);
    let sbx = sbx_tests::bin("sbx");
    let t = Instant::now();
    let out =
        Command::new(&sbx).args(["runs", "report"]).arg(&res).env("XDG_STATE_HOME", dir.path().join("state")).output().expect("sbx runs report");
    let write = t.elapsed();
    assert!(out.status.success(), "sbx runs report: {}", String::from_utf8_lossy(&out.stderr));
    let report = res.join("report.html");
    let size = std::fs::metadata(&report).unwrap().len();

    let mut b = sbx_tests::browser::Browser::launch(1400, 1000).await.expect("headless Chromium (install/test-deps.sh installs it)");
    let t = Instant::now();
    b.goto(&sbx_tests::browser::file_url(&report)).await.unwrap();
    b.wait_for("document.body.dataset.ready === '1'", Duration::from_secs(60)).await.unwrap();
    let open_wall = t.elapsed();
    let ready = b.eval("performance.getEntriesByName('sbx-ready')[0].startTime").await.unwrap().as_f64().unwrap_or(f64::NAN);
    // Each step waits until the table shows the new count, then forces layout.
    let until = |want: &str| {
        format!("await new Promise(r => {{ const f = () => document.querySelector('#shown')?.textContent.startsWith('{want}') ? r() : requestAnimationFrame(f); f(); }}); document.body.offsetHeight; return performance.now() - t0;")
    };
    let by_status =
        timed(&mut b, &format!("const t0 = performance.now(); document.querySelector('button[data-status=failed]').click(); {}", until("100 of")))
            .await;
    let back =
        timed(&mut b, &format!("const t0 = performance.now(); document.querySelector('button[data-status=\"\"]').click(); {}", until("1000 of")))
            .await;
    let by_name = timed(
        &mut b,
        &format!(
            "const q = document.querySelector('#q'); const t0 = performance.now(); q.value = 'task-09'; q.dispatchEvent(new Event('input')); {}",
            until("100 of")
        ),
    )
    .await;
    let detail = timed(
        &mut b,
        "const t0 = performance.now(); location.hash = '#task=task-0003.codex&view=diff'; \
         await new Promise(r => { const f = () => document.querySelector('#view-diff .diff') ? r() : requestAnimationFrame(f); f(); }); \
         document.body.offsetHeight; return performance.now() - t0;",
    )
    .await;
    let heap = b.eval("performance.memory ? performance.memory.usedJSHeapSize : null").await.unwrap();
    let errors = b.console_errors().await.unwrap();
    b.close().await;

    println!("report.html of {TASKS} tasks (one in ten failed; ~30 shown events, a 120-line diff and a check log each)");
    println!("  sbx runs report (write):        {:.0} ms, {:.1} MiB", write.as_secs_f64() * 1000.0, size as f64 / 1048576.0);
    println!(
        "  open until the table is drawn:  {ready:.0} ms in the page ({:.0} ms wall, with the DevTools round trips)",
        open_wall.as_secs_f64() * 1000.0
    );
    println!("  filter by status (100 rows):    {by_status:.0} ms");
    println!("  back to all 1000 rows:          {back:.0} ms");
    println!("  filter by name (100 rows):      {by_name:.0} ms");
    println!("  open a task's diff:             {detail:.0} ms");
    println!("  open + first filter:            {:.0} ms (target < 1000 ms)", ready + by_status);
    if let Some(h) = heap.as_f64() {
        println!("  JS heap after these:            {:.1} MiB", h / 1048576.0);
    }
    if !errors.is_empty() {
        println!("  console errors: {errors:?}");
    }
}
