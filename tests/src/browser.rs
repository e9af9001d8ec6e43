//! Headless Chromium (Debian's `chromium`, installed by `install/test-deps.sh`) driven over the
//! DevTools protocol: open a page, run JavaScript in it, type, take screenshots, and read back what the
//! page logged and which requests it made.
//!
//! The browser cannot reach anything but loopback: every other host is routed to a closed local port
//! (`--proxy-server`) and host names do not resolve (`--host-resolver-rules`), and its background
//! services (updates, safe browsing, sync) are off.
//!
//! A test that needs the browser fails when it is missing; set `SBX_CHROMIUM` to use another binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium binary: `$SBX_CHROMIUM`, else `chromium` (Debian) or `chromium-browser` on `PATH`.
pub fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SBX_CHROMIUM").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!("Chromium is not installed: run install/test-deps.sh (it installs Debian's `chromium`), or set SBX_CHROMIUM")
}

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    next_id: u64,
    session: String,
    /// Every event the browser sent (method, params), in order.
    events: Vec<(String, Value)>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// How many renderer processes the last [`Browser::renderer_memory_kib`] counted.
    pub renderers: usize,
}

impl Browser {
    /// Starts Chromium and opens a blank page of `width` × `height` CSS pixels.
    pub async fn launch(width: u32, height: u32) -> Result<Self> {
        let exe = chromium()?;
        let profile = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--no-pings",
                "--metrics-recording-only",
                "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
                "--proxy-server=http://127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                "--mute-audio",
                "--hide-scrollbars",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let ws_url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return anyhow::Ok(url.trim().to_owned());
                }
                stderr.lock().unwrap().push(line);
            }
            Err(anyhow!("Chromium exited before it listened: {}", stderr.lock().unwrap().join("\n")))
        })
        .await
        .map_err(|_| anyhow!("Chromium did not start its DevTools server within 60s"))??;
        // Keep reading stderr so Chromium never blocks on a full pipe; the lines help explain failures.
        let keep = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut k = keep.lock().unwrap();
                if k.len() < 500 {
                    k.push(line);
                }
            }
        });
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.context("connecting to Chromium's DevTools")?;
        let mut b = Self { child, _profile: profile, ws, next_id: 0, session: String::new(), events: Vec::new(), stderr, renderers: 0 };
        let target = b.browser_call("Target.createTarget", json!({"url": "about:blank"})).await?;
        let target_id = target["targetId"].as_str().context("targetId")?.to_owned();
        // The blank tab Chromium opened at start is not ours: close it (its renderer would count in
        // the memory figures).
        let targets = b.browser_call("Target.getTargets", json!({})).await?;
        for t in targets["targetInfos"].as_array().into_iter().flatten() {
            if t["type"] == "page" && t["targetId"] != json!(target_id) {
                b.browser_call("Target.closeTarget", json!({"targetId": t["targetId"]})).await?;
            }
        }
        let attached = b.browser_call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true})).await?;
        b.session = attached["sessionId"].as_str().context("sessionId")?.to_owned();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            b.call(&format!("{domain}.enable"), json!({})).await?;
        }
        b.call("Emulation.setDeviceMetricsOverride", json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false})).await?;
        Ok(b)
    }

    async fn send(&mut self, session: Option<String>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(120), self.ws.next())
                .await
                .map_err(|_| anyhow!("Chromium did not answer {method} within 120s"))?
                .ok_or_else(|| anyhow!("Chromium closed the DevTools connection ({})", self.stderr_tail()))??;
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(text.as_str())?;
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    bail!("{method} failed: {e}");
                }
                return Ok(v["result"].clone());
            }
            if let Some(m) = v["method"].as_str() {
                self.events.push((m.to_owned(), v["params"].clone()));
            }
        }
    }

    /// A DevTools command to the browser itself.
    pub async fn browser_call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.send(None, method, params).await
    }

    /// A DevTools command to the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let s = self.session.clone();
        self.send(Some(s), method, params).await
    }

    /// Navigates and waits for the page's `load` event.
    pub async fn goto(&mut self, url: &str) -> Result<()> {
        let before = self.events.len();
        let r = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            bail!("navigating to {url}: {e}");
        }
        self.wait_event(before, "Page.loadEventFired").await
    }

    /// Reloads the page (its URL, hash included) and waits for `load`.
    pub async fn reload(&mut self) -> Result<()> {
        let before = self.events.len();
        self.call("Page.reload", json!({})).await?;
        self.wait_event(before, "Page.loadEventFired").await
    }

    async fn wait_event(&mut self, from: usize, method: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.events[from..].iter().any(|(m, _)| m == method) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no {method} within 60s");
            }
            // Any command reads the events queued before its answer.
            self.call("Runtime.evaluate", json!({"expression": "0"})).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value as JSON.
    pub async fn eval(&mut self, expr: &str) -> Result<Value> {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true})).await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("`{expr}` threw: {}", e["exception"]["description"].as_str().unwrap_or(&e.to_string()));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` every 20 ms until it is truthy; its last value when `timeout` passes first.
    pub async fn wait_for(&mut self, expr: &str, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.eval(expr).await?;
            let truthy = !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("`{expr}` still {v} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types `text` into the focused element, as a keyboard would (input events fire).
    pub async fn type_text(&mut self, text: &str) -> Result<()> {
        self.call("Input.insertText", json!({"text": text})).await.map(drop)
    }

    /// Presses keys for each character of `text` (`\r` is Enter), as a keyboard would: keydown,
    /// keypress and keyup reach the focused element (for pages that read keys, not input events).
    pub async fn press_keys(&mut self, text: &str) -> Result<()> {
        for c in text.chars() {
            let s = c.to_string();
            let down = if c == '\r' {
                json!({"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13, "text": "\r", "unmodifiedText": "\r"})
            } else {
                json!({"type": "keyDown", "key": s, "text": s, "unmodifiedText": s})
            };
            self.call("Input.dispatchKeyEvent", down).await?;
            let key = if c == '\r' { "Enter".to_owned() } else { s };
            self.call("Input.dispatchKeyEvent", json!({"type": "keyUp", "key": key})).await?;
        }
        Ok(())
    }

    /// Puts local files into the `<input type=file>` matching `selector` (its change event fires).
    pub async fn set_files(&mut self, selector: &str, files: &[&Path]) -> Result<()> {
        let root = self.call("DOM.getDocument", json!({"depth": 0})).await?;
        let node = self.call("DOM.querySelector", json!({"nodeId": root["root"]["nodeId"], "selector": selector})).await?;
        let id = node["nodeId"].as_u64().filter(|&n| n != 0).with_context(|| format!("nothing matches {selector}"))?;
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.call("DOM.setFileInputFiles", json!({"nodeId": id, "files": files})).await.map(drop)
    }

    /// A real mouse click at the centre of the first element matching `selector`.
    pub async fn click(&mut self, selector: &str) -> Result<()> {
        let sel = serde_json::to_string(selector)?;
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
                 const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await?;
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else { bail!("nothing matches {selector}") };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call("Input.dispatchMouseEvent", json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})).await?;
        }
        Ok(())
    }

    /// Errors the page reported: console `error`/`assert` calls, uncaught exceptions, and the
    /// browser's own error log entries (a blocked resource, a refused CSP rule).
    pub async fn console_errors(&mut self) -> Result<Vec<String>> {
        self.eval("0").await?;
        Ok(self
            .events
            .iter()
            .filter_map(|(m, p)| match m.as_str() {
                "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                    Some(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Runtime.exceptionThrown" => Some(format!("exception: {}", p["exceptionDetails"])),
                "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!("log: {} {}", p["entry"]["text"], p["entry"]["url"])),
                _ => None,
            })
            .collect())
    }

    /// The URL of every request the page made, WebSockets included.
    pub async fn requests(&mut self) -> Result<Vec<String>> {
        self.eval("0").await?;
        Ok(self
            .events
            .iter()
            .filter_map(|(m, p)| match m.as_str() {
                "Network.requestWillBeSent" => p["request"]["url"].as_str().map(str::to_owned),
                "Network.webSocketCreated" => p["url"].as_str().map(str::to_owned),
                _ => None,
            })
            .collect())
    }

    /// A PNG of the page's viewport.
    pub async fn screenshot(&mut self, path: &Path) -> Result<()> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"})).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().context("screenshot data")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// The memory of this browser's renderer processes (the tabs), in KiB: resident size and
    /// proportional set size (shared pages divided among their users), from /proc, for the
    /// processes Chromium itself reports as renderers (`SystemInfo.getProcessInfo`).
    pub async fn renderer_memory_kib(&mut self) -> Result<(u64, u64)> {
        let info = self.browser_call("SystemInfo.getProcessInfo", json!({})).await?;
        let field = |text: &str, key: &str| -> u64 {
            text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
        };
        let (mut rss, mut pss) = (0, 0);
        let renderers: Vec<&Value> = info["processInfo"].as_array().into_iter().flatten().filter(|p| p["type"] == "renderer").collect();
        self.renderers = renderers.len();
        for p in renderers {
            let Some(pid) = p["id"].as_u64() else { continue };
            rss += field(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(), "VmRSS:");
            pss += field(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default(), "Pss:");
        }
        Ok((rss, pss))
    }

    /// The last lines Chromium wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let l = self.stderr.lock().unwrap();
        l[l.len().saturating_sub(20)..].join("\n")
    }

    /// Closes the browser.
    pub async fn close(mut self) {
        let _ = self.browser_call("Browser.close", json!({})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// A `file://` URL for a local path.
pub fn file_url(path: &Path) -> String {
    url::Url::from_file_path(std::path::absolute(path).expect("absolute path")).expect("file URL").to_string()
}
