#!/usr/bin/env bash
# Lays out release files the way a GitHub releases page serves them, for a local HTTP server (the
# release script's figures and install/test-release.sh):
#   WWW/download/v<version>/<file>   and   WWW/latest/download/<file>
#
#   bash install/release-www.sh DIST WWW      (DIST: the output of install/release.sh; prints WWW)
set -euo pipefail
dist=$1 www=$2
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$dist/sbx-manifest.json")
[ -n "$version" ] || { echo "release-www: no version in $dist/sbx-manifest.json" >&2; exit 1; }
mkdir -p "$www/download/v$version" "$www/latest/download"
for f in "$dist"/sbx-* "$dist/get-sbx.sh"; do
  cp -f "$f" "$www/download/v$version/"
  cp -f "$f" "$www/latest/download/"
done
echo "$www"
