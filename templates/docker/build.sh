#!/usr/bin/env bash
# Build the sbx Docker base image from Debian packages, with no image registry involved:
#   debootstrap (minbase + templates/docker/packages.txt) -> rootfs tarball -> `docker import`.
#
# The image is tagged sbx-base:<first 12 hex of sha256 over this script and packages.txt> and
# also sbx-base:latest. If sbx-base:<tag> already exists nothing is built. The rootfs tarball is
# kept in the cache dir, so a re-import (e.g. after `docker image rm`) needs no debootstrap.
#
# Usage: templates/docker/build.sh            (prints the image reference as the last stdout line)
# Env:   SBX_TEST_CACHE   cache dir (default ~/.cache/sbx-test); tarballs live in $SBX_TEST_CACHE/docker
#        SBX_DEBIAN_MIRROR  override the mirror (default: taken from this machine's apt sources)
#        SBX_BASE_FORCE=1 rebuild even if the image / tarball exist
# Progress goes to stderr; stdout carries only the image reference.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SBX_TEST_CACHE:-$HOME/.cache/sbx-test}
OUT_DIR=$CACHE/docker
SUITE=bookworm
REPO=sbx-base
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "[sbx-base] $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker not found"
command -v sha256sum >/dev/null || die "sha256sum not found"
[ -f "$HERE/packages.txt" ] || die "missing $HERE/packages.txt"

# ---- tag: content hash of the build inputs -------------------------------------------------
TAG=$( { sha256sum <"$HERE/build.sh"; sha256sum <"$HERE/packages.txt"; } | sha256sum | cut -c1-12)
REF=$REPO:$TAG
PACKAGES=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HERE/packages.txt" | grep -v '^$' | paste -sd, -)
[ -n "$PACKAGES" ] || die "packages.txt lists no packages"

mkdir -p "$OUT_DIR"
# One build at a time per cache dir (tests may call this concurrently).
exec 9>"$OUT_DIR/.build.lock"
flock 9

finish() {
  docker tag "$REF" "$REPO:latest" >&2 || die "docker tag failed"
  echo "$REF"
  exit 0
}

if [ "${SBX_BASE_FORCE:-0}" != 1 ] && docker image inspect "$REF" >/dev/null 2>&1; then
  log "$REF already present"
  finish
fi

ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
TARBALL=$OUT_DIR/$REPO-$TAG-$ARCH.rootfs.tar
TMP=

cleanup() {
  [ -n "$TMP" ] && [ -d "$TMP" ] || return 0
  # debootstrap may leave /proc, /sys, ... mounted inside the target when it fails.
  awk -v d="$TMP/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$TMP"
  rm -f "$TARBALL.partial"
}
trap cleanup EXIT

# ---- mirror: the first source this machine's apt already uses for $SUITE ----------------------
# Reads one-line .list files and deb822 .sources files; files apt itself ignores (other
# extensions) are skipped, as are stanzas with `Enabled: no`.
find_mirror() {
  local f
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk -v suite="$SUITE" '
        { sub(/#.*/, "") }
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) print $i
        }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v suite="$SUITE" '
        function flush(   n, i, s, u) {
          if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && tolower(enabled) != "no") {
            n = split(suites, s, /[[:space:]]+/)
            for (i = 1; i <= n; i++) if (s[i] == suite) { split(uris, u, /[[:space:]]+/); print u[1]; break }
          }
          types = uris = suites = enabled = ""
        }
        /^#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        /^[[:space:]]/ { if (last == "uris") uris = uris " " $0; if (last == "suites") suites = suites " " $0; next }
        {
          key = tolower($0); sub(/:.*/, "", key)
          val = $0; sub(/^[^:]*:[[:space:]]*/, "", val); sub(/[[:space:]]+$/, "", val)
          last = key
          if (key == "types") types = val
          else if (key == "uris") uris = val
          else if (key == "suites") suites = val
          else if (key == "enabled") enabled = val
        }
        END { flush() }' "$f"
    done
  } | sed -e 's/^[[:space:]]*//' | grep -E '^(https?|file|ftp)://' | head -n1 || true
}

# ---- rootfs tarball (cached) -----------------------------------------------------------------
if [ "${SBX_BASE_FORCE:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] ||
    die "debootstrap not installed (run install/test-deps.sh or apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  MIRROR=${SBX_DEBIAN_MIRROR:-$(find_mirror)}
  [ -n "$MIRROR" ] || die "no apt source for '$SUITE' found in /etc/apt; set SBX_DEBIAN_MIRROR"
  log "debootstrap $SUITE ($ARCH, minbase + $PACKAGES) from $MIRROR"
  TMP=$(mktemp -d "$OUT_DIR/build.XXXXXX")
  ROOTFS=$TMP/rootfs
  start=$SECONDS
  PATH=$PATH:/usr/sbin:/sbin debootstrap --variant=minbase --arch="$ARCH" --include="$PACKAGES" \
    "$SUITE" "$ROOTFS" "$MIRROR" >&2 ||
    { [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2; die "debootstrap failed"; }
  log "debootstrap done in $((SECONDS - start))s"

  # Trim what a container never needs and add the working directory.
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/debootstrap
  : >"$ROOTFS/etc/resolv.conf"   # docker provides its own; don't bake in the host's
  echo sbx >"$ROOTFS/etc/hostname"
  mkdir -p "$ROOTFS/workspace"

  log "writing rootfs tarball $TARBALL"
  tar -C "$ROOTFS" --numeric-owner -cf "$TARBALL.partial" .
  mv -f "$TARBALL.partial" "$TARBALL"
  rm -rf --one-file-system "$TMP"
  TMP=
  # Drop tarballs of older input hashes.
  find "$OUT_DIR" -maxdepth 1 -name "$REPO-*-$ARCH.rootfs.tar" ! -name "$(basename "$TARBALL")" -delete
else
  log "using cached rootfs tarball $TARBALL"
fi

# ---- import ----------------------------------------------------------------------------------
log "docker import -> $REF ($(du -h "$TARBALL" | cut -f1))"
docker import \
  --change "ENV PATH=$IMAGE_PATH" \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["sleep","infinity"]' \
  --change "LABEL org.sbx.base.tag=$TAG org.sbx.base.suite=$SUITE" \
  - "$REF" <"$TARBALL" >&2 || die "docker import failed"
finish
