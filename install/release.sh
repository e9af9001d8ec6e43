#!/usr/bin/env bash
# Builds the release archives of sbx: per target one `sbx-<version>-<target>.tar.gz` holding the static
# host CLI `sbx` and the static runtime `sbx-agent`, a `.sha256` per archive (`sha256sum -c` format),
# `sbx-manifest.json` (version, commit, and per archive: target, file, sha256, size), and the user
# installer `get-sbx.sh` with this release's base URL filled in. The release workflow
# (.github/workflows/release.yml) runs exactly this script and uploads everything in the output dir;
# the test suite (install/test-release.sh) runs it too, then installs from the result.
#
#   bash install/release.sh [--out DIR] [--targets "T1 T2"] [--profile NAME] [--no-figures]
#
# Targets (default: all three; those the toolchain here cannot build are listed as such, not faked):
#   x86_64-unknown-linux-gnu   built: glibc crt-static, so both binaries are static-pie with no dynamic
#                              dependencies (rustls, hickory DNS, bundled SQLite, keyring over pure-Rust
#                              D-Bus); `ldd` must say so, or the script fails
#   aarch64-unknown-linux-gnu  built when `rustup target add aarch64-unknown-linux-gnu` is done and the
#                              cross linker aarch64-linux-gnu-gcc is on PATH
#   aarch64-apple-darwin       needs a macOS host (Apple's SDK and linker); and its archive would also
#                              need the Linux sbx-agent of the sandboxes' architecture: not built yet
#
# Profile: `runtime` (opt-level s, fat LTO, one codegen unit, stripped) for both binaries, the profile
# install/build-runtime.sh already uses; see docs/install.md. `--profile static-check` (unoptimised,
# stripped) is what the test suite passes: the same script, targets, static linking and checks, in a
# fraction of the build time (a fat-LTO build of sbx on a 2-core runner takes longer than the rest of
# the suite's builds together).
#
# Env: SBX_RELEASE_REPO  owner/name whose GitHub releases the installer and `sbx self-update` default to
#                        (default: $GITHUB_REPOSITORY, set in Actions; none: SBX_INSTALL_BASE_URL needed)
#      SBX_RELEASE_TAG   when set (the workflow passes the tag), it must be v<version>
# Prints the figures at the end: archive size, static sbx size, installer time to a working
# `sbx --version` against a local HTTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "release: $*" >&2; }
die() { say "error: $*"; exit 1; }

out=dist
profile=runtime
targets="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu aarch64-apple-darwin"
figures=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --targets) targets="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --no-figures) figures=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml [workspace.package]"
if [ -n "${SBX_RELEASE_TAG:-}" ] && [ "$SBX_RELEASE_TAG" != "v$version" ]; then
  die "tag $SBX_RELEASE_TAG does not match the workspace version $version (expected v$version)"
fi
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
repo=${SBX_RELEASE_REPO:-${GITHUB_REPOSITORY:-}}
base_url=
[ -n "$repo" ] && base_url="${GITHUB_SERVER_URL:-https://github.com}/$repo/releases"
# Reproducible archives: file times are the commit's.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
target_dir=${CARGO_TARGET_DIR:-target}
host_target=$(rustc -vV | sed -n 's/^host: //p')

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/sbx-*.tar.gz "$out"/sbx-*.tar.gz.sha256 "$out/sbx-manifest.json" "$out/get-sbx.sh"

# Why a target cannot be built here (empty: it can).
why_not() {
  local t=$1
  case "$t" in
    *-apple-darwin)
      [ "$(uname -s)" = Darwin ] || { echo "needs a macOS host (Apple SDK and linker), and its archive the Linux sbx-agent for the sandboxes"; return; }
      echo "macOS archives are not assembled by this script yet (sbx-agent is Linux-only)"; return ;;
    *-linux-gnu) ;;
    *) echo "unknown target"; return ;;
  esac
  [ "$t" = "$host_target" ] && return
  rustup target list --installed 2>/dev/null | grep -qx "$t" || { echo "rust target not installed (rustup target add $t)"; return; }
  local cc="${t%%-*}-linux-gnu-gcc"
  command -v "$cc" >/dev/null || echo "no cross linker $cc on PATH"
}

# Builds one binary of one target with crt-static; prints its path.
build_bin() { # target package bin
  local t=$1 pkg=$2 bin=$3 linker_var
  linker_var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_LINKER"
  if [ "$t" != "$host_target" ] && [ -z "${!linker_var:-}" ]; then
    export "$linker_var=${t%%-*}-linux-gnu-gcc"
  fi
  # --target keeps RUSTFLAGS away from build scripts and proc-macros (as in build-runtime.sh); the commit
  # and release URL reach `sbx --version` and `sbx self-update` through cli/build.rs.
  SBX_GIT_COMMIT="$commit" SBX_RELEASES_URL="$base_url" RUSTFLAGS="-C target-feature=+crt-static ${RUSTFLAGS:-}" \
    cargo build --locked --profile "$profile" --target "$t" -p "$pkg" --bin "$bin" >&2
  # Cargo names the dev profile's directory `debug`.
  echo "$target_dir/$t/$( [ "$profile" = dev ] && echo debug || echo "$profile" )/$bin"
}

check_static() { # path
  local f=$1 l
  l=$(ldd "$f" 2>&1 || true)
  if echo "$l" | grep -q "=>"; then die "$f has dynamic dependencies:"$'\n'"$l"; fi
  echo "$l" | grep -qE "statically linked|not a dynamic executable" || die "ldd does not say $f is static: $l"
}

