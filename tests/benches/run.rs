//! `sbx run` benchmark: fifty mock-agent tasks on the local provider at concurrency 8. Prints the
//! wall time against the ideal (the sum of the task times divided by 8) and the CLI's peak RSS
//! (target <= 100 MB). Never fails on time.
//!
//! Run: `cargo build --release && cargo bench -p sbx-tests --bench run`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("repo")).unwrap();
    std::fs::write(d.join("repo/README.md"), "bench\n").unwrap();
    let mut y = String::from("version: 1\ndefaults:\n  provider: local\n  agent: mock\n  concurrency: 8\ntasks:\n");
    for i in 0..50 {
        y.push_str(&format!("  - name: t{i}\n    workspace: ./repo\n    prompt: |\n      stream 2000\n      sleep 300\n      write out/{i}.txt done\n    check: test -f out/{i}.txt\n"));
    }
    std::fs::write(d.join("sbx.yaml"), y).unwrap();
    let sbx = sbx_tests::bin("sbx");
    let t = Instant::now();
    let mut child = Command::new(&sbx)
        .args(["run", "-f", "sbx.yaml", "-q"])
        .current_dir(d)
        .env("XDG_STATE_HOME", d.join("state"))
        .env_remove("SBX_RUNTIME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sbx run");
    let pid = child.id();
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(v) = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()) {
                peak_kib = peak_kib.max(v);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = t.elapsed();
    assert!(status.success(), "sbx run failed: {status:?}");
    let run = std::fs::read_dir(d.join("sbx-results")).unwrap().next().unwrap().unwrap().path();
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let sum_ms: u64 = summary["tasks"].as_array().unwrap().iter().map(|t| t["durationMs"].as_u64().unwrap_or(0)).sum();
    let ideal = Duration::from_millis(sum_ms / 8);
    println!("sbx run: 50 mock tasks on local at concurrency 8 ({})", sbx.display());
    println!("  wall time:            {:.2} s", wall.as_secs_f64());
    println!("  sum of task times:    {:.2} s", sum_ms as f64 / 1000.0);
    println!("  ideal (sum / 8):      {:.2} s", ideal.as_secs_f64());
    println!("  wall / ideal:         {:.2}x", wall.as_secs_f64() / ideal.as_secs_f64());
    println!("  peak RSS of sbx:      {:.1} MB (target <= 100 MB)", peak_kib as f64 / 1024.0);
}
