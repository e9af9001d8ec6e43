//! `report.html`: one self-contained page (CSS, JavaScript and data inline; no request leaves the file)
//! with the run's matrix, timeline, and per task its transcript, diff, check output and logs.
//!
//! The page is built from `summary.json`'s value and the files in each task's directory, so it can be
//! written again later from the results alone (`sbx runs report DIR`). The stored files are never
//! changed: what is not UTF-8 is shown with replacement characters (and the page says so), and what is
//! too large is cut with a note naming the file that holds all of it.
//!
//! The template, style and script live in `cli/assets/report/`.

use std::path::Path;

use serde_json::{json, Map, Value};

const TEMPLATE: &str = include_str!("../../assets/report/report.html");
const STYLE: &str = include_str!("../../assets/report/report.css");
const SCRIPT: &str = include_str!("../../assets/report/report.js");

/// The most of a task's `diff.patch` the page shows (the file always holds all of it).
pub const DIFF_LIMIT: usize = 512 * 1024;
/// The most of each log (`setup.log`, `check.log`) the page shows: the end, where failures are.
pub const LOG_LIMIT: usize = 128 * 1024;
/// The most of any one string inside an event (a tool's output, a file's content).
pub const EVENT_STRING_LIMIT: usize = 16 * 1024;
/// The most event JSON per task; later events are counted, not shown.
pub const EVENTS_LIMIT: usize = 1024 * 1024;

/// Writes `dir/report.html` for the run whose `summary.json` value is `summary`.
pub fn write(dir: &Path, summary: &Value) -> std::io::Result<()> {
    let page = render(dir, summary);
    let tmp = dir.join(".report.html.tmp");
    std::fs::write(&tmp, page)?;
    std::fs::rename(tmp, dir.join("report.html"))
}

/// The page for the run whose `summary.json` value is `summary`; task files are read from `dir`.
pub fn render(dir: &Path, summary: &Value) -> String {
    let mut details = Map::new();
    for t in summary["tasks"].as_array().into_iter().flatten() {
        let Some(name) = t["name"].as_str() else { continue };
        details.insert(name.to_owned(), task_details(&dir.join(name), t));
    }
    let data = json!({ "version": 1, "summary": summary, "details": details });
    page(&data)
}

/// The template with its three holes filled.
pub fn page(data: &Value) -> String {
    let title = format!("sbx run {}", data["summary"]["runId"].as_str().unwrap_or_default());
    TEMPLATE.replacen("{{TITLE}}", &html_text(&title), 1).replacen("/*{{STYLE}}*/", STYLE, 1).replacen("{{DATA}}", &script_json(data), 1).replacen(
        "/*{{SCRIPT}}*/",
        SCRIPT,
        1,
    )
}

/// JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&` only ever appear
/// inside JSON strings, where `\u003c` means the same, so no `</script>` or `<!--` can end or bend the
/// element whatever the data holds.
pub fn script_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(s.len() + s.len() / 32);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

fn html_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A file's text for the page: at most `limit` bytes (the head, or the tail when `tail`), decoded
/// lossily; `None` when the file does not exist.
fn text_file(path: &Path, limit: usize, tail: bool) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    let total = bytes.len();
    let cut = if total <= limit {
        &bytes[..]
    } else if tail {
        &bytes[total - limit..]
    } else {
        &bytes[..limit]
    };
    let cut = trim_partial_utf8(cut, total > limit, tail);
    let lossy = std::str::from_utf8(cut).is_err();
    Some(json!({
        "text": String::from_utf8_lossy(cut),
        "bytes": total,
        "shown": cut.len(),
        "truncated": total > limit,
        "lossy": lossy,
    }))
}

/// Drops the bytes of a character cut in two where a file was cut (at its end for a head, at its
/// start for a tail), so a cut alone does not make text look like it is not UTF-8.
fn trim_partial_utf8(b: &[u8], was_cut: bool, tail: bool) -> &[u8] {
    if !was_cut {
        return b;
    }
    if tail {
        let skip = b.iter().take(3).take_while(|&&c| c & 0xC0 == 0x80).count();
        &b[skip..]
    } else {
        match std::str::from_utf8(b) {
            Err(e) if e.error_len().is_none() => &b[..e.valid_up_to()],
            _ => b,
        }
    }
}

/// What the page shows of one task beyond its `task.json`: events, diff, logs.
fn task_details(dir: &Path, task: &Value) -> Value {
    let (events, omitted, lossy_lines) = events(&dir.join("events.jsonl"));
    let diff = task["diff"]["path"].as_str().and_then(|_| text_file(&dir.join("diff.patch"), DIFF_LIMIT, false));
    let mut logs = Vec::new();
    for name in ["setup.log", "check.log"] {
        if let Some(mut v) = text_file(&dir.join(name), LOG_LIMIT, true) {
            v["name"] = json!(name);
            logs.push(v);
        }
    }
    let files: Vec<&str> =
        ["events.jsonl", "transcript.md", "diff.patch", "setup.log", "check.log", "task.json"].into_iter().filter(|f| dir.join(f).exists()).collect();
    json!({
        "events": events,
        "eventsOmitted": omitted,
        "eventsUnreadable": lossy_lines,
        "diff": diff,
        "logs": logs,
        "files": files,
    })
}