manifest_lines=()
host_built=
not_built=()
built=()
t0=$SECONDS
for t in $targets; do
  reason=$(why_not "$t")
  if [ -n "$reason" ]; then
    say "$t: not buildable here: $reason"
    not_built+=("    {\"target\": \"$t\", \"reason\": \"$reason\"}")
    continue
  fi
  # Two cargo invocations, so sbx links the runtime library without its server (cargo unifies
  # features within one invocation).
  say "$t: building sbx-agent ($profile profile, crt-static)"
  agent=$(build_bin "$t" sbx-agent sbx-agent)
  say "$t: building sbx ($profile profile, crt-static)"
  sbx=$(build_bin "$t" sbx-cli sbx)
  if [ "$t" = "$host_target" ]; then
    check_static "$agent"
    check_static "$sbx"
    v=$("$sbx" --version)
    for want in "$version" "$commit" "$t" "coding-agent sandbox CLI"; do
      case "$v" in *"$want"*) ;; *) die "\`sbx --version\` says \"$v\", without \"$want\"" ;; esac
    done
    say "$v"
  fi
  name="sbx-$version-$t"
  stage=$(mktemp -d)
  mkdir "$stage/$name"
  install -m 0755 "$sbx" "$stage/$name/sbx"
  install -m 0755 "$agent" "$stage/$name/sbx-agent"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" | gzip -9n >"$out/$name.tar.gz"
  rm -rf "$stage"
  sum=$(sha256sum "$out/$name.tar.gz" | cut -d' ' -f1)
  echo "$sum  $name.tar.gz" >"$out/$name.tar.gz.sha256"
  size=$(stat -c %s "$out/$name.tar.gz")
  manifest_lines+=("    {\"target\": \"$t\", \"file\": \"$name.tar.gz\", \"sha256\": \"$sum\", \"size\": $size}")
  [ "$t" = "$host_target" ] && host_built=1
  built+=("$t|$name.tar.gz|$size|$(stat -c %s "$sbx")|$(stat -c %s "$agent")")
done
[ ${#built[@]} -gt 0 ] || die "no target could be built here"

# One archive per line, so the installer can read it with grep and sed (no jq or python needed).
join() { local IFS=$'\n'; local s="${*}"; echo "${s//$'\n'/,$'\n'}"; }
{
  echo "{"
  echo "  \"version\": \"$version\","
  echo "  \"commit\": \"$commit\","
  echo "  \"archives\": ["
  join "${manifest_lines[@]}"
  echo "  ],"
  echo "  \"not_built\": ["
  [ ${#not_built[@]} -gt 0 ] && join "${not_built[@]}"
  echo "  ]"
  echo "}"
} >"$out/sbx-manifest.json"
sed "s|^SBX_DEFAULT_BASE_URL=.*|SBX_DEFAULT_BASE_URL=\"$base_url\"|" install/get-sbx.sh >"$out/get-sbx.sh"
chmod 0755 "$out/get-sbx.sh"
[ -n "$base_url" ] || say "note: no SBX_RELEASE_REPO/GITHUB_REPOSITORY: the installer has no default URL (SBX_INSTALL_BASE_URL needed)"
build_secs=$((SECONDS - t0))

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
say "wrote $out:"
(cd "$out" && ls -l sbx-* get-sbx.sh | awk '{ print "  " $5 "\t" $NF }' >&2)
echo "figures ($profile profile$( [ "$profile" = runtime ] || echo ": not what a release ships; sizes are far above a release's" )):"
echo "  cargo time, this run (both binaries, every buildable target; builds already done are reused): ${build_secs}s"
for b in "${built[@]}"; do
  IFS='|' read -r t file size sbx_size agent_size <<<"$b"
  echo "  $t: archive $file $(mib "$size") compressed (target: under 15 MiB); static sbx $(mib "$sbx_size"), static sbx-agent $(mib "$agent_size")"
done
for r in "${not_built[@]+"${not_built[@]}"}"; do
  echo "  not built here: $(echo "$r" | sed 's/.*"target": "\([^"]*\)", "reason": "\([^"]*\)".*/\1 (\2)/')"
done

if [ "$figures" = 1 ] && [ -n "$host_built" ]; then
  # The installer against a local HTTP server laid out like the releases page, into a fresh dir.
  tmp=$(mktemp -d)
  server_pid=
  trap 'kill ${server_pid:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT
  bash install/release-www.sh "$out" "$tmp/www" >/dev/null
  python3 -u -m http.server --bind 127.0.0.1 --directory "$tmp/www" 0 >"$tmp/server.log" 2>&1 &
  server_pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$tmp/server.log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || die "the local HTTP server did not start: $(cat "$tmp/server.log")"
  start=$(date +%s%N)
  SBX_INSTALL_BASE_URL="http://127.0.0.1:$port" sh "$out/get-sbx.sh" --bin-dir "$tmp/bin" >"$tmp/install.log" 2>&1 ||
    die "the installer failed: $(cat "$tmp/install.log")"
  "$tmp/bin/sbx" --version >/dev/null || die "the installed sbx does not run"
  end=$(date +%s%N)
  echo "  installer (get-sbx.sh, local HTTP server) to a working \`sbx --version\`: $(( (end - start) / 1000000 )) ms (target: under 2 s)"
fi
