#!/usr/bin/env bash
# Installs sbx (the coding-agent sandbox CLI) and its static runtime, sbx-agent, from this checkout.
#
#   bash install/install.sh [--prefix DIR]     (default prefix: ~/.local)
#
# Puts `sbx` and the static `sbx-agent` side by side in PREFIX/bin (sbx looks for the runtime next to
# itself first), and warns when another program called `sbx` (Docker ships an unrelated one) would be
# found first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$HOME/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
bin="$prefix/bin"
mkdir -p "$bin"

echo "building sbx (release)..." >&2
cargo build --locked --release -p sbx-cli >&2
echo "building the static runtime..." >&2
runtime="$(bash install/build-runtime.sh)"

install -m 0755 target/release/sbx "$bin/sbx"
install -m 0755 "$runtime" "$bin/sbx-agent"
echo "installed $bin/sbx and $bin/sbx-agent" >&2

# Which `sbx` does the shell find first?
first="$(command -v sbx 2>/dev/null || true)"
if [ -n "$first" ] && [ "$(readlink -f "$first")" != "$(readlink -f "$bin/sbx")" ]; then
  echo >&2
  echo "warning: another \`sbx\` comes first on your PATH: $first" >&2
  if "$first" --version 2>/dev/null | grep -q "coding-agent sandbox"; then
    echo "  (it is an older copy of this tool)" >&2
  else
    echo "  It is not this tool (Docker ships an unrelated CLI called sbx)." >&2
  fi
  echo "  Put $bin earlier in PATH, or call $bin/sbx directly." >&2
elif [ -z "$first" ]; then
  case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "note: $bin is not on your PATH; add it: export PATH=\"$bin:\$PATH\"" >&2 ;;
  esac
fi
"$bin/sbx" --version
