//! `sbx run -f sbx.yaml` end to end with the mock agent: results, JUnit read back by a real XML
//! parser, diffs, matrices, shards, Ctrl-C in the middle of a Docker run, config errors (snapshots),
//! and the example files under templates/run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sbx_tests::{bin, workspace_root};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `sbx ARGS` in `dir` with its own state; Docker reachable only when `docker` is true.
fn sbx(dir: &Path, args: &[&str], docker: bool) -> Command {
    let mut c = Command::new(bin("sbx"));
    c.args(args).current_dir(dir).env("XDG_STATE_HOME", dir.join("state")).env("NO_COLOR", "1").env_remove("GITHUB_STEP_SUMMARY").stdin(Stdio::null());
    if docker {
        c.env("SBX_RUNTIME", sbx_tests::static_runtime());
    } else {
        c.env_remove("SBX_RUNTIME").env("DOCKER_HOST", format!("unix://{}/no-docker.sock", dir.display()));
    }
    c
}

fn results_dir(dir: &Path) -> PathBuf {
    let base = dir.join("sbx-results");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&base).expect("sbx-results").map(|e| e.unwrap().path()).collect();
    runs.sort();
    runs.pop().expect("a run directory")
}

/// Counts from junit.xml, read by Python's XML parser (a real one, not ours).
fn junit_counts(path: &Path) -> (u64, u64, u64, u64, Vec<String>) {
    let script = "import sys, xml.etree.ElementTree as ET\n\
                  r = ET.parse(sys.argv[1]).getroot()\n\
                  s = r.find('testsuite')\n\
                  cases = s.findall('testcase')\n\
                  print(s.get('tests'), s.get('failures'), s.get('errors'), len(cases))\n\
                  print(' '.join(c.get('name') for c in cases if c.find('failure') is not None))";
    let out = Command::new("python3").arg("-c").arg(script).arg(path).output().expect("python3");
    assert!(out.status.success(), "the JUnit file does not parse: {}", text(&out.stderr));
    let t = text(&out.stdout);
    let mut lines = t.lines();
    let nums: Vec<u64> = lines.next().unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
    let failed = lines.next().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    (nums[0], nums[1], nums[2], nums[3], failed)
}

fn ten_tasks(dir: &Path, provider: &str, image: Option<&str>) {
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    std::fs::write(dir.join("repo/README.md"), "hello\n").unwrap();
    let mut y = format!("version: 1\ndefaults:\n  provider: {provider}\n  agent: mock\n  concurrency: 4\n");
    if let Some(i) = image {
        y.push_str(&format!("  image: {i}\n"));
    }
    y.push_str("tasks:\n");
    for i in 0..9 {
        y.push_str(&format!("  - name: t{i}\n    workspace: ./repo\n    prompt: \"write out/t{i}.txt done {i}\"\n    check: test -f out/t{i}.txt\n    artifacts: [\"out/*.txt\"]\n"));
    }
    y.push_str("  - name: broken\n    workspace: ./repo\n    prompt: \"echo I did nothing\"\n    check: test -f out/never.txt\n");
    std::fs::write(dir.join("sbx.yaml"), y).unwrap();
}

