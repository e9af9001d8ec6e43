//! The run's own results: `summary.json`, `junit.xml`, `summary.md` (also appended to
//! `$GITHUB_STEP_SUMMARY` when set) and `report.html` (see `html.rs`).

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use super::task::{Status, TaskResult};

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub run_id: String,
    pub config: String,
    pub started_at: u64,
    pub duration_ms: u64,
    /// Whether the run was stopped before every task ran (Ctrl-C).
    pub interrupted: bool,
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub not_run: Vec<String>,
    pub tasks: Vec<TaskResult>,
}

impl Summary {
    /// Counts from the results.
    pub fn new(run_id: &str, config: &str, started_at: u64, duration_ms: u64, interrupted: bool, tasks: Vec<TaskResult>, not_run: Vec<String>) -> Self {
        let count = |f: &dyn Fn(Status) -> bool| tasks.iter().filter(|t| f(t.status)).count();
        Self {
            run_id: run_id.into(),
            config: config.into(),
            started_at,
            duration_ms,
            interrupted,
            total: tasks.len() + not_run.len(),
            passed: count(&|s| s == Status::Passed),
            failed: count(&|s| s == Status::Failed),
            errors: count(&|s| !matches!(s, Status::Passed | Status::Failed)),
            not_run,
            tasks,
        }
    }

    /// Whether everything planned ran and passed.
    pub fn all_passed(&self) -> bool {
        self.passed == self.total
    }
}

/// Writes the four files into `dir` and appends the Markdown to `$GITHUB_STEP_SUMMARY`.
pub fn write(dir: &Path, s: &Summary) -> std::io::Result<()> {
    let value = serde_json::to_value(s).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&value).map_err(std::io::Error::other)? + "\n")?;
    std::fs::write(dir.join("junit.xml"), junit(s))?;
    super::html::write(dir, &value)?;
    let md = markdown(s, dir, &report_link(|k| std::env::var(k).ok().filter(|v| !v.is_empty())));
    std::fs::write(dir.join("summary.md"), &md)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(md.as_bytes())?;
    }
    Ok(())
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no way to write most control characters: drop them.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one test suite for the run, one test case per task (tasks not run are skipped).
pub fn junit(s: &Summary) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let skipped = s.not_run.len();
    x.push_str(&format!(
        "<testsuites name=\"sbx run\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        s.total,
        s.failed,
        s.errors,
        s.duration_ms as f64 / 1000.0
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        xml(&s.run_id),
        s.total,
        s.failed,
        s.errors,
        s.duration_ms as f64 / 1000.0
    ));
    for t in &s.tasks {
        x.push_str(&format!(
            "    <testcase classname=\"sbx.{}\" name=\"{}\" time=\"{:.3}\">\n",
            xml(&t.agent),
            xml(&t.name),
            t.duration_ms as f64 / 1000.0
        ));
        let msg = xml(t.message.as_deref().unwrap_or(""));
        match t.status {
            Status::Passed => {}
            Status::Failed => x.push_str(&format!("      <failure message=\"{msg}\" type=\"failed\"/>\n")),
            Status::TimedOut => x.push_str(&format!("      <error message=\"{msg}\" type=\"timed_out\"/>\n")),
            Status::Cancelled => x.push_str(&format!("      <error message=\"{msg}\" type=\"cancelled\"/>\n")),
            Status::Error => x.push_str(&format!("      <error message=\"{msg}\" type=\"error\"/>\n")),
        }
        x.push_str(&format!("      <system-out>results: {}/</system-out>\n", xml(&t.name)));
        x.push_str("    </testcase>\n");
    }
    for name in &s.not_run {
        x.push_str(&format!("    <testcase classname=\"sbx\" name=\"{}\" time=\"0\">\n      <skipped message=\"not run (interrupted)\"/>\n    </testcase>\n", xml(name)));
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// "1 error", "2 errors".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The Markdown summary; `dir` is the results directory (diffs small enough are shown inline), `link`
/// the paragraph that points at `report.html`.
pub fn markdown(s: &Summary, dir: &Path, link: &str) -> String {
    let mut md = format!(
        "## sbx run {}\n\n{} of {} passed ({} failed, {}{}) in {:.1}s\n\n{link}| task | agent | status | check | diff | time |\n|---|---|---|---|---|---|\n",
        s.run_id,
        s.passed,
        count(s.total, "task", "tasks"),
        s.failed,
        count(s.errors, "error", "errors"),
        if s.interrupted { format!(", {} not run: interrupted", s.not_run.len()) } else { String::new() },
        s.duration_ms as f64 / 1000.0
    );
    for t in &s.tasks {
        let status = match t.status {
            Status::Passed => "✅ passed",
            Status::Failed => "❌ failed",
            Status::Error => "⚠️ error",
            Status::TimedOut => "⏱ timed out",
            Status::Cancelled => "⏹ cancelled",
        };
        let check = t.check_exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let diff = match &t.diff {
            Some(d) if d.bytes == 0 => "none".to_owned(),
            Some(d) => format!("{} ({})", d.path, human_bytes(d.bytes)),
            None => "-".to_owned(),
        };
        md.push_str(&format!("| {} | {} | {status} | {check} | {diff} | {:.1}s |\n", t.name, t.agent, t.duration_ms as f64 / 1000.0));
    }
    for n in &s.not_run {
        md.push_str(&format!("| {n} | | not run | | | |\n"));
    }
    md.push('\n');
    let shown: Vec<_> = s.tasks.iter().filter_map(|t| t.diff.as_ref().map(|d| (t, d))).filter(|(_, d)| d.bytes > 0).collect();
    if !shown.is_empty() {
        md.push_str("### Diffs\n\n");
    }
    for (t, d) in shown {
        let text = if d.inlined { std::fs::read(dir.join(&d.path)).ok().and_then(|b| String::from_utf8(b).ok()) } else { None };
        match text {
            Some(text) => {
                // A fence longer than any run of backticks in the patch, so the patch cannot end it.
                let fence = "`".repeat(3.max(longest_run(&text, '`') + 1));
                md.push_str(&format!("<details><summary>{} ({})</summary>\n\n{fence}diff\n{text}{}{fence}\n\n</details>\n\n", t.name, human_bytes(d.bytes), if text.ends_with('\n') { "" } else { "\n" }));
            }
            None => {
                let why = d.note.clone().unwrap_or_else(|| format!("the whole patch is in {}", d.path));
                md.push_str(&format!("- {}: not shown here: {why}\n\n", t.name));
            }
        }
    }
    md
}

/// The line of `summary.md` that points at `report.html`: beside it on disk, and in a GitHub Actions
/// run (`GITHUB_RUN_ID` set), among the run's artifacts, where the results are uploaded.
pub fn report_link(env: impl Fn(&str) -> Option<String>) -> String {
    let ci = match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
        (Some(server), Some(repo), Some(run)) => {
            format!(" In CI it is in the results directory among [this workflow run's artifacts]({server}/{repo}/actions/runs/{run}#artifacts).")
        }
        _ => String::new(),
    };
    format!("📄 Every task's transcript, diff, check output and timings: [report.html](report.html) (one file; open it in a browser).{ci}\n\n")
}

fn longest_run(text: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in text.chars() {
        cur = if ch == c { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
