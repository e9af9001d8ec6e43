#!/usr/bin/env bash
# Build the OpenSSH test server image (templates/sshd/Dockerfile) on top of the sbx base image, with
# Debian's packages through apt. Tagged sbx-sshd:<first 12 hex of sha256 over the Dockerfile,
# sshd_config, this script and the base image's id>; nothing is built when that tag exists.
#
# Usage: templates/sshd/build.sh BASE_IMAGE   (prints the image reference as the last stdout line)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE=${1:?usage: build.sh BASE_IMAGE}
log() { echo "[sbx-sshd] $*" >&2; }
base_id=$(docker image inspect --format '{{.Id}}' "$BASE") || { log "error: base image $BASE not found"; exit 1; }
TAG=$( { cat "$HERE/Dockerfile" "$HERE/sshd_config" "$HERE/build.sh"; echo "$base_id"; } | sha256sum | cut -c1-12)
REF=sbx-sshd:$TAG
if docker image inspect "$REF" >/dev/null 2>&1; then
  log "$REF already present"
  echo "$REF"
  exit 0
fi
log "docker build -> $REF (from $BASE)"
docker build --build-arg "BASE=$BASE" --label "org.sbx.sshd.tag=$TAG" -t "$REF" "$HERE" >&2 || { log "error: docker build failed"; exit 1; }
echo "$REF"