fn check_ten(dir: &Path, out: &Output) {
    assert_eq!(out.status.code(), Some(1), "one failing check makes the run fail: {}", text(&out.stderr));
    let res = results_dir(dir);
    let (tests, failures, errors, cases, failed) = junit_counts(&res.join("junit.xml"));
    assert_eq!((tests, failures, errors, cases), (10, 1, 0, 10), "{}", text(&out.stderr));
    assert_eq!(failed, vec!["broken".to_owned()]);
    let diff = std::fs::read_to_string(res.join("t3/diff.patch")).unwrap();
    assert!(diff.contains("+++ b/out/t3.txt") && diff.contains("+done 3"), "the diff holds the agent's change: {diff}");
    assert_eq!(std::fs::read_to_string(res.join("t3/artifacts/out/t3.txt")).unwrap(), "done 3");
    for f in ["events.jsonl", "transcript.md", "setup.log", "check.log", "exit_code", "task.json"] {
        assert!(res.join("t0").join(f).exists(), "t0/{f} missing");
    }
    assert_eq!(std::fs::read_to_string(res.join("broken/exit_code")).unwrap().trim(), "1");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(res.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["passed"].as_u64(), summary["failed"].as_u64()), (Some(9), Some(1)));
    let md = std::fs::read_to_string(res.join("summary.md")).unwrap();
    assert!(md.contains("9 of 10 tasks passed"), "{md}");
    // Every sandbox is gone, and the run is recorded.
    let ls = sbx(dir, &["ls", "--json"], false).output().unwrap();
    assert_eq!(text(&ls.stdout).trim(), "[]");
    let runs = sbx(dir, &["runs", "ls", "--json"], false).output().unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "failed");
    assert!(runs[0]["createdAt"].is_u64(), "raw Unix time in --json: {runs}");
    let human = text(&sbx(dir, &["runs", "ls"], false).output().unwrap().stdout);
    let row = human.lines().nth(1).unwrap_or_default().to_owned();
    let when = row.split_whitespace().skip(2).collect::<Vec<_>>().join(" ");
    assert!(when.len() == 19 && when.as_bytes()[4] == b'-' && when.as_bytes()[13] == b':', "a readable UTC time: {human}");
}

#[test]
fn ten_tasks_at_concurrency_four_on_local() {
    let dir = tempfile::tempdir().unwrap();
    ten_tasks(dir.path(), "local", None);
    let summary_file = dir.path().join("step-summary.md");
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml"], false).env("GITHUB_STEP_SUMMARY", &summary_file).output().unwrap();
    check_ten(dir.path(), &out);
    assert!(std::fs::read_to_string(summary_file).unwrap().contains("9 of 10 tasks passed"), "appended to $GITHUB_STEP_SUMMARY");
}

#[test]
fn ten_tasks_at_concurrency_four_on_docker() {
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    ten_tasks(dir.path(), "docker", Some(&crate::conformance::base_image()));
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml"], true).output().unwrap();
    check_ten(dir.path(), &out);
}

#[test]
fn dry_run_expands_matrices_and_shards_partition_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sbx.yaml"),
        "version: 1\ndefaults: {agent: mock}\ntasks:\n  - name: m\n    prompt: go\n    matrix:\n      agent: [mock, claude, codex]\n      model: [a, b]\n  - name: single\n    prompt: hi\n",
    )
    .unwrap();
    let plan = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["run", "-f", "sbx.yaml", "--dry-run", "--json"];
        args.extend_from_slice(extra);
        let out = sbx(dir.path(), &args, false).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    let all = plan(&[]);
    assert_eq!(all.len(), 7);
    assert!(all.contains(&"m.claude.b".to_owned()) && all.contains(&"single".to_owned()), "{all:?}");
    let mut union: Vec<String> = (1..=3).flat_map(|i| plan(&["--shard", &format!("{i}/3")])).collect();
    union.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(union, want, "three shards run every task exactly once");
    assert_eq!(plan(&["--filter", "codex"]), vec!["m.codex.a", "m.codex.b"]);
}

#[test]
fn malformed_configs_exit_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("bad-yaml", "version: 1\ntasks: [\n  - name: a\n"),
        ("unknown-key", "version: 1\ntasks:\n  - name: a\n    promt: hi\n"),
        ("wrong-type", "version: 1\ntasks:\n  - name: a\n    prompt: hi\n    retries: many\n"),
        ("missing-prompt", "version: 1\ntasks:\n  - name: a\n    check: make test\n"),
        ("bad-version", "version: 3\ntasks:\n  - name: a\n    prompt: hi\n"),
        ("bad-network", "version: 1\ndefaults:\n  network: nnone\ntasks:\n  - name: a\n    prompt: hi\n"),
        ("bad-memory", "version: 1\ndefaults:\n  memory: 2x\ntasks:\n  - name: a\n    prompt: hi\n"),
        ("bad-provider", "version: 1\ntasks:\n  - name: a\n    provider: dokcer\n    prompt: hi\n"),
        ("bad-agent", "version: 1\ndefaults: {agent: claud}\ntasks:\n  - name: a\n    prompt: hi\n"),
        ("bad-matrix-agent", "version: 1\ntasks:\n  - name: a\n    prompt: hi\n    matrix:\n      agent: [mock, codexx]\n"),
        ("bad-timeout", "version: 1\ntasks:\n  - name: a\n    prompt: hi\n    timeout: 5x\n"),
        ("bad-credentials", "version: 1\ntasks:\n  - name: a\n    prompt: hi\n    credentials: [claude, cladue]\n"),
    ];
    let mut report = String::new();
    for (name, body) in cases {
        let file = format!("{name}.yaml");
        std::fs::write(dir.path().join(&file), body).unwrap();
        let out = sbx(dir.path(), &["run", "-f", &file, "--validate"], false).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out.stderr));
        report.push_str(&format!("{name}: {}", text(&out.stderr)));
    }
    insta::assert_snapshot!(report);
    let out = sbx(dir.path(), &["run", "-f", "nope.yaml"], false).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope.yaml: cannot read it"));
}

