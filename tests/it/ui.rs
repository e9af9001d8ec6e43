//! `sbx ui` in headless Chromium, against a local sandbox with the mock agent: the page shows a
//! session's events as they arrive, answering its permission prompt in the page lets the turn
//! continue, a reload replays the session without gaps or repeats, a file uploaded in the page lands
//! in the sandbox byte for byte, the terminal echoes a typed command; no console error, no request
//! off 127.0.0.1. `--read-only` refuses writes and the terminal; the token and the Host are checked.
//! Fails when Chromium is missing (install/test-deps.sh installs it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sbx_tests::bin;
use sbx_tests::browser::Browser;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;

fn sbx(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("sbx"));
    c.args(args).current_dir(dir).env("XDG_STATE_HOME", dir.join("state")).env("NO_COLOR", "1").env_remove("SBX_RUNTIME").stdin(Stdio::null());
    c
}

/// Starts `sbx ui ARGS` and returns it with the URL it printed.
async fn start_ui(dir: &Path, args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(bin("sbx"))
        .arg("ui")
        .args(args)
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sbx ui");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("sbx ui printed its URL").unwrap().expect("a line");
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/?token="), "{url}");
    (child, url)
}

/// With `SBX_SCREENSHOTS=DIR`, saves a PNG of the page as DIR/NAME (the screenshots in docs/ come
/// from `SBX_SCREENSHOTS=$PWD/docs cargo nextest run -p sbx-tests --test it inspector_in_chromium`).
async fn screenshot(b: &mut Browser, name: &str) {
    if let Some(dir) = std::env::var_os("SBX_SCREENSHOTS").filter(|d| !d.is_empty()) {
        b.screenshot(&Path::new(&dir).join(name)).await.expect("screenshot");
    }
}

/// The sequences of the events on the page, in order.
const SEQS: &str = "[...document.querySelectorAll('#events .ev')].map(e => Number(e.dataset.seq))";

