#!/usr/bin/env bash
# Builds sbx's E2B template: E2B's base image with the static sbx-agent preinstalled.
#
#   templates/e2b/build.sh cloud [NAME]   # on E2B with the official SDK (needs E2B_API_KEY, pip install e2b)
#   templates/e2b/build.sh local          # a local Docker image sbx-e2b:<runtime version> (for the fake)
#
# The runtime comes from $SBX_RUNTIME or target/x86_64-unknown-linux-gnu/runtime/sbx-agent
# (install/build-runtime.sh). `local` builds FROM $BASE (default sbx-base:latest) and prints the image
# name as its last stdout line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runtime="${SBX_RUNTIME:-$root/target/x86_64-unknown-linux-gnu/runtime/sbx-agent}"
[ -x "$runtime" ] || { echo "no static sbx-agent at $runtime: run install/build-runtime.sh or set SBX_RUNTIME" >&2; exit 1; }
version="$("$runtime" --version | awk '{print $2}')"
mode="${1:-}"
case "$mode" in
  cloud)
    python="${PYTHON:-python3}"
    "$python" -c 'import e2b' 2>/dev/null || { echo "the e2b Python SDK is missing: pip install e2b" >&2; exit 1; }
    [ -n "${E2B_API_KEY:-}" ] || { echo "set E2B_API_KEY (the template build talks to E2B directly)" >&2; exit 1; }
    exec "$python" "$here/template.py" "$runtime" "${2:-sbx}"
    ;;
  local)
    ctx="$(mktemp -d)"
    trap 'rm -rf "$ctx"' EXIT
    cp "$runtime" "$ctx/sbx-agent"
    cp "$here/Dockerfile" "$ctx/Dockerfile"
    image="sbx-e2b:$version"
    docker build -q --build-arg "BASE=${BASE:-sbx-base:latest}" -t "$image" "$ctx" >&2
    echo "$image"
    ;;
  *)
    echo "usage: $0 cloud [NAME] | local" >&2
    exit 2
    ;;
esac