#[test]
fn the_committed_schema_matches_the_code() {
    let out = Command::new(bin("sbx")).args(["config", "schema"]).output().unwrap();
    assert!(out.status.success());
    let now: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = workspace_root().join("docs/sbx.schema.json");
    let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
    assert!(
        now == committed,
        "docs/sbx.schema.json is out of date: run `cargo run -p sbx-cli -- config schema > docs/sbx.schema.json`"
    );
}

#[test]
fn the_quickstart_template_runs() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("run");
    copy_dir(&workspace_root().join("templates/run"), &copy);
    let out = sbx(&copy, &["run", "-f", "quickstart.yaml"], false).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let res = results_dir(&copy);
    let (tests, failures, errors, _, _) = junit_counts(&res.join("junit.xml"));
    assert_eq!((tests, failures, errors), (4, 0, 0));
}

#[test]
fn the_docker_template_runs_sharded() {
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("run");
    copy_dir(&workspace_root().join("templates/run"), &copy);
    let yaml = std::fs::read_to_string(copy.join("ci-docker.yaml")).unwrap().replace("sbx-base:latest", &crate::conformance::base_image());
    std::fs::write(copy.join("ci-docker.yaml"), yaml).unwrap();
    let mut total = 0;
    for shard in ["1/2", "2/2"] {
        let out = sbx(&copy, &["run", "-f", "ci-docker.yaml", "--shard", shard], true).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let res = results_dir(&copy);
        total += junit_counts(&res.join("junit.xml")).0;
        std::fs::rename(&res, copy.join(format!("done-{}", shard.replace('/', "-")))).unwrap();
    }
    assert_eq!(total, 3, "the two shards ran the three tasks between them");
}

/// SIGINT in the middle of a Docker run: no container of the run is left, and a partial summary is
/// written.
#[test]
fn sigint_mid_docker_run_cleans_up_and_writes_a_partial_summary() {
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = crate::conformance::base_image();
    let mut y = format!("version: 1\ndefaults:\n  provider: docker\n  image: {image}\n  agent: mock\n  concurrency: 2\ntasks:\n");
    for i in 0..6 {
        y.push_str(&format!("  - name: slow{i}\n    prompt: \"sleep 60000\"\n"));
    }
    std::fs::write(dir.path().join("sbx.yaml"), y).unwrap();
    let mut child = sbx(dir.path(), &["run", "-f", "sbx.yaml"], true).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until two agents are running (their sandboxes exist), then Ctrl-C.
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut agents = 0;
    let mut run_id = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("run ") {
            run_id = rest.split(':').next().unwrap_or_default().to_owned();
        }
        if line.contains(": agent (mock)") {
            agents += 1;
            if agents == 2 {
                break;
            }
        }
    }
    assert!(!run_id.is_empty());
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", rest.join("\n"));
    let left = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=dev.sbx.run-id={run_id}")]).output().unwrap();
    assert_eq!(text(&left.stdout).trim(), "", "containers of the run are left behind");
    let res = results_dir(dir.path());
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(res.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["notRun"].as_array().unwrap().len(), 4, "{summary}");
    let (tests, _, errors, _, _) = junit_counts(&res.join("junit.xml"));
    assert_eq!((tests, errors), (6, 2));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A git workspace is cloned inside the sandbox at the given ref, and the diff is against it.
