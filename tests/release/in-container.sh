#!/usr/bin/env bash
# Runs inside a clean container made from the base image (no Rust, no repo, --network none): everything
# install/test-release.sh checks about installing a release as a user would. /w holds only what a user
# would have: the release served over HTTP (srv/good, and the broken copies srv/corrupt, srv/badsum),
# the action's files as the runner checks them out (action/), and a workspace (run/).
#
#   bash /w/in-container.sh VERSION TARGET
set -euo pipefail
V=$1 T=$2
fail() { echo "in-container: FAIL: $*" >&2; exit 1; }
ok() { echo "in-container: ok: $*" >&2; }
ms() { date +%s%N | cut -b1-13; }

if command -v cargo >/dev/null || command -v rustc >/dev/null; then fail "the clean container has Rust"; fi
[ -e /w/Cargo.toml ] && fail "the repo is in the clean container"

# The release server: this container's own loopback, laid out like GitHub's releases.
python3 -m http.server --bind 127.0.0.1 --directory /w/srv 8000 >/tmp/http.log 2>&1 &
for _ in $(seq 200); do curl -fsS -o /dev/null http://127.0.0.1:8000/ 2>/dev/null && break; sleep 0.05; done
curl -fsS -o /dev/null http://127.0.0.1:8000/ || fail "the HTTP server did not start: $(cat /tmp/http.log)"
good=http://127.0.0.1:8000/good
installer=/w/srv/good/latest/download/get-sbx.sh

# ---- refused downloads install nothing, and leave an existing install alone --------------------------
mkdir -p /tmp/keep/bin
echo old >/tmp/keep/bin/sbx
for bad in corrupt badsum; do
  for prefix in "/tmp/p-$bad" /tmp/keep; do
    if SBX_INSTALL_BASE_URL="http://127.0.0.1:8000/$bad" sh "$installer" --prefix "$prefix" >/tmp/out 2>/tmp/err; then
      fail "$bad: the installer succeeded: $(cat /tmp/err)"
    fi
    case $bad in
      corrupt) grep -q "checksum mismatch for sbx-$V-$T.tar.gz" /tmp/err || fail "$bad: no clear error: $(cat /tmp/err)" ;;
      badsum) grep -q "disagree; nothing was installed" /tmp/err || fail "$bad: no clear error: $(cat /tmp/err)" ;;
    esac
    grep -q "nothing was installed" /tmp/err || fail "$bad: the error does not say nothing was installed"
  done
  [ ! -e "/tmp/p-$bad" ] || fail "$bad: something was installed: $(find "/tmp/p-$bad")"
  [ "$(cat /tmp/keep/bin/sbx)" = old ] && [ "$(ls -A /tmp/keep/bin)" = sbx ] || fail "$bad: the existing install was touched"
  ok "$bad release refused: $(tail -n1 /tmp/err)"
done

# ---- install, with Docker's unrelated `sbx` first on PATH ---------------------------------------------
mkdir -p /tmp/docker-bin
printf '#!/bin/sh\necho "Docker Sandboxes sbx version v0.9.0"\n' >/tmp/docker-bin/sbx
chmod +x /tmp/docker-bin/sbx
t0=$(ms)
PATH="/tmp/docker-bin:$PATH" SBX_INSTALL_BASE_URL=$good sh "$installer" --prefix /tmp/p >/tmp/out 2>/tmp/err || fail "install: $(cat /tmp/err)"
v=$(/tmp/p/bin/sbx --version)
t1=$(ms)
for want in "sbx $V (" " $T)" "the coding-agent sandbox CLI (not Docker's"; do
  case "$v" in *"$want"*) ;; *) fail "sbx --version says '$v', without '$want'" ;; esac
done
grep -q "another \`sbx\` comes first on your PATH: /tmp/docker-bin/sbx" /tmp/err || fail "no PATH warning: $(cat /tmp/err)"
grep -q "It is not this tool (Docker ships an unrelated CLI" /tmp/err || fail "the warning does not name Docker's sbx: $(cat /tmp/err)"
[ -x /tmp/p/bin/sbx-agent ] || fail "no sbx-agent next to sbx"
ok "installed into /tmp/p/bin in $((t1 - t0)) ms to a working \`sbx --version\`: $v"

# ---- idempotent: again, pinned, and as the one-liner (script on stdin) ---------------------------------
before=$(sha256sum /tmp/p/bin/sbx /tmp/p/bin/sbx-agent)
SBX_INSTALL_BASE_URL=$good sh "$installer" --prefix /tmp/p --version "v$V" >/tmp/out 2>/tmp/err || fail "reinstall: $(cat /tmp/err)"
grep -q "sbx $V is already installed in /tmp/p/bin" /tmp/err || fail "reinstall did not say so: $(cat /tmp/err)"
curl -fsSL "$good/latest/download/get-sbx.sh" | SBX_INSTALL_BASE_URL=$good sh -s -- --prefix /tmp/p >/tmp/out 2>/tmp/err ||
  fail "curl | sh: $(cat /tmp/err)"
