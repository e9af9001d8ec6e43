#!/usr/bin/env bash
# Build a Debian 13 (trixie, Python 3.13) image with Mistral's ACP agent `vibe-acp` (PyPI
# `mistral-vibe`, pinned below), for the tests of sbx's ACP adapter; no image registry involved:
#   debootstrap trixie (minbase + python3-venv, and git for `sbx run`'s diffs) -> venv + pip install in a chroot -> `docker import`.
# `vibe-acp` is linked into /usr/local/bin. The image has no API key and no vibe config: tests give it
# a VIBE_HOME of their own.
#
# Tagged sbx-vibe:<first 12 hex of sha256 over this script>; nothing is built when that tag exists.
# The rootfs tarball is kept in $SBX_TEST_CACHE/docker, so a re-import needs no debootstrap or pip.
#
# Usage: templates/vibe/build.sh   (prints the image reference as the last stdout line)
# Env:   SBX_TEST_CACHE     cache dir (default ~/.cache/sbx-test)
#        SBX_DEBIAN_MIRROR  the Debian mirror (default: the first Debian one in this machine's apt sources)
# Progress goes to stderr; stdout carries only the image reference.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SBX_TEST_CACHE:-$HOME/.cache/sbx-test}
OUT_DIR=$CACHE/docker
SUITE=trixie
REPO=sbx-vibe
# 3.0.3 pins a certifi that PyPI lacks; 3.0.2 is what was verified (shared/agents.md).
VIBE_VERSION=3.0.2
PACKAGES=bash,coreutils,ca-certificates,python3,python3-venv,procps,git
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "[sbx-vibe] $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker not found"
TAG=$(sha256sum <"$HERE/build.sh" | cut -c1-12)
REF=$REPO:$TAG
mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.vibe-build.lock"
flock 9

if docker image inspect "$REF" >/dev/null 2>&1; then
  log "$REF already present"
  echo "$REF"
  exit 0
fi

ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
TARBALL=$OUT_DIR/$REPO-$TAG-$ARCH.rootfs.tar
TMP=
cleanup() {
  [ -n "$TMP" ] && [ -d "$TMP" ] || return 0
  awk -v d="$TMP/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$TMP"
  rm -f "$TARBALL.partial"
}
trap cleanup EXIT

# The first `deb` URI of this machine's apt sources that serves Debian itself (not -security).
find_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -e 's/#.*//' |
    grep -oE '(https?|ftp|file)://[^[:space:]]+' | grep -v -- '-security' | head -n1 || true
}

if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || die "debootstrap not installed (run install/test-deps.sh)"
  [ "$(id -u)" = 0 ] || die "debootstrap and chroot need root"
  MIRROR=${SBX_DEBIAN_MIRROR:-$(find_mirror)}
  [ -n "$MIRROR" ] || die "no Debian mirror in /etc/apt; set SBX_DEBIAN_MIRROR"
  TMP=$(mktemp -d "$OUT_DIR/vibe.XXXXXX")
  ROOTFS=$TMP/rootfs
  log "debootstrap $SUITE ($ARCH, minbase + $PACKAGES) from $MIRROR"
  start=$SECONDS
  PATH=$PATH:/usr/sbin:/sbin debootstrap --variant=minbase --arch="$ARCH" --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2 ||
    { [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2; die "debootstrap failed"; }
  log "debootstrap done in $((SECONDS - start))s; pip install mistral-vibe==$VIBE_VERSION"
  # pip in the chroot uses this machine's DNS and CA bundle (package mirrors may sit behind a
  # TLS-intercepting proxy whose CA only the host trusts); both are removed again below.
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  HOST_CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
  cp "$HOST_CA" "$ROOTFS/tmp/host-ca.crt"
  mount -t proc proc "$ROOTFS/proc"
  start=$SECONDS
  chroot "$ROOTFS" /usr/bin/env -i PATH="$IMAGE_PATH" HOME=/root PIP_CERT=/tmp/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    sh -ec "python3 -m venv /opt/vibe && /opt/vibe/bin/pip install --no-cache-dir mistral-vibe==$VIBE_VERSION && ln -sf /opt/vibe/bin/vibe-acp /usr/local/bin/vibe-acp" >&2 ||
    die "pip install mistral-vibe==$VIBE_VERSION failed"
  umount "$ROOTFS/proc"
  log "pip done in $((SECONDS - start))s"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* \
    "$ROOTFS"/debootstrap "$ROOTFS"/root/.cache
  : >"$ROOTFS/etc/resolv.conf"
  echo sbx >"$ROOTFS/etc/hostname"
  mkdir -p "$ROOTFS/workspace"
  tar -C "$ROOTFS" --numeric-owner -cf "$TARBALL.partial" .
  mv -f "$TARBALL.partial" "$TARBALL"
  rm -rf --one-file-system "$TMP"
  TMP=
  find "$OUT_DIR" -maxdepth 1 -name "$REPO-*-$ARCH.rootfs.tar" ! -name "$(basename "$TARBALL")" -delete
else
  log "using cached rootfs tarball $TARBALL"
fi

log "docker import -> $REF ($(du -h "$TARBALL" | cut -f1))"
docker import \
  --change "ENV PATH=$IMAGE_PATH" \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["sleep","infinity"]' \
  --change "LABEL org.sbx.vibe.version=$VIBE_VERSION org.sbx.vibe.suite=$SUITE" \
  - "$REF" <"$TARBALL" >&2 || die "docker import failed"
echo "$REF"
