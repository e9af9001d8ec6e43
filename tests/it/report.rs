//! `report.html` of a real `sbx run` (mock agent on the local provider, three tasks, one failing),
//! loaded from disk in headless Chromium: the right rows, the failing task's diff with colouring, the
//! transcript, filters and views that survive a reload, data that cannot break out of its script
//! element, bytes that are not UTF-8 shown lossily while the files keep them, no console error and
//! no request but the file itself. Fails when Chromium is missing (install/test-deps.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sbx_tests::bin;
use sbx_tests::browser::{file_url, Browser};
use serde_json::{json, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sbx(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("sbx"));
    c.args(args)
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("SBX_RUNTIME")
        .env("DOCKER_HOST", format!("unix://{}/no-docker.sock", dir.display()))
        .stdin(Stdio::null());
    c
}

/// Three tasks: two pass; `broken` writes Rust source holding `</script>` and fails its check, whose
/// output has bytes that are not UTF-8.
fn three_tasks(dir: &Path) {
    std::fs::create_dir_all(dir.join("repo/src")).unwrap();
    std::fs::write(dir.join("repo/README.md"), "hello\n").unwrap();
    std::fs::write(dir.join("repo/src/lib.rs"), "pub fn old() {}\n").unwrap();
    let y = r#"version: 1
defaults:
  provider: local
  agent: mock
  concurrency: 3
tasks:
  - name: add-greeting
    workspace: ./repo
    prompt: "write greeting.py print('hi')"
    check: test -f greeting.py
  - name: fix-readme
    workspace: ./repo
    prompt: "write README.md hello world"
    check: grep -q world README.md
  - name: broken
    workspace: ./repo
    prompt: |
      write src/lib.rs pub fn broken() -> &'static str { "</script><script>window.pwned = 1</script>" }
      echo I tried
    check: printf 'bad bytes \377\376 here\n'; test -f out/never.txt
"#;
    std::fs::write(dir.join("sbx.yaml"), y).unwrap();
}

fn results_dir(dir: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("sbx-results")).expect("sbx-results").map(|e| e.unwrap().path()).collect();
    runs.sort();
    runs.pop().expect("a run directory")
}

/// `[[task, status text], …]` of the table's rows.
const ROWS: &str = "[...document.querySelectorAll('#tasks tbody tr')].map(r => [r.dataset.task, r.querySelector('.st').textContent])";

