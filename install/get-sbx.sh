#!/bin/sh
# Installs sbx (the coding-agent sandbox CLI) and its static runtime sbx-agent from a release archive.
#
#   curl -fsSL <releases>/latest/download/get-sbx.sh | sh
#   sh get-sbx.sh [--version V] [--prefix DIR | --bin-dir DIR] [--cache DIR] [--resolve]
#
#   --version V    the release, 0.2.0 or v0.2.0 (default: latest; env SBX_VERSION)
#   --prefix DIR   install into DIR/bin (default: ~/.local, so ~/.local/bin)
#   --bin-dir DIR  install into DIR itself
#   --cache DIR    keep verified archives in DIR and reuse one whose checksum still matches
#   --resolve      print the version --version names (latest: its number) and exit
#
# Env: SBX_INSTALL_BASE_URL  where the releases are (default: this project's GitHub releases), laid out
#      as BASE/download/v<version>/<file> and BASE/latest/download/<file>.
#
# The archive's SHA-256 is checked (against its .sha256 file and the release manifest) before anything
# is unpacked; on a mismatch nothing is installed. Running it again with the same release changes
# nothing. Needs curl or wget, tar, gzip and sha256sum (or shasum); no root.
set -eu

# Filled in by install/release.sh for the copy attached to a release.
SBX_DEFAULT_BASE_URL=""

say() { echo "get-sbx: $*" >&2; }
die() { say "error: $*"; exit 1; }

version=${SBX_VERSION:-latest}
prefix="$HOME/.local"
bin_dir=
cache=
resolve=0
while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
    --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; bin_dir=$2; shift 2 ;;
    --cache) [ $# -ge 2 ] || die "--cache needs a value"; cache=$2; shift 2 ;;
    --resolve) resolve=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" 2>/dev/null || true; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
done
[ -n "$bin_dir" ] || bin_dir="$prefix/bin"
version=${version#v}
base=${SBX_INSTALL_BASE_URL:-$SBX_DEFAULT_BASE_URL}
[ -n "$base" ] || die "no release URL: this copy of get-sbx.sh is not one attached to a release; set SBX_INSTALL_BASE_URL=https://<host>/<owner>/sbx/releases"
base=${base%/}

# ---- what to download -------------------------------------------------------------------------------
case "$(uname -m)" in
  x86_64|amd64) arch=x86_64 ;;
  aarch64|arm64) arch=aarch64 ;;
  *) die "unsupported CPU $(uname -m); build from source: cargo install --locked --path cli" ;;
esac
case "$(uname -s)" in
  Linux) target="$arch-unknown-linux-gnu" ;; # static binaries: any libc, any distribution
  Darwin) target="$arch-apple-darwin" ;;
  *) die "unsupported OS $(uname -s); build from source: cargo install --locked --path cli" ;;
esac

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die "needs curl or wget"
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "needs sha256sum or shasum to verify the download"
fi

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t get-sbx)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

if [ "$version" = latest ]; then rel="$base/latest/download"; else rel="$base/download/v$version"; fi
fetch "$rel/sbx-manifest.json" "$tmp/manifest.json" || die "cannot download $rel/sbx-manifest.json (is $version a release?)"
found=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$tmp/manifest.json")
[ -n "$found" ] || die "$rel/sbx-manifest.json is not an sbx release manifest"
if [ "$version" != latest ] && [ "$found" != "$version" ]; then
  die "$rel/sbx-manifest.json is for $found, not $version"
fi
version=$found
if [ "$resolve" = 1 ]; then echo "$version"; exit 0; fi

line=$(grep "\"target\": \"$target\", \"file\"" "$tmp/manifest.json" || true)
if [ -z "$line" ]; then
  have=$(sed -n 's/.*"target": "\([^"]*\)", "file".*/\1/p' "$tmp/manifest.json" | tr '\n' ' ')
  die "sbx $version has no archive for $target (it has: ${have:-none}); build from source: cargo install --locked --path cli"
