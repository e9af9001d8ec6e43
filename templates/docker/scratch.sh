#!/usr/bin/env bash
# Build a scratch image holding nothing but one static binary at /usr/local/bin/sbx-agent
# (plus empty /tmp and /workspace directories), via `docker import` of a tar: no registry,
# no base image. Tests use it to prove the runtime needs nothing else from the image.
#
# Usage: templates/docker/scratch.sh PATH/TO/sbx-agent IMAGE[:TAG]
# Skips the import when IMAGE already carries the same binary (label org.sbx.agent.sha256);
# SBX_SCRATCH_FORCE=1 re-imports anyway. Progress on stderr; the image reference is the last
# line of stdout.
set -euo pipefail

log() { echo "[sbx-scratch] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 2 ] || die "usage: $0 PATH/TO/sbx-agent IMAGE[:TAG]"
BIN=$1
REF=$2
[ -f "$BIN" ] || die "no such file: $BIN"
[ -x "$BIN" ] || die "not executable: $BIN"
command -v docker >/dev/null || die "docker not found"

# A dynamically linked binary cannot start in an image without libc: say so loudly.
if command -v ldd >/dev/null; then
  ldd_out=$(ldd "$BIN" 2>&1 || true)
  case $ldd_out in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) log "warning: $BIN looks dynamically linked; it will not run in a scratch image" ;;
  esac
fi

SHA=$(sha256sum "$BIN" | cut -d' ' -f1)
if [ "${SBX_SCRATCH_FORCE:-0}" != 1 ] &&
  [ "$(docker image inspect -f '{{index .Config.Labels "org.sbx.agent.sha256"}}' "$REF" 2>/dev/null || true)" = "$SHA" ]; then
  log "$REF already holds this binary (sha256 ${SHA:0:12})"
  echo "$REF"
  exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/root/usr/local/bin" "$TMP/root/workspace" "$TMP/root/tmp"
chmod 1777 "$TMP/root/tmp"
cp "$BIN" "$TMP/root/usr/local/bin/sbx-agent"
chmod 0755 "$TMP/root/usr/local/bin/sbx-agent"

log "docker import -> $REF (sbx-agent sha256 ${SHA:0:12})"
tar -C "$TMP/root" --numeric-owner --owner=0 --group=0 -c . |
  docker import \
    --change 'ENV PATH=/usr/local/bin' \
    --change 'WORKDIR /workspace' \
    --change 'CMD ["/usr/local/bin/sbx-agent","--version"]' \
    --change "LABEL org.sbx.agent.sha256=$SHA" \
    - "$REF" >&2 || die "docker import failed"
echo "$REF"
