#!/usr/bin/env bash
# Install everything the sbx test suites need that is not a Rust crate, idempotently:
#   1. apt packages: debootstrap, docker-registry, dbus + gnome-keyring (a real Secret Service for the
#      `sbx auth login` tests), chromium + chromium-driver (the report's browser tests, driven over the
#      DevTools protocol) (required), skopeo (optional)
#   2. a Python venv with tests/oracle/requirements.txt (pytest, schemathesis, provider SDKs)
#   3. the real agent binaries (Claude Code, Codex), extracted from their PyPI wheels
#   4. the sbx-base Docker image (templates/docker/build.sh), and on top of it the OpenSSH test server
#      image (templates/sshd/build.sh: Debian's openssh-server and fish) for the ssh provider's tests;
#      the Debian 13 image with Mistral's ACP agent vibe-acp (templates/vibe/build.sh) for the ACP tests
#   5. $SBX_TEST_CACHE/env.sh with the paths below
# Everything is cached outside the repo under ${SBX_TEST_CACHE:-$HOME/.cache/sbx-test}; a re-run
# with everything present takes a few seconds. Detailed output of each step goes to
# $SBX_TEST_CACHE/logs/<step>.log; the terminal gets one line per step.
#
# Env: SBX_TEST_CACHE   cache dir (default ~/.cache/sbx-test)
#      SBX_PYTHON       interpreter for the venv (default python3)
#      SBX_SKIP_DOCKER=1  skip the Docker image (SBX_BASE_IMAGE is then empty)
# Output: export lines for SBX_TEST_CACHE SBX_TEST_VENV SBX_CLAUDE_BIN SBX_CODEX_BIN SBX_BASE_IMAGE
#         SBX_SSHD_IMAGE SBX_VIBE_IMAGE,
#         also written to $SBX_TEST_CACHE/env.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SBX_TEST_CACHE:-$HOME/.cache/sbx-test}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
export SBX_TEST_CACHE=$CACHE
VENV=$CACHE/venv
AGENTS=$CACHE/agents
WHEELS=$CACHE/wheels
LOGS=$CACHE/logs
REQ=$REPO/tests/oracle/requirements.txt
PY=${SBX_PYTHON:-python3}
mkdir -p "$AGENTS" "$WHEELS" "$LOGS"

SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo -n"
fi

T0=$SECONDS
STEP_T0=0
WARNINGS=()
step() { STEP_T0=$SECONDS; printf '[%s] %-16s ' "$1" "$2"; }
done_() { echo "$* ($((SECONDS - STEP_T0))s)"; }
warn() { WARNINGS+=("$*"); }
fail() {
  echo "FAILED: $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && { echo "---- last lines of $2:"; tail -n 25 "$2"; }
  exit 1
}
flush_warnings() {
  local w
  for w in "${WARNINGS[@]+"${WARNINGS[@]}"}"; do echo "    warning: $w"; done
  WARNINGS=()
}

# One run at a time per cache dir.
exec 8>"$CACHE/.test-deps.lock"
if ! flock -n 8; then
  echo "waiting for another install/test-deps.sh run on $CACHE ..."
  flock 8
fi

# ---- 1. apt packages -------------------------------------------------------------------------
# openssh-client: ssh-keygen, ssh-agent and ssh-add for the ssh provider's tests (the server side runs
# in a container, templates/sshd/).
# chromium: headless, for the tests of report.html (tests/src/browser.rs); chromium-driver for WebDriver.
apt_required=(debootstrap docker-registry dbus-daemon dbus-bin gnome-keyring openssh-client chromium chromium-driver)
apt_optional=(skopeo)
has_deb() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }
apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "$@"; }