#[test]
fn a_git_workspace_is_cloned_at_its_ref() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("origin");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(&repo).env("GIT_AUTHOR_NAME", "t").env("GIT_AUTHOR_EMAIL", "t@localhost").env("GIT_COMMITTER_NAME", "t").env("GIT_COMMITTER_EMAIL", "t@localhost").output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("VERSION"), "1\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "one"]);
    git(&["tag", "v1"]);
    std::fs::write(repo.join("VERSION"), "2\n").unwrap();
    git(&["commit", "-qam", "two"]);
    let yaml = format!(
        "version: 1\ndefaults: {{provider: local, agent: mock}}\ntasks:\n  - name: at-v1\n    workspace: {{git: '{}', ref: v1}}\n    prompt: \"write NOTES.md on v1\"\n    check: grep -qx 1 VERSION\n",
        repo.display()
    );
    std::fs::write(dir.path().join("sbx.yaml"), yaml).unwrap();
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml"], false).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let res = results_dir(dir.path());
    let diff = std::fs::read_to_string(res.join("at-v1/diff.patch")).unwrap();
    assert!(diff.contains("+++ b/NOTES.md") && !diff.contains("VERSION"), "{diff}");
}

/// Every file under `root` but `.git`, with its bytes and whether it is executable.
fn tree(root: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, bool)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let exec = e.metadata().unwrap().permissions().mode() & 0o111 != 0;
                out.insert(rel, (std::fs::read(&p).unwrap(), exec));
            }
        }
    }
    out
}

/// The agent (the mock, running git through its `run` tool) commits twice, deletes a file, leaves an
/// uncommitted edit, a new binary file and a changed binary file: `git apply` of diff.patch to a copy
/// of the original workspace gives exactly the sandbox's tree. A small diff is shown in summary.md;
/// one over `diff_inline_limit` is kept whole and both summaries say so.
#[test]
fn the_diff_holds_commits_edits_and_binary_files_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    std::fs::write(repo.join("gone.txt"), "bye\n").unwrap();
    std::fs::write(repo.join("old.bin"), [0u8, 1, 2, 0xff, 0xfe, 0x80]).unwrap();
    let yaml = r#"version: 1
defaults:
  provider: local
  agent: mock
  diff_inline_limit: 600
tasks:
  - name: big
    workspace: ./repo
    env: {GIT_AUTHOR_NAME: t, GIT_AUTHOR_EMAIL: t@localhost, GIT_COMMITTER_NAME: t, GIT_COMMITTER_EMAIL: t@localhost}
    prompt: |
      write a.txt first
      run git add -A && git commit -qm one
      write sub/b.txt second
      run git rm -q gone.txt && git add -A && git commit -qm two
      write a.txt changed and not committed
      run printf '\000\001\002\377new' > new.bin && printf '\377\376changed' > old.bin && chmod +x sub/b.txt
    check: test "$(git rev-list --count HEAD)" = 3 && test -n "$(git status --porcelain)"
  - name: small
    workspace: ./repo
    prompt: write s.txt x
"#;
    std::fs::write(dir.path().join("sbx.yaml"), yaml).unwrap();
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml", "--keep"], false).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let res = results_dir(dir.path());
    let task: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(res.join("big/task.json")).unwrap()).unwrap();
    let name = task["sandbox"].as_str().unwrap().to_owned();

    let inside = dir.path().join("inside");
    let cp = sbx(dir.path(), &["cp", &format!("{name}:work"), inside.to_str().unwrap()], false).output().unwrap();
    assert!(cp.status.success(), "{}", text(&cp.stderr));
    let applied = dir.path().join("applied");
    copy_dir(&repo, &applied);
    let patch = res.join("big/diff.patch");
    let apply = Command::new("git").args(["apply", "--binary"]).arg(&patch).current_dir(&applied).output().unwrap();
    assert!(apply.status.success(), "git apply: {}\n{}", text(&apply.stderr), text(&std::fs::read(&patch).unwrap()));
    let (want, got) = (tree(&inside), tree(&applied));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    assert!(want == got, "the patched copy differs from the sandbox's tree");
    assert!(!got.contains_key("gone.txt") && got["new.bin"].0 == b"\x00\x01\x02\xffnew" && got["sub/b.txt"].1);

    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(res.join("summary.json")).unwrap()).unwrap();
    let diff_of = |t: &str| summary["tasks"].as_array().unwrap().iter().find(|x| x["name"] == t).unwrap()["diff"].clone();
    let (big, small) = (diff_of("big"), diff_of("small"));
    assert_eq!(big["bytes"].as_u64(), Some(std::fs::metadata(&patch).unwrap().len()));
    assert_eq!((big["inlined"].as_bool(), small["inlined"].as_bool()), (Some(false), Some(true)), "{summary}");
    assert!(big["note"].as_str().unwrap().contains("over the inline limit of 600"), "{big}");
    let md = std::fs::read_to_string(res.join("summary.md")).unwrap();
    assert!(md.contains("big: not shown here:") && md.contains("over the inline limit") && md.contains("+++ b/s.txt"), "{md}");
    let down = sbx(dir.path(), &["down", "--all"], false).output().unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
}

