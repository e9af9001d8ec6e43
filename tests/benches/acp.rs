//! ACP benchmark: the per-turn overhead of `sbx acp` (editor → sbx → the sandbox's runtime → the ACP
//! adapter → vibe-acp) against vibe-acp's own ACP mode run directly in the same container
//! (`docker exec -i … vibe-acp`), same fake LLM, same run. One session each; the time of a turn is
//! from sending `session/prompt` to its answer. Prints figures; never fails on time.
//!
//! Target: `sbx acp` within 20 ms of the direct run at the median.
//!
//! Run: `source ~/.cache/sbx-test/env.sh && SBX_RUNTIME=$(bash install/build-runtime.sh) cargo bench -p sbx-tests --bench acp`
//! (needs Docker and `SBX_VIBE_IMAGE` from install/test-deps.sh).

use std::process::Stdio;
use std::time::{Duration, Instant};

use sbx_tests::fake_llm::{FakeLlm, Reply};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A minimal ACP client over a child's stdio: allows every permission request, refuses other requests.
struct Acp {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next: u64,
}

impl Acp {
    fn spawn(mut cmd: tokio::process::Command) -> Acp {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().expect("spawn");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Acp { child, stdin, lines, next: 1 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line()).await.expect("answer in time").unwrap();
            let msg: Value = serde_json::from_str(&line.expect("agent exited")).unwrap();
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                assert!(msg.get("error").is_none(), "{method}: {msg}");
                return msg["result"].clone();
            }
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let result = if msg["method"] == "session/request_permission" {
                    json!({"outcome": {"outcome": "selected", "optionId": msg["params"]["options"][0]["optionId"]}})
                } else {
                    json!(null)
                };
                let reply = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
                self.stdin.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            }
        }
    }

    /// Initializes, opens a session in `cwd`, and times `ROUNDS` turns (after one warm-up turn).
    async fn turns(&mut self, cwd: &str) -> Vec<Duration> {
        self.call("initialize", json!({"protocolVersion": 1, "clientCapabilities": {}})).await;
        let s = self.call("session/new", json!({"cwd": cwd, "mcpServers": []})).await;
        let sid = s["sessionId"].as_str().expect("sessionId").to_owned();
        let prompt = |n: usize| json!({"sessionId": sid, "prompt": [{"type": "text", "text": format!("ping {n}")}]});
        self.call("session/prompt", prompt(0)).await;
        let mut out = Vec::new();
        for n in 1..=ROUNDS {
            let t = Instant::now();
            let r = self.call("session/prompt", prompt(n)).await;
            out.push(t.elapsed());
            assert_eq!(r["stopReason"], "end_turn", "{r}");
        }
        out
    }

    async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

#[tokio::main]
async fn main() {
    let Some(image) = std::env::var("SBX_VIBE_IMAGE").ok().filter(|v| !v.is_empty()) else {
        eprintln!("SBX_VIBE_IMAGE is unset: `source ~/.cache/sbx-test/env.sh` first (install/test-deps.sh builds the image)");
        std::process::exit(2);
    };
    let gateway = sbx_tests::fake_llm::docker_bridge_gateway().expect("Docker's bridge gateway");
    let llm = FakeLlm::start_on(gateway).await;
    llm.set_default(Reply::text("pong"));
    let home = tempfile::tempdir().unwrap();
    let name = format!("bench-acp-{}", &sbx_tests::random_token()[..6]);
    let sbx = |args: &[&str]| {
        let out = std::process::Command::new(sbx_tests::bin("sbx"))
            .args(args)
            .env("XDG_STATE_HOME", home.path())
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("NO_COLOR", "1")
            .output()
            .expect("run sbx");
        assert!(out.status.success(), "sbx {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    sbx(&["up", "--provider", "docker", "--image", &image, "--name", &name]);
    struct Down<'a>(&'a dyn Fn(&[&str]) -> Vec<u8>, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)(&["down", &self.1]);
        }
    }
    let _down = Down(&sbx, name.clone());
    let status: Value = serde_json::from_slice(&sbx(&["status", &name, "--json"])).unwrap();
    let container = status["id"].as_str().expect("container id").to_owned();
    let config = format!(
        "active_model = \"fake\"\ndefault_agent = \"auto-approve\"\nenable_telemetry = false\nenable_update_checks = false\n\
         enable_auto_update = false\n\n[[providers]]\nname = \"fake\"\napi_base = \"{}\"\napi_style = \"openai\"\n\
         backend = \"generic\"\napi_key_env_var = \"\"\n\n[[models]]\nname = \"fake-model\"\nprovider = \"fake\"\nalias = \"fake\"\n",
        llm.openai_base_url()
    );
    let local = home.path().join("config.toml");
    std::fs::write(&local, config).unwrap();
    sbx(&["fs", "put", &name, &local.to_string_lossy(), "/tmp/vh/config.toml", "--parents"]);

    // Direct: vibe-acp's own ACP mode in the container.
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(["exec", "-i", "-e", "VIBE_HOME=/tmp/vh", "-w", "/workspace", &container, "vibe-acp"]);
    let mut direct = Acp::spawn(cmd);
    let d = direct.turns("/workspace").await;
    direct.close().await;

    // Through sbx acp.
    let mut cmd = tokio::process::Command::new(sbx_tests::bin("sbx"));
    cmd.args(["acp", &name, "--agent", "vibe", "--cwd", "/workspace", "--permission-mode", "allow-all", "-e", "VIBE_HOME=/tmp/vh"])
        .env("XDG_STATE_HOME", home.path())
        .env("NO_COLOR", "1");
    let mut via = Acp::spawn(cmd);
    let v = via.turns("/workspace").await;
    via.close().await;

    let (d, v) = (median(d), median(v));
    println!("vibe-acp turn against the fake LLM in Docker, median of {ROUNDS}:");
    println!("  direct (docker exec -i vibe-acp)   {:8.1} ms", ms(d));
    println!("  sbx acp → runtime → vibe-acp       {:8.1} ms", ms(v));
    println!("  overhead per turn                  {:+8.1} ms (target ≤ 20 ms)", ms(v) - ms(d));
}