fi
file=$(echo "$line" | sed 's/.*"file": "\([^"]*\)".*/\1/')
manifest_sum=$(echo "$line" | sed 's/.*"sha256": "\([^"]*\)".*/\1/')
case "$file" in sbx-"$version"-"$target".tar.gz) ;; *) die "unexpected archive name $file in the manifest" ;; esac
url="$base/download/v$version/$file"

# ---- download and verify, before anything is unpacked ------------------------------------------------
fetch "$url.sha256" "$tmp/$file.sha256" || die "cannot download $url.sha256"
want=$(cut -d' ' -f1 <"$tmp/$file.sha256")
echo "$want" | grep -Eqx '[0-9a-f]{64}' || die "$url.sha256 does not hold a SHA-256; nothing was installed"
[ "$want" = "$manifest_sum" ] || die "$file.sha256 ($want) and sbx-manifest.json ($manifest_sum) disagree; nothing was installed"

archive=
if [ -n "$cache" ] && [ -f "$cache/$file" ] && [ "$(sha256 "$cache/$file")" = "$want" ]; then
  archive="$cache/$file"
  say "using the cached $archive"
else
  say "downloading $url"
  fetch "$url" "$tmp/$file" || die "cannot download $url"
  archive="$tmp/$file"
fi
got=$(sha256 "$archive")
if [ "$got" != "$want" ]; then
  die "checksum mismatch for $file: expected $want (from $file.sha256), got $got. The download is corrupt or was tampered with; nothing was installed"
fi
if [ -n "$cache" ] && [ "$archive" != "$cache/$file" ]; then
  mkdir -p "$cache" && cp -f "$archive" "$cache/$file.partial" && mv -f "$cache/$file.partial" "$cache/$file"
fi

# ---- unpack and install ------------------------------------------------------------------------------
mkdir "$tmp/x"
tar -xzf "$archive" -C "$tmp/x" || die "cannot unpack $file; nothing was installed"
src="$tmp/x/sbx-$version-$target"
[ -f "$src/sbx" ] && [ -f "$src/sbx-agent" ] || die "$file does not hold sbx and sbx-agent; nothing was installed"

if [ -f "$bin_dir/sbx" ] && [ -f "$bin_dir/sbx-agent" ] && cmp -s "$src/sbx" "$bin_dir/sbx" && cmp -s "$src/sbx-agent" "$bin_dir/sbx-agent"; then
  say "sbx $version is already installed in $bin_dir"
else
  mkdir -p "$bin_dir"
  # Copy next to the destination, then rename: a running sbx keeps its old file, and an interrupted
  # install never leaves half a binary. The runtime goes first, since sbx looks for it next to itself.
  for b in sbx-agent sbx; do
    cp "$src/$b" "$bin_dir/.$b.new.$$"
    chmod 0755 "$bin_dir/.$b.new.$$"
    mv -f "$bin_dir/.$b.new.$$" "$bin_dir/$b"
  done
  say "installed sbx $version ($target) into $bin_dir: sbx, sbx-agent"
fi

# ---- which sbx will the shell run? -------------------------------------------------------------------
first=$(command -v sbx 2>/dev/null || true)
if [ -n "$first" ] && [ "$(cd "$(dirname "$first")" && pwd -P)/sbx" != "$(cd "$bin_dir" && pwd -P)/sbx" ]; then
  say "warning: another \`sbx\` comes first on your PATH: $first"
  if "$first" --version 2>/dev/null | grep -q "coding-agent sandbox"; then
    say "  (it is another copy of this tool)"
  else
    say "  It is not this tool (Docker ships an unrelated CLI called sbx)."
  fi
  say "  Put $bin_dir earlier in PATH, or call $bin_dir/sbx directly."
elif [ -z "$first" ]; then
  say "note: $bin_dir is not on your PATH; add it: export PATH=\"$bin_dir:\$PATH\""
fi
"$bin_dir/sbx" --version
