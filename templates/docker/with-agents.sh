#!/usr/bin/env bash
# Bake Claude Code and Codex into a second tag of the sbx base image, so `agent_install: image`
# (or `auto`, which looks in the image first) needs no upload and no network.
#
# Usage: templates/docker/with-agents.sh [BASE_REF]   (default: the image build.sh prints)
#   -> sbx-base-agents:<tag>, also sbx-base-agents:latest; the last stdout line is the reference.
# The binaries: $SBX_CLAUDE_BIN / $SBX_CODEX_BIN, else `claude` / `codex` on PATH (links resolved).
# The tag is the first 12 hex of sha256(base image id + both binaries' sha256); an existing tag is
# reused. No registry is involved: `docker build` from the local base image and a two-file context.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=sbx-base-agents
log() { echo "[sbx-base-agents] $*" >&2; }
die() { log "error: $*"; exit 1; }

BASE=${1:-$("$HERE/build.sh" | tail -n1)}
docker image inspect "$BASE" >/dev/null 2>&1 || die "base image $BASE not found"

find_bin() {
  local var=$1 name=$2 p
  p=${!var:-}
  [ -n "$p" ] || p=$(command -v "$name" || true)
  [ -n "$p" ] || die "no $name binary: set $var or put $name on PATH"
  readlink -f "$p"
}
CLAUDE=$(find_bin SBX_CLAUDE_BIN claude)
CODEX=$(find_bin SBX_CODEX_BIN codex)
for b in "$CLAUDE" "$CODEX"; do
  head -c4 "$b" | grep -q 'ELF' || die "$b is not a Linux (ELF) binary"
done

BASE_ID=$(docker image inspect --format '{{.Id}}' "$BASE")
SUMS=$(sha256sum "$CLAUDE" "$CODEX" | cut -d' ' -f1)
TAG=$(printf '%s\n%s\n' "$BASE_ID" "$SUMS" | sha256sum | cut -c1-12)
REF=$REPO:$TAG
if docker image inspect "$REF" >/dev/null 2>&1; then
  log "$REF already present"
else
  CTX=$(mktemp -d)
  trap 'rm -rf "$CTX"' EXIT
  # Hard links keep a few hundred MB from being copied when the context is on the same filesystem.
  ln "$CLAUDE" "$CTX/claude" 2>/dev/null || cp "$CLAUDE" "$CTX/claude"
  ln "$CODEX" "$CTX/codex" 2>/dev/null || cp "$CODEX" "$CTX/codex"
  cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY --chmod=0755 claude codex /usr/local/bin/
LABEL org.sbx.agents.claude.sha256=$(echo "$SUMS" | sed -n 1p) org.sbx.agents.codex.sha256=$(echo "$SUMS" | sed -n 2p)
DOCKERFILE
  log "docker build $REF from $BASE (+ $(du -ch "$CLAUDE" "$CODEX" | tail -n1 | cut -f1) of agents)"
  DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-1} docker build -q -t "$REF" "$CTX" >&2 || die "docker build failed"
fi
docker tag "$REF" "$REPO:latest" >&2
echo "$REF"
