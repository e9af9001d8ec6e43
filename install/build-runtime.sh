#!/usr/bin/env bash
# Builds the statically linked x86_64 Linux `sbx-agent` that sbx uploads into sandboxes.
#
# glibc with crt-static gives a static-pie binary with no dynamic dependencies (`ldd` says "statically
# linked"); DNS goes through the pure-Rust hickory resolver, so no NSS modules are needed. Passing
# --target explicitly keeps RUSTFLAGS away from build scripts and proc-macros.
#
# Output: $CARGO_TARGET_DIR (default target)/x86_64-unknown-linux-gnu/runtime/sbx-agent, printed on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static ${RUSTFLAGS:-}" \
  cargo build --locked --profile runtime --target "$target" -p sbx-agent --bin sbx-agent "$@" >&2
out="${CARGO_TARGET_DIR:-target}/$target/runtime/sbx-agent"
if ldd "$out" 2>&1 | grep -q "=>"; then
  echo "build-runtime: $out has dynamic dependencies:" >&2
  ldd "$out" >&2
  exit 1
fi
echo "build-runtime: $(du -h "$out" | cut -f1) $(file -b "$out" 2>/dev/null | cut -d, -f1-2)" >&2
echo "$out"
