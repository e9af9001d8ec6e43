//! A task's `diff.patch`: everything the task changed since the baseline commit recorded after the
//! workspace was put in place — the agent's own commits, uncommitted edits, deletions, new files
//! (untracked ones included) and binary files — as one patch that `git apply` takes.
//!
//! The patch is written inside the sandbox and downloaded through the file API, so its bytes arrive
//! unchanged (a patch of a Latin-1 file is not valid UTF-8) and its size is not bounded by a process
//! output buffer. It is always kept whole; only its inlining into `summary.md` has a limit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use sbx_agent::client::Client;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

/// Where the patch is written inside the sandbox (next to the workspace, not in it).
const REMOTE: &str = ".sbx-run/diff.patch";

/// Default for `defaults.diff_inline_limit`: diffs up to this size are shown in `summary.md`.
pub const DEFAULT_INLINE_LIMIT: u64 = 64 * 1024;

/// What `summary.json` says about a task's diff.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiffInfo {
    /// The patch, relative to the results directory (`<task>/diff.patch`).
    pub path: String,
    /// Its size in bytes (the whole patch, always kept).
    pub bytes: u64,
    /// Whether `summary.md` shows it inline.
    pub inlined: bool,
    /// Why it is not inlined, when it is not empty and not inlined (too large, not text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The shell script that writes the patch. A throw-away index (read from the baseline, then
/// `git add -A`) collects the working tree as it is without touching the agent's own index.
fn script(base: &str) -> String {
    // A commit id from `git rev-parse`: hex only, nothing to quote.
    debug_assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
    format!(
        "set -e\n\
         out=\"$(cd .. && pwd)/{REMOTE}\"\n\
         mkdir -p \"$(dirname \"$out\")\"\n\
         export GIT_INDEX_FILE=\"$out.index\"\n\
         rm -f \"$GIT_INDEX_FILE\"\n\
         git read-tree {base}\n\
         git add -A\n\
         git -c core.quotepath=off -c diff.noprefix=false diff --cached --binary --no-color --no-ext-diff \
         --no-renames --src-prefix=a/ --dst-prefix=b/ {base} > \"$out\"\n\
         rm -f \"$GIT_INDEX_FILE\"\n"
    )
}

/// Writes `diff.patch` into `dir` and says what it holds. `base` is the baseline commit.
pub async fn take(client: &Client, base: &str, task: &str, dir: &Path, inline_limit: u64) -> Result<DiffInfo> {
    anyhow::ensure!(!base.is_empty() && base.chars().all(|c| c.is_ascii_hexdigit()), "bad baseline commit id `{base}`");
    let mut req = sbx_agent::api::process::RunRequest::shell(script(base));
    req.cwd = Some(super::task::WORK.to_owned());
    req.env = BTreeMap::new();
    req.timeout_ms = Some(Duration::from_secs(300).as_millis() as u64);
    let out = client.run(&req).await?;
    anyhow::ensure!(out.exit_code == Some(0), "git diff against the baseline failed: {}", out.stderr.trim_ascii().escape_ascii());
    let local = dir.join("diff.patch");
    let mut file = tokio::fs::File::create(&local).await.with_context(|| format!("cannot write {}", local.display()))?;
    let mut stream = client.read_stream(REMOTE).await?;
    let mut bytes = 0u64;
    let mut head = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        if head.len() as u64 <= inline_limit {
            head.extend_from_slice(&chunk);
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    let (inlined, note) = if bytes == 0 {
        (false, None)
    } else if bytes > inline_limit {
        (false, Some(format!("{bytes} bytes, over the inline limit of {inline_limit} (`defaults.diff_inline_limit`): the whole patch is in {task}/diff.patch")))
    } else if std::str::from_utf8(&head).is_err() {
        (false, Some(format!("not UTF-8 text: the whole patch is in {task}/diff.patch")))
    } else {
        (true, None)
    };
    Ok(DiffInfo { path: format!("{task}/diff.patch"), bytes, inlined, note })
}
