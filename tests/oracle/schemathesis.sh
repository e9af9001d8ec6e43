#!/usr/bin/env bash
# Fuzzes the runtime's HTTP API with schemathesis, driven by its own /v1/openapi.json.
#
# The runtime runs inside a throwaway container of the base image, because the fuzzer sends arbitrary
# commands to /v1/processes/run and arbitrary paths to /v1/fs: they must not reach this host.
# Checks: no 5xx, and every response matches the schema (status codes, content types, bodies).
#
# Usage: tests/oracle/schemathesis.sh [extra schemathesis args]   (SBX_FUZZ_SECONDS, default 90)
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${SBX_TEST_CACHE:-$HOME/.cache/sbx-test}"
st="$cache/venv/bin/schemathesis"
[ -x "$st" ] || { echo "schemathesis missing: run install/test-deps.sh" >&2; exit 2; }
runtime="${SBX_RUNTIME:-target/x86_64-unknown-linux-gnu/runtime/sbx-agent}"
[ -x "$runtime" ] || { echo "$runtime missing: run install/build-runtime.sh" >&2; exit 2; }
image="${SBX_BASE_IMAGE:-sbx-base:latest}"
token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
name="sbx-fuzz-$$"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
docker run -d --name "$name" --label dev.sbx.managed=fuzz -p 127.0.0.1::2468 \
  -e SBX_AGENT_TOKEN="$token" -e SBX_AGENT_LOG_STDOUT=1 \
  -v "$(readlink -f "$runtime"):/usr/local/bin/sbx-agent:ro" --init "$image" \
  /usr/local/bin/sbx-agent server --host 0.0.0.0 --port 2468 --root /workspace \
  --max-run-timeout-ms 5000 --default-run-timeout-ms 2000 >/dev/null
port="$(docker port "$name" 2468/tcp | head -1 | sed 's/.*://')"
url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$url/v1/health" >/dev/null && break; sleep 0.1; done
curl -sf "$url/v1/health" >/dev/null || { docker logs "$name" >&2; echo "runtime did not come up" >&2; exit 1; }
echo "fuzzing $url for ${SBX_FUZZ_SECONDS:-90}s" >&2
status=0
"$st" run "$url/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance \
  --max-time "${SBX_FUZZ_SECONDS:-90}" --workers 2 \
  --exclude-path /v1/pty \
  --suppress-health-check all \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- runtime log ---" >&2
  docker logs "$name" 2>&1 | tail -50 >&2
fi
exit "$status"
