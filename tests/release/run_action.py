#!/usr/bin/env python3
"""Runs the shell steps of the composite action (action.yml, converted to JSON by check_workflows.py)
the way the GitHub runner does, so install/test-release.sh can run them in a clean container against
a local HTTP server. Standard library only: the container has python3 but nothing else.

    python3 run_action.py ACTION.json ACTION_DIR --input version=latest --input args="…" [--context k=v]…

What the runner does and this does too: inputs with their defaults; `${{ … }}` in `env:`, `if:` and
`outputs:` (contexts inputs, steps.<id>.outputs, github, runner; `!=`, `==`, `&&`, `||`, `!`,
`always()`, `success()`, `failure()`, string literals); `bash --noprofile --norc -eo pipefail` per
step with GITHUB_OUTPUT, GITHUB_PATH, GITHUB_STEP_SUMMARY and GITHUB_ACTION_PATH; later steps see the
PATH entries earlier ones added; a failed step fails the rest unless their `if:` says `always()`.
`uses:` steps (actions/cache) are runner features: they are listed and not run.
Prints one JSON object on stdout: {"outputs": …, "path": [added PATH entries], "steps": [...]}; exits
1 when a step failed.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
TOKEN = re.compile(r"\s*(?:(\|\||&&|==|!=|!|\(|\)|,)|'((?:[^']|'')*)'|([A-Za-z_][\w.-]*(?:\(\))?))")


class Ctx:
    def __init__(self, inputs, contexts):
        self.inputs = inputs
        self.contexts = contexts  # "github.action_path" -> value, ...
        self.steps = {}
        self.failed = False

    def lookup(self, name):
        if name.startswith("inputs."):
            return self.inputs.get(name[len("inputs."):], "")
        m = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", name)
        if m:
            return self.steps.get(m.group(1), {}).get(m.group(2), "")
        if name in self.contexts:
            return self.contexts[name]
        raise SystemExit(f"run_action: unknown context {name!r} (add it to the emulator or the test)")


def tokens(s):
    pos, out = 0, []
    s = s.strip()
    while pos < len(s):
        m = TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise SystemExit(f"run_action: cannot parse expression {s!r} at {pos}")
        op, lit, name = m.groups()
        out.append(("op", op) if op else ("lit", lit.replace("''", "'")) if lit is not None else ("name", name))
        pos = m.end()
    return out


def evaluate(expr, ctx):
    """A recursive-descent evaluator for the expression subset the action uses."""
    toks = tokens(expr)
    i = 0

    def peek():
        return toks[i] if i < len(toks) else (None, None)

    def take():
        nonlocal i
        i += 1
        return toks[i - 1]

    def primary():
        kind, v = take()
        if kind == "op" and v == "!":
            return not truthy(primary())
        if kind == "op" and v == "(":
            r = orexpr()
            take()
            return r
        if kind == "lit":
            return v
        if kind == "name":
            if v == "always()":
                return True
            if v == "success()":
                return not ctx.failed
            if v == "failure()":
                return ctx.failed
            if v in ("true", "false"):
                return v == "true"
            return ctx.lookup(v)
        raise SystemExit(f"run_action: unexpected {v!r} in {expr!r}")

    def comparison():
        left = primary()
        while peek() in (("op", "=="), ("op", "!=")):
            _, op = take()
            right = primary()
            left = (str(left) == str(right)) if op == "==" else (str(left) != str(right))
        return left

    def andexpr():
        left = comparison()
        while peek() == ("op", "&&"):
            take()
            right = comparison()
            left = right if truthy(left) else left
        return left

    def orexpr():
        left = andexpr()
        while peek() == ("op", "||"):
            take()
            right = andexpr()
            left = left if truthy(left) else right
        return left

    r = orexpr()
    if i != len(toks):
        raise SystemExit(f"run_action: trailing tokens in {expr!r}")
    return r


def truthy(v):
    return v not in ("", False, None, 0)


def render(s, ctx):
    def one(m):
        v = evaluate(m.group(1), ctx)
        return "true" if v is True else "false" if v is False else str(v)

    return EXPR.sub(one, str(s))


def condition(step, ctx):
    cond = str(step.get("if", "")).strip()
    if not cond:
        return not ctx.failed
    m = EXPR.fullmatch(cond)
    cond = m.group(1) if m else cond
    # Like the runner: a condition without a status function implies success().
    if not re.search(r"\b(always|success|failure|cancelled)\(\)", cond):
        return not ctx.failed and truthy(evaluate(cond, ctx))
    return truthy(evaluate(cond, ctx))


def read_kv(path):
    """GITHUB_OUTPUT's `name=value` and `name<<EOF` forms."""
    out, lines = {}, open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            i += 1
            val = []
            while i < len(lines) and lines[i] != delim:
                val.append(lines[i])
                i += 1
            out[name] = "\n".join(val)
        elif "=" in line:
            name, val = line.split("=", 1)
            out[name] = val
        i += 1
    return out