/// The events worth showing from `events.jsonl`: no `item.delta` (each `item.completed` holds the
/// whole item), an `item.started` only when its item never completed, no agent-native `raw` payload,
/// long strings cut. Returns the events, how many were left out for size, and how many lines did not
/// parse.
fn events(path: &Path) -> (Vec<Value>, usize, usize) {
    let Ok(bytes) = std::fs::read(path) else { return (Vec::new(), 0, 0) };
    let mut parsed = Vec::new();
    let mut unreadable = 0;
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => parsed.push(v),
            Err(_) => unreadable += 1,
        }
    }
    let completed: std::collections::HashSet<String> =
        parsed.iter().filter(|e| e["type"] == "item.completed").filter_map(|e| e["data"]["itemId"].as_str().map(str::to_owned)).collect();
    let mut out = Vec::new();
    let mut size = 0;
    let mut omitted = 0;
    for mut e in parsed {
        let keep = match e["type"].as_str() {
            Some("item.delta") => false,
            Some("item.started") => !e["data"]["itemId"].as_str().is_some_and(|id| completed.contains(id)),
            _ => true,
        };
        if !keep {
            continue;
        }
        if let Some(o) = e.as_object_mut() {
            o.remove("raw");
        }
        cut_strings(&mut e, EVENT_STRING_LIMIT);
        let len = serde_json::to_string(&e).map(|s| s.len()).unwrap_or(0);
        if size + len > EVENTS_LIMIT {
            omitted += 1;
            continue;
        }
        size += len;
        out.push(e);
    }
    (out, omitted, unreadable)
}

/// Cuts every string in `v` longer than `limit` bytes, saying how much was left out.
fn cut_strings(v: &mut Value, limit: usize) {
    match v {
        Value::String(s) if s.len() > limit => {
            let mut end = limit;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let rest = s.len() - end;
            s.truncate(end);
            s.push_str(&format!("\n… ({rest} more bytes in events.jsonl)"));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| cut_strings(x, limit)),
        Value::Object(o) => o.values_mut().for_each(|x| cut_strings(x, limit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script_element() {
        let v = json!({"diff": "</script><script>alert(1)</script><!-- & -->"});
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>'), "{s}");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v, "the escapes decode to the same value");
    }

    #[test]
    fn files_are_read_lossily_and_cut_at_character_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "héllo wörld").unwrap();
        // A head cut inside `é` (bytes 1..3) drops the half character and is not called lossy.
        let v = text_file(&p, 2, false).unwrap();
        assert_eq!((v["text"].as_str(), v["lossy"].as_bool(), v["truncated"].as_bool()), (Some("h"), Some(false), Some(true)));
        // A tail cut inside `ö` drops its continuation byte.
        let v = text_file(&p, 4, true).unwrap();
        assert_eq!((v["text"].as_str(), v["lossy"].as_bool()), (Some("rld"), Some(false)));
        std::fs::write(&p, b"caf\xe9\n").unwrap();
        let v = text_file(&p, 100, false).unwrap();
        assert_eq!((v["text"].as_str(), v["lossy"].as_bool()), (Some("caf\u{fffd}\n"), Some(true)));
        assert_eq!(std::fs::read(&p).unwrap(), b"caf\xe9\n", "the file itself is untouched");
    }

    #[test]
    fn events_drop_deltas_and_raw_and_cut_long_strings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let long = "x".repeat(EVENT_STRING_LIMIT + 10);
        let lines = [
            json!({"sequence": 1, "type": "item.started", "data": {"itemId": "item_1"}}),
            json!({"sequence": 2, "type": "item.delta", "data": {"itemId": "item_1", "delta": "a"}}),
            json!({"sequence": 3, "type": "item.completed", "data": {"itemId": "item_1", "content": [{"type": "text", "text": long}]}, "raw": {"x": 1}}),
            json!({"sequence": 4, "type": "item.started", "data": {"itemId": "item_2"}}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect::<String>() + "not json\n";
        std::fs::write(&p, text).unwrap();
        let (ev, omitted, bad) = events(&p);
        let seqs: Vec<u64> = ev.iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
        assert_eq!((seqs, omitted, bad), (vec![3, 4], 0, 1));
        assert!(ev[0].get("raw").is_none());
        let t = ev[0]["data"]["content"][0]["text"].as_str().unwrap();
        assert_eq!(t, format!("{}\n… (10 more bytes in events.jsonl)", "x".repeat(EVENT_STRING_LIMIT)));
    }

    #[test]
    fn the_page_is_self_contained() {
        let p = page(&json!({"summary": {"runId": "r<1>", "tasks": []}, "details": {}}));
        assert!(p.contains("<title>sbx run r&lt;1&gt;</title>"));
        for hole in ["{{TITLE}}", "{{STYLE}}", "{{DATA}}", "{{SCRIPT}}"] {
            assert!(!p.contains(hole), "{hole} left in the page");
        }
        for external in ["http://", "https://", "src=\"", "href=\"http", "@import", "url("] {
            assert!(!p.contains(external), "the page refers to something outside it: {external}");
        }
    }
}