/// Sandbox names are unique within a run (`a.b` and `a-b`; two names alike in their first 60
/// characters) and across two runs started together with one state (the same second, the same day).
#[test]
fn sandbox_names_are_unique_within_and_across_concurrent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(60);
    let yaml = format!(
        "version: 1\ndefaults: {{provider: local, agent: mock}}\ntasks:\n  - name: a.b\n    prompt: echo 1\n  - name: a-b\n    prompt: echo 2\n  - name: {long}1\n    prompt: echo 3\n  - name: {long}2\n    prompt: echo 4\n"
    );
    std::fs::write(dir.path().join("sbx.yaml"), yaml).unwrap();
    let start = |results: &str| sbx(dir.path(), &["run", "-f", "sbx.yaml", "--keep", "--results", results], false).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (one, two) = (start("one"), start("two"));
    for (child, which) in [(one, "one"), (two, "two")] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "run {which}: {}", text(&out.stderr));
    }
    let ls = sbx(dir.path(), &["ls", "--json"], false).output().unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let mut names: Vec<String> = ls.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");
    let down = sbx(dir.path(), &["down", "--all"], false).output().unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
}

/// `credentials:` per task replaces the defaults' list (`[]` for none); values are validated.
#[test]
fn per_task_credentials_override_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "version: 1\ndefaults: {agent: mock, credentials: [claude]}\ntasks:\n  - name: a\n    prompt: hi\n  - name: b\n    prompt: hi\n    credentials: [codex]\n  - name: c\n    prompt: hi\n    credentials: []\n";
    std::fs::write(dir.path().join("sbx.yaml"), yaml).unwrap();
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml", "--dry-run", "--json"], false).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let creds: Vec<String> = v.as_array().unwrap().iter().map(|t| t["credentials"].to_string()).collect();
    assert_eq!(creds, [r#"["claude"]"#, r#"["codex"]"#, "[]"]);
}

/// A partial task: `partial.txt` written, then a turn that sleeps. Returns the yaml.
fn slow_task(timeout: &str) -> String {
    format!("version: 1\ndefaults: {{provider: local, agent: mock}}\ntasks:\n  - name: slow\n    workspace: ./repo\n    timeout: {timeout}\n    prompt: |\n      write partial.txt before the stop\n      sleep 600000\n      write after.txt never\n    check: \"true\"\n")
}

/// What a stopped task leaves: its partial transcript (the permission under its tool call), the diff
/// of what the agent did so far, every phase that ran with the agent's marked interrupted, events
/// closed by the runtime's turn.completed (cancelled) and session.ended (reason `cancelled` or
/// `timeout`, as the status says), and no exit_code file.
fn check_stopped(res: &Path, status: &str) {
    let dir = res.join("slow");
    let task: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("task.json")).unwrap()).unwrap();
    assert_eq!(task["status"], status, "{task}");
    let phases: Vec<(String, String)> = task["phases"].as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap().to_owned(), p["outcome"].as_str().unwrap().to_owned())).collect();
    let want: Vec<(String, String)> = [("create", "ok"), ("runtime_upload", "ok"), ("start", "ok"), ("healthy", "ok"), ("workspace", "ok"), ("setup", "ok"), ("agent_install", "ok"), ("agent", "interrupted"), ("diff", "ok"), ("down", "ok")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(phases, want, "{task}");
    let diff = std::fs::read_to_string(dir.join("diff.patch")).unwrap();
    assert!(diff.contains("+++ b/partial.txt") && !diff.contains("after.txt"), "{diff}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let n = events.len();
    assert_eq!((events[n - 2]["type"].as_str(), events[n - 2]["data"]["outcome"].as_str()), (Some("turn.completed"), Some("cancelled")));
    assert_eq!(events[n - 1]["type"], "session.ended");
    let reason = if status == "timed_out" { "timeout" } else { "cancelled" };
    assert_eq!((events[n - 1]["data"]["reason"].as_str(), events[n - 1]["data"]["terminatedBy"].as_str()), (Some(reason), Some("user")), "{}", events[n - 1]);
    assert_eq!(task["events"].as_u64(), Some(n as u64));
    let md = std::fs::read_to_string(dir.join("transcript.md")).unwrap();
    let (tool, permission) = (md.find("- tool `write`").unwrap(), md.find("permission perm_").unwrap());
    assert!(tool < permission && md.contains("Cancelled"), "{md}");
    assert!(!dir.join("exit_code").exists(), "no check ran, so no exit code");
}

#[test]
fn a_timed_out_task_keeps_its_partial_results() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/README.md"), "hi\n").unwrap();
    std::fs::write(dir.path().join("sbx.yaml"), slow_task("3s")).unwrap();
    let out = sbx(dir.path(), &["run", "-f", "sbx.yaml"], false).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    check_stopped(&results_dir(dir.path()), "timed_out");
    let ls = sbx(dir.path(), &["ls", "--json"], false).output().unwrap();
    assert_eq!(text(&ls.stdout).trim(), "[]");
}

