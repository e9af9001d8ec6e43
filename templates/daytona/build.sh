#!/usr/bin/env bash
# Build the Daytona snapshot image with the static sbx-agent preinstalled, and (with --push) create the
# snapshot in your Daytona organisation with the Daytona CLI.
#
# Usage: templates/daytona/build.sh [--push]
#   prints the local image reference (sbx-daytona:<runtime version>) as the last stdout line.
# Env:  SBX_RUNTIME      the static runtime (default: target/x86_64-unknown-linux-gnu/runtime/sbx-agent,
#                        built by install/build-runtime.sh)
#       BASE             base image (default debian:12-slim; any glibc or musl image with sh, tar,
#                        mktemp, base64 and env)
#       PACKAGES         Debian packages to add (default "ca-certificates git curl procps"; "" = none)
#       SNAPSHOT         snapshot name for --push (default sbx-agent-<version>; Daytona refuses `latest`)
# After --push:  export SBX_DAYTONA_SNAPSHOT=<snapshot>   (or pass --image <snapshot> to sbx up)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNTIME=${SBX_RUNTIME:-$ROOT/target/x86_64-unknown-linux-gnu/runtime/sbx-agent}
PUSH=0
[ "${1:-}" = "--push" ] && PUSH=1

log() { echo "[sbx-daytona] $*" >&2; }
[ -x "$RUNTIME" ] || { log "error: no runtime at $RUNTIME (run install/build-runtime.sh or set SBX_RUNTIME)"; exit 1; }
VERSION=$("$RUNTIME" --version | awk '{print $2}')
[ -n "$VERSION" ] || { log "error: $RUNTIME --version printed no version"; exit 1; }
REF=sbx-daytona:$VERSION
SNAPSHOT=${SNAPSHOT:-sbx-agent-$VERSION}

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "$HERE/Dockerfile" "$CTX/Dockerfile"
cp "$RUNTIME" "$CTX/sbx-agent"
chmod 0755 "$CTX/sbx-agent"

log "building $REF (base ${BASE:-debian:12-slim})"
docker build -q -t "$REF" \
  --build-arg "BASE=${BASE:-debian:12-slim}" \
  --build-arg "PACKAGES=${PACKAGES-ca-certificates git curl procps}" \
  "$CTX" >&2

if [ "$PUSH" = 1 ]; then
  command -v daytona >/dev/null || { log "error: the Daytona CLI is needed for --push (https://www.daytona.io/docs/en/tools/cli)"; exit 1; }
  log "creating snapshot $SNAPSHOT in your Daytona organisation"
  daytona snapshot create "$SNAPSHOT" --dockerfile "$CTX/Dockerfile" --context "$CTX/sbx-agent"
  log "done: export SBX_DAYTONA_SNAPSHOT=$SNAPSHOT"
fi
echo "$REF"