grep -q "already installed" /tmp/err || fail "curl | sh did not find the install: $(cat /tmp/err)"
[ "$before" = "$(sha256sum /tmp/p/bin/sbx /tmp/p/bin/sbx-agent)" ] || fail "a reinstall changed the binaries"
SBX_INSTALL_BASE_URL=$good /tmp/p/bin/sbx self-update >/tmp/out 2>/tmp/err || fail "self-update: $(cat /tmp/err)"
grep -q "already installed in /tmp/p/bin" /tmp/err || fail "self-update did not run the installer: $(cat /tmp/err)"
if SBX_INSTALL_BASE_URL=http://127.0.0.1:8000/corrupt /tmp/p/bin/sbx self-update >/tmp/out 2>/tmp/err; then fail "self-update took a corrupt archive"; fi
grep -q "checksum mismatch" /tmp/err || fail "self-update of a corrupt archive: $(cat /tmp/err)"
[ "$before" = "$(sha256sum /tmp/p/bin/sbx /tmp/p/bin/sbx-agent)" ] || fail "a refused self-update changed the binaries"
ok "idempotent (again, pinned v$V, curl | sh, sbx self-update); a corrupt self-update is refused"

# ---- the installed sbx does the main job: local up -> exec -> down -------------------------------------
export PATH="/tmp/p/bin:$PATH"
sbx up --provider local --name rel >/tmp/out 2>/tmp/err || fail "sbx up: $(cat /tmp/err)"
out=$(sbx exec rel -- sh -c 'echo "hello from $(basename "$(pwd)")"') || fail "sbx exec"
case "$out" in "hello from "*) ;; *) fail "sbx exec printed '$out'" ;; esac
sbx down rel >/tmp/out 2>/tmp/err || fail "sbx down: $(cat /tmp/err)"
sbx ls --json | grep -q '"rel"' && fail "rel is still listed after down"
ok "local provider up -> exec ('$out') -> down with the installed binary"

# ---- the composite action's steps, as the runner runs them --------------------------------------------
cp -r /w/run /tmp/ws
cd /tmp/ws
export GITHUB_STEP_SUMMARY=/tmp/step-summary.md
python3 /w/run_action.py /w/action.json /w/action --input args="-f quickstart.yaml --concurrency 2" \
  --input base-url=$good --context github.action_repository= --context github.server_url=https://github.invalid \
  >/tmp/action1.json 2>/tmp/action1.err || fail "the action with args failed: $(tail -n 40 /tmp/action1.err)"
python3 - "$V" <<'PY' || fail "action outputs: $(cat /tmp/action1.json)"
import json, os, subprocess, sys
r = json.load(open("/tmp/action1.json"))
assert r["outputs"]["version"] == sys.argv[1], r["outputs"]
res = r["outputs"]["results"]
assert res == "/tmp/ws/sbx-results", res
for f in ("junit.xml", "summary.json", "summary.md"):
    assert os.path.isfile(os.path.join(res, f)), f
summary = open(os.environ["GITHUB_STEP_SUMMARY"]).read()
assert summary == open(os.path.join(res, "summary.md")).read(), "summary.md attached once, whole"
path = os.pathsep.join(r["path"] + [os.environ["PATH"].replace("/tmp/p/bin:", "")])
which = subprocess.run(["sh", "-c", "command -v sbx"], env={"PATH": path}, capture_output=True, text=True).stdout.strip()
assert which == os.path.join(r["path"][0], "sbx"), (which, r["path"])
s = json.load(open(os.path.join(res, 'summary.json')))
assert s['passed'] == s['total'] > 0, s
print(f"  results {res}: {s['passed']}/{s['total']} tasks passed", file=sys.stderr)
PY
# Again, install only, base URL from the environment: the archive now comes from the action's cache dir.
SBX_INSTALL_BASE_URL=$good python3 /w/run_action.py /w/action.json /w/action --input version="v$V" \
  --context github.action_repository= --context github.server_url=https://github.invalid \
  >/tmp/action2.json 2>/tmp/action2.err || fail "the action without args failed: $(tail -n 40 /tmp/action2.err)"
grep -q "using the cached" /tmp/action2.err || fail "the second action run did not reuse the cached archive: $(cat /tmp/action2.err)"
python3 - <<'PY' || fail "action without args: $(cat /tmp/action2.json)"
import json, os
r = json.load(open("/tmp/action2.json"))
ran = {s["id"]: s["ran"] for s in r["steps"]}
assert ran["install"] and not ran["run"], ran
assert r["outputs"]["results"] == "", r["outputs"]
assert os.access(os.path.join(r["path"][0], "sbx"), os.X_OK), r["path"]
PY
ok "action: installs, leaves sbx on PATH, runs sbx run with args, outputs results, attaches summary.md; cache reused"
