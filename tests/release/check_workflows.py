#!/usr/bin/env python3
"""Static checks of the GitHub files, run by install/test-release.sh (they cannot run here):

- action.yml and every .github/workflows/*.yml parse as YAML and have the shape GitHub needs;
- every script a step names (install/…, .ci/…, tests/…, $GITHUB_ACTION_PATH/…) exists in the repo;
  `uses:` steps are either a local path that exists or owner/repo@ref;
- the release workflow runs exactly `bash install/release.sh`, the script install/test-release.sh
  (the suite) runs, and uploads the directory that script writes (dist/);
- the action is composite, with the inputs version and args and the output results.

    python check_workflows.py REPO [--dump-action OUT.json]

PyYAML comes with schemathesis in the test venv (tests/oracle/requirements.txt); without it this
fails, it never skips. --dump-action writes action.yml as JSON for tests/release/run_action.py.
"""

import glob
import json
import os
import re
import sys

import yaml

SCRIPT = re.compile(r"(?:\$GITHUB_ACTION_PATH/|\$\{\{\s*github\.action_path\s*\}\}/|(?<![\w/$.-]))((?:install|\.ci|tests|templates)/[\w./-]+)")
errors = []


def err(msg):
    errors.append(msg)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        err(f"{path}: not valid YAML: {e}")
        return None


def check_steps(repo, where, steps):
    if not isinstance(steps, list) or not steps:
        err(f"{where}: no steps")
        return
    for n, step in enumerate(steps):
        label = f"{where} step {n + 1} ({step.get('name') or step.get('id') or step.get('uses')})"
        if ("run" in step) == ("uses" in step):
            err(f"{label}: needs exactly one of run and uses")
            continue
        if "uses" in step:
            uses = step["uses"]
            if uses.startswith("./"):
                if not os.path.exists(os.path.join(repo, uses)):
                    err(f"{label}: uses {uses}, which does not exist")
            elif not re.fullmatch(r"[\w.-]+/[\w./-]+@[\w.-]+", uses):
                err(f"{label}: uses {uses!r} is not owner/repo@ref")
            continue
        for script in SCRIPT.findall(step["run"]):
            if not os.path.isfile(os.path.join(repo, script)):
                err(f"{label}: names {script}, which does not exist")


def main():
    repo = os.path.abspath(sys.argv[1])
    dump = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--dump-action" else None

    action = load(os.path.join(repo, "action.yml"))
    if action is not None:
        runs = action.get("runs") or {}
        if runs.get("using") != "composite":
            err("action.yml: runs.using is not composite")
        for i in ("version", "args"):
            if i not in (action.get("inputs") or {}):
                err(f"action.yml: no input {i}")
        if "results" not in (action.get("outputs") or {}):
            err("action.yml: no output results")
        for n, step in enumerate(runs.get("steps") or []):
            if "run" in step and step.get("shell") != "bash":
                err(f"action.yml step {n + 1}: a composite run step needs shell: bash")
        check_steps(repo, "action.yml", runs.get("steps"))
        if not any("get-sbx.sh" in s.get("run", "") for s in runs.get("steps") or []):
            err("action.yml: no step runs install/get-sbx.sh")
        if dump:
            with open(dump, "w", encoding="utf-8") as f:
                json.dump(action, f)

    workflows = sorted(glob.glob(os.path.join(repo, ".github/workflows/*.yml")))
    if not any(w.endswith("/release.yml") for w in workflows):
        err(".github/workflows/release.yml is missing")
    for path in workflows:
        wf = load(path)
        if wf is None:
            continue
        name = os.path.relpath(path, repo)
        # YAML 1.1 reads the key `on` as true.
        if "on" not in wf and True not in wf:
            err(f"{name}: no `on:` trigger")
        for job_id, job in (wf.get("jobs") or {}).items():
            if "runs-on" not in job:
                err(f"{name} job {job_id}: no runs-on")
            check_steps(repo, f"{name} job {job_id}", job.get("steps"))

    release = load(os.path.join(repo, ".github/workflows/release.yml")) or {}
    trigger = release.get("on", release.get(True)) or {}
    if not (trigger.get("push") or {}).get("tags"):
        err("release.yml: does not run on a tag push")
    runs = [s["run"] for j in (release.get("jobs") or {}).values() for s in j.get("steps", []) if "run" in s]
    builds = [r for r in runs if "release.sh" in r]
    if [r.strip() for r in builds] != ["bash install/release.sh"]:
        err(f"release.yml: must run exactly `bash install/release.sh` once, runs {builds!r}")
    if not any("gh release upload" in r and "dist/*" in r for r in runs):
        err("release.yml: does not upload dist/* (what install/release.sh writes) to the release")
    suite = open(os.path.join(repo, "install/test-release.sh"), encoding="utf-8").read()
    if not re.search(r"^\s*bash install/release\.sh\b", suite, re.M):
        err("install/test-release.sh does not run bash install/release.sh")
    if "install/test-release.sh" not in open(os.path.join(repo, "install/test.sh"), encoding="utf-8").read():
        err("install/test.sh does not run install/test-release.sh")

    for e in errors:
        print(f"check_workflows: FAIL: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check_workflows: ok: action.yml and {len(workflows)} workflow(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