step 1/5 "apt packages"
LOG=$LOGS/apt.log
: >"$LOG"
missing_req=() missing_opt=()
for p in "${apt_required[@]}"; do has_deb "$p" || missing_req+=("$p"); done
for p in "${apt_optional[@]}"; do has_deb "$p" || missing_opt+=("$p"); done
if [ ${#missing_req[@]} -eq 0 ] && [ ${#missing_opt[@]} -eq 0 ]; then
  done_ "ok (cached)"
else
  command -v apt-get >/dev/null || fail "apt-get not found; install ${missing_req[*]} ${missing_opt[*]} by hand"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update >>"$LOG" 2>&1 || fail "apt-get update" "$LOG"
  installed=()
  if [ ${#missing_req[@]} -gt 0 ]; then
    apt_install "${missing_req[@]}" >>"$LOG" 2>&1 || fail "apt-get install ${missing_req[*]}" "$LOG"
    installed+=("${missing_req[@]}")
  fi
  for p in "${missing_opt[@]+"${missing_opt[@]}"}"; do
    if apt_install "$p" >>"$LOG" 2>&1; then installed+=("$p"); else warn "optional apt package $p could not be installed (see $LOG)"; fi
  done
  done_ "installed ${installed[*]:-nothing}"
fi
flush_warnings

# ---- 2. python venv --------------------------------------------------------------------------
# requirements.txt: lines before the "# --- optional" marker are required, the rest optional.
read_reqs() { # $1 = required|optional
  awk -v want="$1" '
    /^#[[:space:]]*---[[:space:]]*optional/ { part = "optional"; next }
    { sub(/#.*/, ""); gsub(/[[:space:]]/, "") }
    $0 != "" && (part == "" ? "required" : part) == want { print }' "$REQ"
}

step 2/5 "python venv"
LOG=$LOGS/venv.log
STAMP=$VENV/.sbx-requirements.sha256
[ -f "$REQ" ] || fail "missing $REQ"
REQ_HASH=$(sha256sum <"$REQ" | cut -d' ' -f1)
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }
if venv_ok && [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$REQ_HASH" ]; then
  prev_failed=$(sed -n 's/^failed: *//p' "$STAMP")
  [ -n "$prev_failed" ] && warn "not installed on an earlier run: $prev_failed (rm $STAMP to retry)"
  done_ "ok (cached)"
else
  : >"$LOG"
  action=updated
  if ! venv_ok; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" >>"$LOG" 2>&1 || fail "$PY -m venv $VENV" "$LOG"
    action=created
  fi
  PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
  failed=()
  if ! "${PIP[@]}" -r "$REQ" >>"$LOG" 2>&1; then
    # Something failed: required ones must install, optional ones are tried one by one.
    echo "== all-at-once install failed; retrying package by package" >>"$LOG"
    mapfile -t req < <(read_reqs required)
    mapfile -t opt < <(read_reqs optional)
    if [ ${#req[@]} -gt 0 ]; then
      "${PIP[@]}" "${req[@]}" >>"$LOG" 2>&1 || fail "pip install ${req[*]}" "$LOG"
    fi
    for p in "${opt[@]+"${opt[@]}"}"; do
      "${PIP[@]}" "$p" >>"$LOG" 2>&1 || { failed+=("$p"); warn "optional python package $p failed to install (see $LOG)"; }
    done
  fi
  if [ ${#failed[@]} -gt 0 ]; then
    printf '%s\nfailed: %s\n' "$REQ_HASH" "${failed[*]}" >"$STAMP"
  else
    echo "$REQ_HASH" >"$STAMP"
  fi
  "$VENV/bin/python" -m pip freeze >"$VENV/.sbx-freeze.txt" 2>>"$LOG" || true
  done_ "$action, installed $REQ ($("$VENV/bin/python" --version 2>&1))"
fi
flush_warnings

# ---- 3. agent binaries -----------------------------------------------------------------------
# name | PyPI distribution | member inside the wheel
AGENT_SPECS=(
  "claude|claude-agent-sdk|claude_agent_sdk/_bundled/claude"
  "codex|openai-codex-cli-bin|codex_cli_bin/bin/codex"
)
agent_version() { timeout 60 "$1" --version 2>/dev/null | head -n1; }

extract_member() { # wheel member dest
  "$VENV/bin/python" - "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
tmp = dest + ".partial"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
os.chmod(tmp, 0o755)
os.replace(tmp, dest)
PY
}

step 3/5 "agent binaries"
LOG=$LOGS/agents.log
: >"$LOG"
did=()
versions=()
for spec in "${AGENT_SPECS[@]}"; do
  IFS='|' read -r name dist member <<<"$spec"
  bin=$AGENTS/$name
  wdir=$WHEELS/$dist
  ver=
  [ -x "$bin" ] && ver=$(agent_version "$bin" || true)
  if [ -z "$ver" ]; then
    for attempt in 1 2; do
      wheel=$(ls -t "$wdir"/*.whl 2>/dev/null | head -n1 || true)
      if [ -z "$wheel" ]; then
        mkdir -p "$wdir"
        "$VENV/bin/python" -m pip download --disable-pip-version-check --no-deps "$dist" -d "$wdir" >>"$LOG" 2>&1 ||
          fail "pip download $dist" "$LOG"
        wheel=$(ls -t "$wdir"/*.whl 2>/dev/null | head -n1 || true)
        [ -n "$wheel" ] || fail "pip download $dist produced no wheel in $wdir" "$LOG"
        did+=("downloaded $(basename "$wheel")")
      fi
      echo "== extracting $member from $wheel" >>"$LOG"
      if extract_member "$wheel" "$member" "$bin" >>"$LOG" 2>&1 && ver=$(agent_version "$bin") && [ -n "$ver" ]; then
        did+=("extracted $name")
        break
      fi
      # A stale or corrupt wheel: drop it and download again once.
      echo "== $wheel unusable (attempt $attempt)" >>"$LOG"
      rm -f "$wheel" "$bin"
      [ "$attempt" = 2 ] && fail "could not get a working $name binary from $dist" "$LOG"
    done
  fi
  wheel=$(ls -t "$wdir"/*.whl 2>/dev/null | head -n1 || true)
  versions+=("$name	$ver	${wheel:+$(basename "$wheel")}")
done
printf '%s\n' "${versions[@]}" >"$AGENTS/versions.txt.partial"
mv -f "$AGENTS/versions.txt.partial" "$AGENTS/versions.txt"
summary=$(printf '%s\n' "${versions[@]}" | cut -f1,2 | tr '\t' ' ' | paste -sd';' - | sed 's/;/; /g')
if [ ${#did[@]} -eq 0 ]; then done_ "ok (cached) $summary"; else done_ "${did[*]}; $summary"; fi

# ---- 4. docker base image --------------------------------------------------------------------
step 4/5 "docker image"
LOG=$LOGS/docker.log
BASE_IMAGE=
SSHD_IMAGE=
VIBE_IMAGE=
if [ "${SBX_SKIP_DOCKER:-0}" = 1 ]; then
  done_ "skipped (SBX_SKIP_DOCKER=1)"
else
  : >"$LOG"
  out=$(bash "$REPO/templates/docker/build.sh" 2>>"$LOG") || fail "templates/docker/build.sh" "$LOG"
  BASE_IMAGE=$(printf '%s\n' "$out" | tail -n1)
  [ -n "$BASE_IMAGE" ] || fail "templates/docker/build.sh printed no image reference" "$LOG"
  if grep -q 'already present' "$LOG"; then
    done_ "ok (cached) $BASE_IMAGE"
  elif grep -q 'using cached rootfs tarball' "$LOG"; then
    done_ "imported $BASE_IMAGE from the cached rootfs tarball"
  else
    done_ "built $BASE_IMAGE (debootstrap + docker import)"
  fi
  STEP_T0=$SECONDS
  printf '[4/5] %-16s ' "sshd image"
  out=$(bash "$REPO/templates/sshd/build.sh" "$BASE_IMAGE" 2>>"$LOG") || fail "templates/sshd/build.sh" "$LOG"
  SSHD_IMAGE=$(printf '%s\n' "$out" | tail -n1)
  [ -n "$SSHD_IMAGE" ] || fail "templates/sshd/build.sh printed no image reference" "$LOG"
  if grep -q "$SSHD_IMAGE already present" "$LOG"; then done_ "ok (cached) $SSHD_IMAGE"; else done_ "built $SSHD_IMAGE (openssh-server, fish)"; fi
  STEP_T0=$SECONDS
  printf '[4/5] %-16s ' "vibe image"
  out=$(bash "$REPO/templates/vibe/build.sh" 2>>"$LOG") || fail "templates/vibe/build.sh" "$LOG"
  VIBE_IMAGE=$(printf '%s\n' "$out" | tail -n1)
  [ -n "$VIBE_IMAGE" ] || fail "templates/vibe/build.sh printed no image reference" "$LOG"
  if grep -q "$VIBE_IMAGE already present" "$LOG"; then done_ "ok (cached) $VIBE_IMAGE"; else done_ "built $VIBE_IMAGE (Debian 13, mistral-vibe)"; fi
fi

# ---- 5. env.sh -------------------------------------------------------------------------------
step 5/5 "env.sh"
env_lines=$(
  printf 'export SBX_TEST_CACHE=%q\n' "$CACHE"
  printf 'export SBX_TEST_VENV=%q\n' "$VENV"
  printf 'export SBX_CLAUDE_BIN=%q\n' "$AGENTS/claude"
  printf 'export SBX_CODEX_BIN=%q\n' "$AGENTS/codex"
  printf 'export SBX_BASE_IMAGE=%q\n' "$BASE_IMAGE"
  printf 'export SBX_SSHD_IMAGE=%q\n' "$SSHD_IMAGE"
  printf 'export SBX_VIBE_IMAGE=%q\n' "$VIBE_IMAGE"
)
if [ -f "$CACHE/env.sh" ] && [ "$(cat "$CACHE/env.sh")" = "$env_lines" ]; then
  done_ "ok (cached) $CACHE/env.sh"
else
  printf '%s\n' "$env_lines" >"$CACHE/env.sh.partial"
  mv -f "$CACHE/env.sh.partial" "$CACHE/env.sh"
  done_ "wrote $CACHE/env.sh"
fi

echo "done in $((SECONDS - T0))s. To use in a shell: . $CACHE/env.sh"
echo "$env_lines"