/// Waits, on events rather than a clock (a loaded machine once took longer than a fixed deadline),
/// until the slow task's agent has written `partial.txt`: the run's own progress line for the agent
/// phase, then the session's event stream up to the write's `item.completed`. Returns the thread that
/// collects the rest of `sbx run`'s stderr.
fn wait_for_partial_write(dir: &Path, stderr: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    use std::io::BufRead as _;
    use std::time::Duration;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // The deadline only guards against a hang; a slow machine just waits longer.
    loop {
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(line) if line.contains("slow: agent (") => break,
            Ok(_) => {}
            Err(_) => panic!("sbx run never reached the agent phase: {}", reader.join().unwrap()),
        }
    }
    let ls = sbx(dir, &["ls", "--json"], false).output().unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let name = ls[0]["name"].as_str().expect("the task's sandbox").to_owned();
    let db = rusqlite::Connection::open(dir.join("state/sbx/sbx.db")).unwrap();
    let (endpoint, token): (String, String) =
        db.query_row("SELECT endpoint, token FROM sandboxes WHERE name = ?1", [&name], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let url = serde_json::from_str::<serde_json::Value>(&endpoint).unwrap()["transport"]["url"].as_str().expect("an HTTP endpoint").to_owned();
    let client = sbx_agent::client::Client::new(&url, Some(token)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use futures::StreamExt as _;
        // The session is created right after the phase starts.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let session = loop {
            if let Some(s) = client.list_sessions().await.ok().and_then(|s| s.into_iter().next()) {
                break s.id;
            }
            assert!(std::time::Instant::now() < deadline, "no agent session appeared in {name}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut events = client.follow_events(&session, 0).await.unwrap();
        let wrote = tokio::time::timeout(Duration::from_secs(600), async {
            while let Some(ev) = events.next().await {
                let line = serde_json::to_string(&ev.unwrap()).unwrap();
                if line.contains("\"item.completed\"") && line.contains("partial.txt") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(wrote, Ok(true), "the agent never wrote partial.txt");
    });
    reader
}

#[test]
fn a_task_cancelled_mid_turn_keeps_its_partial_results() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/README.md"), "hi\n").unwrap();
    std::fs::write(dir.path().join("sbx.yaml"), slow_task("10m")).unwrap();
    let mut child = sbx(dir.path(), &["run", "-f", "sbx.yaml"], false).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Mid-turn: the agent has written partial.txt and is sleeping.
    let stderr = wait_for_partial_write(dir.path(), child.stderr.take().unwrap());
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    check_stopped(&results_dir(dir.path()), "cancelled");
    let ls = sbx(dir.path(), &["ls", "--json"], false).output().unwrap();
    assert_eq!(text(&ls.stdout).trim(), "[]");
}