#[tokio::test(flavor = "multi_thread")]
async fn inspector_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = sbx(d, &["up", "--provider", "local", "--name", "insp"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    // The sandbox's runtime runs on this host: taken down even when an assertion fails.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = sbx(self.0, &["down", "insp"]).output();
        }
    }
    let _down = Down(d);
    let (_ui, url) = start_ui(d, &[]).await;
    let base = url.split("/?").next().unwrap().to_owned();
    let token = url.rsplit("token=").next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{base}/api/sb/insp/v1{path}");

    // The token and the Host are checked.
    assert_eq!(http.get(format!("{base}/api/sandboxes")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(format!("{base}/?token=nope")).send().await.unwrap().status(), 401);
    let port = base.rsplit(':').next().unwrap();
    let rebound = http.get(format!("{base}/api/sandboxes")).bearer_auth(&token).header("host", format!("evil.example:{port}")).send().await.unwrap();
    assert_eq!(rebound.status(), 403, "a foreign Host header is refused (DNS rebinding)");

    // A session that asks before it writes, made through the page's own API.
    let made = http
        .post(api("/sessions"))
        .bearer_auth(&token)
        .json(&json!({"agent": "mock", "id": "demo", "permissionPolicy": "ask"}))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.text().await.unwrap());

    let mut b = Browser::launch(1400, 900).await.expect("headless Chromium (install/test-deps.sh installs Debian's chromium)");
    b.goto(&format!("{url}#sb=insp&session=demo")).await.unwrap();
    b.wait_for("document.body.dataset.ready === '1'", Duration::from_secs(10)).await.unwrap();
    b.wait_for("document.querySelector('#events .ev[data-type=\"session.started\"]')", Duration::from_secs(10)).await.unwrap();
    assert!(b.eval("document.querySelector('#sandboxes').textContent").await.unwrap().as_str().unwrap().contains("insp"));

    // Events arrive while the page is open; the write waits for an answer given in the page.
    let sent = http
        .post(api("/sessions/demo/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": "echo first words\nwrite notes/hello.txt hi from the page\necho after the write"}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.text().await.unwrap());
    b.wait_for("[...document.querySelectorAll('#events .ev')].some(e => e.textContent.includes('(assistant) first words'))", Duration::from_secs(10))
        .await
        .unwrap();
    b.wait_for("document.querySelector('#prompts button[data-decision=allow]')", Duration::from_secs(10)).await.unwrap();
    let prompt = b.eval("document.querySelector('#prompts').textContent").await.unwrap();
    assert!(prompt.as_str().unwrap().contains("write notes/hello.txt"), "{prompt}");
    assert_eq!(
        b.eval("[...document.querySelectorAll('#events .ev')].some(e => e.textContent.includes('(assistant) after the write'))").await.unwrap(),
        json!(false)
    );
    screenshot(&mut b, "ui-session.png").await;
    b.click("#prompts button[data-decision=allow]").await.unwrap();
    b.wait_for("document.querySelector('#events .ev[data-type=\"turn.completed\"]')", Duration::from_secs(10)).await.unwrap();
    b.wait_for(
        "[...document.querySelectorAll('#events .ev')].some(e => e.textContent.includes('(assistant) after the write'))",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(b.eval("document.querySelectorAll('#prompts .prompt').length").await.unwrap(), json!(0), "the answered prompt is gone");
    let cat = sbx(d, &["fs", "cat", "insp", "notes/hello.txt"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "hi from the page");

    // A reload replays the whole session: every sequence received once, none missing (deltas are
    // folded into their item's row, so the page counts them).
    let before = b.eval(SEQS).await.unwrap();
    b.reload().await.unwrap();
    b.wait_for(&format!("{SEQS}.length >= {}", before.as_array().unwrap().len()), Duration::from_secs(10)).await.unwrap();
    assert_eq!(b.eval(SEQS).await.unwrap(), before);
    let live = b.eval("Object.assign({}, document.querySelector('#live').dataset)").await.unwrap();
    let n = |k: &str| live[k].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    assert!(n("last") >= 12 && n("count") == n("last") && n("received") == n("last"), "no gap, no repeat: {live}");
    // Files: the upload lands in the sandbox byte for byte (bytes that are not UTF-8 included).
    let upload = d.join("upload.bin");
    let bytes: Vec<u8> = (0..=255u8).chain(b"\r\n\xff\xfe end".iter().copied()).collect();
    std::fs::write(&upload, &bytes).unwrap();
    b.eval("location.hash = 'sb=insp&tab=files'").await.unwrap();
    b.wait_for("document.querySelector('#files')", Duration::from_secs(10)).await.unwrap();
    b.set_files("#upload", &[&upload]).await.unwrap();
    b.wait_for("document.querySelector('#files tr[data-entry=\"upload.bin\"]')", Duration::from_secs(10)).await.unwrap();
    screenshot(&mut b, "ui-files.png").await;
    let got = sbx(d, &["fs", "cat", "insp", "upload.bin"]).output().unwrap();
    assert_eq!(got.stdout, bytes, "the uploaded file's bytes");
    let downloaded = b.eval("fetch(document.querySelector('#files tr[data-entry=\"upload.bin\"] a').href).then(r => r.arrayBuffer()).then(b => [...new Uint8Array(b)])").await.unwrap();
    let downloaded: Vec<u8> = downloaded.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    assert_eq!(downloaded, bytes, "the download link gives the same bytes back");

    // The terminal echoes a typed command.
    b.eval("location.hash = 'sb=insp&tab=terminal'").await.unwrap();
    b.wait_for("document.body.dataset.terminal === 'open'", Duration::from_secs(10)).await.unwrap();
    b.click("#term").await.unwrap();
    b.press_keys("echo term-$((6*7))\r").await.unwrap();
    let screen = b
        .wait_for(
            "document.querySelector('#term').textContent.includes('term-42') && document.querySelector('#term').textContent",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        screen.is_ok(),
        "the terminal shows the command's output: {:?} {}",
        b.eval("document.querySelector('#term').textContent").await,
        b.stderr_tail()
    );

    screenshot(&mut b, "ui-terminal.png").await;
    // The sidebar merges what the provider itself says about the sandbox (as `sbx ls` does).
    b.wait_for("document.querySelector('#sandboxes li[data-sandbox=insp]').textContent.includes('running')", Duration::from_secs(30)).await.unwrap();
    let errors = b.console_errors().await.unwrap();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let requests = b.requests().await.unwrap();
    let host = base.trim_start_matches("http://");
    let foreign: Vec<&String> =
        requests.iter().filter(|u| !u.starts_with(&format!("http://{host}/")) && !u.starts_with(&format!("ws://{host}/"))).collect();
    assert!(foreign.is_empty(), "requests off 127.0.0.1: {foreign:?}");
    assert!(requests.iter().any(|u| u.starts_with("ws://")), "the terminal's WebSocket: {requests:?}");
    b.close().await;

    // Read-only: reads work; writes, answers and the terminal are refused, and the page offers none.
    let (_ro, ro_url) = start_ui(d, &["--read-only"]).await;
    let ro_base = ro_url.split("/?").next().unwrap().to_owned();
    let ro_token = ro_url.rsplit("token=").next().unwrap().to_owned();
    let get = http.get(format!("{ro_base}/api/sb/insp/v1/sessions")).bearer_auth(&ro_token).send().await.unwrap();
    assert!(get.status().is_success());
    let list: Value = get.json().await.unwrap();
    assert_eq!(list["sessions"][0]["id"], "demo", "{list}");
    for (method, path) in [("POST", "/v1/sessions/demo/messages"), ("PUT", "/v1/fs/file?path=x.txt"), ("DELETE", "/v1/fs/entry?path=upload.bin")] {
        let r = http.request(method.parse().unwrap(), format!("{ro_base}/api/sb/insp{path}")).bearer_auth(&ro_token).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    let pty = http.get(format!("{ro_base}/api/sb/insp/pty")).bearer_auth(&ro_token).send().await.unwrap();
    assert!(pty.status().is_client_error(), "no terminal: {}", pty.status());
    let mut b = Browser::launch(1200, 800).await.unwrap();
    b.goto(&format!("{ro_url}#sb=insp")).await.unwrap();
    b.wait_for("document.body.dataset.ready === '1'", Duration::from_secs(10)).await.unwrap();
    let tabs = b.eval("[...document.querySelectorAll('.tabs button')].map(b => b.textContent)").await.unwrap();
    assert_eq!(tabs, json!(["sessions", "files", "processes"]), "no terminal tab in read-only mode");
    assert_eq!(b.eval("document.querySelector('#mode').textContent").await.unwrap(), json!("read-only"));
    b.close().await;

    let down = sbx(d, &["down", "insp"]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
}
