#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (idempotent, cached outside the
# repo), builds once, then runs the Rust tests, the release path (archive, installer, action), the API
# fuzz pass, and the Python oracles.
#
# Env: SBX_FUZZ_SECONDS (default 90), SBX_SKIP_FUZZ=1, SBX_SLOW=1 (also run slow scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*" >&2; }

step "test dependencies (apt packages, Python venv, agent binaries, Docker base image)"
bash install/test-deps.sh
# shellcheck disable=SC1091
. "${SBX_TEST_CACHE:-$HOME/.cache/sbx-test}/env.sh"

# Build outside the clone so later runs on this machine reuse compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SBX_TEST_CACHE/target}"

step "build (debug, all targets) into $CARGO_TARGET_DIR"
cargo build --locked --workspace --all-targets

step "build the static runtime"
SBX_RUNTIME="$(readlink -f "$(bash install/build-runtime.sh)")"
# CI has Docker and the real agents (test-deps installs them): their tests must run, not skip.
export SBX_RUNTIME SBX_REQUIRE_DOCKER=1 SBX_REQUIRE_AGENTS=1

step "Rust tests"
cargo nextest run --locked --workspace --no-fail-fast --profile ci

step "release path: archives, installer, GitHub Action (install/test-release.sh)"
bash install/test-release.sh

if [ "${SBX_SKIP_FUZZ:-0}" != 1 ]; then
  step "API fuzz pass (schemathesis against /v1/openapi.json)"
  bash tests/oracle/schemathesis.sh
fi

if compgen -G "tests/oracle/test_*.py" >/dev/null; then
  step "oracles (official SDKs against our fakes)"
  "$SBX_TEST_VENV/bin/python" -m pytest -q tests/oracle
fi
step "all tests passed"