def main():
    args = sys.argv[1:]
    action = json.load(open(args[0], encoding="utf-8"))
    action_dir = os.path.abspath(args[1])
    given, contexts = {}, {}
    rest = args[2:]
    while rest:
        flag, kv = rest[0], rest[1]
        rest = rest[2:]
        k, v = kv.split("=", 1)
        (given if flag == "--input" else contexts)[k] = v
    inputs = {k: str(given.get(k, spec.get("default", ""))) for k, spec in (action.get("inputs") or {}).items()}
    for k in given:
        if k not in inputs:
            raise SystemExit(f"run_action: action.yml has no input {k!r}")
    temp = tempfile.mkdtemp(prefix="runner-")
    contexts.setdefault("github.action_path", action_dir)
    contexts.setdefault("runner.temp", temp)
    contexts.setdefault("runner.os", "Linux")
    contexts.setdefault("runner.arch", "X64")
    ctx = Ctx(inputs, contexts)
    summary = os.environ.get("GITHUB_STEP_SUMMARY") or os.path.join(temp, "step_summary.md")
    open(summary, "a").close()
    path_added, report = [], []
    assert action["runs"]["using"] == "composite", "not a composite action"
    for n, step in enumerate(action["runs"]["steps"]):
        sid = step.get("id", f"__{n}")
        name = step.get("name", sid)
        if not condition(step, ctx):
            report.append({"id": sid, "name": name, "ran": False})
            continue
        if "uses" in step:
            report.append({"id": sid, "name": name, "ran": False, "uses": step["uses"]})
            continue
        if step.get("shell") != "bash":
            raise SystemExit(f"run_action: step {name!r} must say shell: bash")
        files = {k: os.path.join(temp, f"{k}-{n}") for k in ("GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_ENV")}
        for f in files.values():
            open(f, "w").close()
        env = dict(os.environ)
        env.update({"RUNNER_TEMP": temp, "GITHUB_ACTION_PATH": action_dir, "GITHUB_STEP_SUMMARY": summary, **files})
        env["PATH"] = os.pathsep.join(list(reversed(path_added)) + [env.get("PATH", "")])
        for k, v in (step.get("env") or {}).items():
            env[k] = render(v, ctx)
        script = os.path.join(temp, f"step-{n}.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write(render(step["run"], ctx) if EXPR.search(step["run"]) else step["run"])
        print(f"::group::{name}", file=sys.stderr, flush=True)
        # The steps' stdout is the log on the runner: stderr here, so stdout carries only the JSON report.
        rc = subprocess.call(["bash", "--noprofile", "--norc", "-eo", "pipefail", script], env=env, stdout=sys.stderr)
        print(f"::endgroup:: {name}: exit {rc}", file=sys.stderr, flush=True)
        ctx.steps[sid] = read_kv(files["GITHUB_OUTPUT"])
        path_added += [p for p in open(files["GITHUB_PATH"], encoding="utf-8").read().split("\n") if p]
        report.append({"id": sid, "name": name, "ran": True, "exit": rc, "outputs": ctx.steps[sid]})
        if rc != 0:
            ctx.failed = True
    outputs = {k: render(spec.get("value", ""), ctx) for k, spec in (action.get("outputs") or {}).items()}
    json.dump({"outputs": outputs, "path": path_added, "summary": summary, "steps": report}, sys.stdout, indent=1)
    print()
    sys.exit(1 if ctx.failed else 0)


if __name__ == "__main__":
    main()