/// Waits until the table shows `want` (a filter re-renders on `hashchange`, after the hash is set).
async fn rows_become(b: &mut Browser, want: serde_json::Value) {
    let expr = format!("JSON.stringify({ROWS}) === {}", serde_json::to_string(&want.to_string()).unwrap());
    let _ = b.wait_for(&expr, Duration::from_secs(5)).await;
    assert_eq!(b.eval(ROWS).await.unwrap(), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_of_a_real_run_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    three_tasks(dir.path());
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "one failing check makes the run fail: {}", text(&out.stderr));
    let res = results_dir(dir.path());
    let report = res.join("report.html");
    assert!(report.exists(), "report.html beside summary.json: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("report.html"), "the run's last line names the report: {}", text(&out.stderr));
    let check_log = std::fs::read(res.join("broken/check.log")).unwrap();
    assert!(check_log.windows(2).any(|w| w == b"\xff\xfe"), "check.log keeps the bytes as they were");
    let md = std::fs::read_to_string(res.join("summary.md")).unwrap();
    assert!(md.contains("[report.html](report.html)"), "summary.md links the report: {md}");

    // `sbx runs show --json` knows where the report is; `--open` hands its file URL to $BROWSER.
    let run_id = res.file_name().unwrap().to_str().unwrap().to_owned();
    let show = sbx(dir.path(), &["runs", "show", &run_id, "--json"]).output().unwrap();
    let show: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(Path::new(show["report"].as_str().unwrap()), std::path::absolute(&report).unwrap());
    let opened = dir.path().join("opened");
    let script = dir.path().join("browser.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$1\" > {}.tmp && mv {}.tmp {}\n", opened.display(), opened.display(), opened.display()))
        .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = sbx(dir.path(), &["runs", "show", &run_id, "--open"]).env("BROWSER", &script).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(sbx_tests::wait_for(Duration::from_secs(10), || async { opened.exists() }).await, "$BROWSER was run");
    assert_eq!(std::fs::read_to_string(&opened).unwrap().trim(), file_url(&report));

    let mut b = Browser::launch(1400, 1000).await.expect("headless Chromium (install/test-deps.sh installs Debian's chromium)");
    let url = file_url(&report);
    b.goto(&url).await.unwrap();
    b.wait_for("document.body.dataset.ready === '1'", Duration::from_secs(10)).await.unwrap();

    // The rows, sorted by name as in summary.json, with their statuses.
    let rows = b.eval(ROWS).await.unwrap();
    assert_eq!(rows, json!([["add-greeting", "passed"], ["broken", "failed"], ["fix-readme", "passed"]]));
    let head = b.eval("document.querySelector('#head').textContent").await.unwrap();
    assert!(head.as_str().unwrap().contains("2 of 3 passed"), "{head}");

    // The status filter, by a real click.
    b.click("button[data-status=failed]").await.unwrap();
    b.wait_for("location.hash.includes('status=failed')", Duration::from_secs(5)).await.unwrap();
    rows_become(&mut b, json!([["broken", "failed"]])).await;

    // The failing task's diff: the file, its added line coloured, `</script>` shown as text.
    b.click("tr[data-task=broken]").await.unwrap();
    b.wait_for("!document.querySelector('#detail').hidden", Duration::from_secs(5)).await.unwrap();
    b.click("button[data-view=diff]").await.unwrap();
    b.wait_for("document.querySelector('#view-diff')", Duration::from_secs(5)).await.unwrap();
    let diff = b.eval("document.querySelector('#view-diff .diff[data-file=\"src/lib.rs\"]').textContent").await.unwrap();
    let diff = diff.as_str().expect("a diff section for src/lib.rs");
    assert!(diff.contains("-pub fn old() {}") && diff.contains("+pub fn broken()"), "{diff}");
    assert!(diff.contains("\"</script><script>window.pwned = 1</script>\""), "the data's `</script>` is text: {diff}");
    assert_eq!(b.eval("typeof window.pwned").await.unwrap(), json!("undefined"), "nothing in the data ran");
    let coloured = b.eval("[...document.querySelectorAll('#view-diff .l.a .tk')].map(e => e.textContent)").await.unwrap();
    assert!(coloured.as_array().unwrap().contains(&json!("fn")), "Rust keywords are coloured: {coloured}");

    // A reload keeps the filter, the task and the view (they are in the URL's hash).
    b.reload().await.unwrap();
    b.wait_for("document.body.dataset.ready === '1'", Duration::from_secs(10)).await.unwrap();
    let hash = b.eval("location.hash").await.unwrap();
    for part in ["status=failed", "task=broken", "view=diff"] {
        assert!(hash.as_str().unwrap().contains(part), "{hash}");
    }
    rows_become(&mut b, json!([["broken", "failed"]])).await;
    assert_eq!(b.eval("!!document.querySelector('#view-diff .diff[data-file=\"src/lib.rs\"]')").await.unwrap(), json!(true));

    // Check output: exit code, the log with its non-UTF-8 bytes replaced, and a note saying so.
    b.click("button[data-view=logs]").await.unwrap();
    b.wait_for("document.querySelector('#view-logs')", Duration::from_secs(5)).await.unwrap();
    let logs = b.eval("document.querySelector('#view-logs').textContent").await.unwrap();
    let logs = logs.as_str().unwrap();
    assert!(
        logs.contains("check exit code: 1") && logs.contains("bad bytes \u{fffd}\u{fffd} here") && logs.contains("holds the exact bytes"),
        "{logs}"
    );

    // The transcript: the prompt, the tool call with its input, the policy's permission, the answer.
    b.click("button[data-view=transcript]").await.unwrap();
    b.wait_for("document.querySelector('#view-transcript')", Duration::from_secs(5)).await.unwrap();
    let tr = b.eval("document.querySelector('#view-transcript').innerText").await.unwrap();
    let tr = tr.as_str().unwrap();
    for want in [
        "USER",
        "TOOL CALL",
        "\"path\": \"src/lib.rs\"",
        "PERMISSION ALLOW",
        "by policy",
        "TOOL RESULT",
        "wrote src/lib.rs",
        "I tried",
        "turn_1 completed",
    ] {
        assert!(tr.contains(want), "transcript lacks {want:?}: {tr}");
    }

    // Back to everything; the search box filters by name as one types.
    b.click("button[data-close]").await.unwrap();
    b.wait_for("document.querySelector('#detail').hidden", Duration::from_secs(5)).await.unwrap();
    b.click("button[data-status='']").await.unwrap();
    b.wait_for("document.querySelectorAll('#tasks tbody tr').length === 3", Duration::from_secs(5)).await.unwrap();
    b.click("#q").await.unwrap();
    b.type_text("greet").await.unwrap();
    b.wait_for("document.querySelectorAll('#tasks tbody tr').length === 1", Duration::from_secs(5)).await.unwrap();
    rows_become(&mut b, json!([["add-greeting", "passed"]])).await;
    b.eval("document.querySelector('#q').value = ''; document.querySelector('#q').dispatchEvent(new Event('input'))").await.unwrap();

    // The matrix (mock × local: 2 of 3) and the timeline (three bars).
    b.click("button[data-tab=matrix]").await.unwrap();
    let cell = b.wait_for("document.querySelector('#matrix td.cell')?.textContent", Duration::from_secs(5)).await.unwrap();
    assert!(cell.as_str().unwrap().starts_with("2 / 3"), "{cell}");
    b.click("button[data-tab=timeline]").await.unwrap();
    let bars = b.wait_for("document.querySelectorAll('#timeline .tl-row').length", Duration::from_secs(5)).await.unwrap();
    assert_eq!(bars, json!(3));

    let errors = b.console_errors().await.unwrap();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let requests = b.requests().await.unwrap();
    let foreign: Vec<&String> = requests.iter().filter(|u| !u.starts_with("file://")).collect();
    assert!(foreign.is_empty(), "requests other than the file itself: {foreign:?}");
    assert!(requests.iter().any(|u| u.starts_with(&url)), "the report itself was loaded: {requests:?}");
    b.close().await;

    // What `sbx runs show` prints, and what `--open` says when the page is gone; `sbx runs report`
    // writes the same page again from the files.
    let abs = std::path::absolute(&res).unwrap().display().to_string();
    let clean = |s: String| s.replace(&abs, "<RESULTS>").replace(&run_id, "<RUN>");
    let shown = sbx(dir.path(), &["runs", "show", &run_id]).output().unwrap();
    let page = std::fs::read(&report).unwrap();
    std::fs::remove_file(&report).unwrap();
    let missing = sbx(dir.path(), &["runs", "show", &run_id, "--open"]).env("BROWSER", &script).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    insta::assert_snapshot!("runs_show", format!("{}--- --open without report.html:\n{}", clean(text(&shown.stdout)), clean(text(&missing.stderr))));
    let again = sbx(dir.path(), &["runs", "report", &abs]).output().unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(&report).unwrap(), page, "`sbx runs report` writes the same page from the files");
}
