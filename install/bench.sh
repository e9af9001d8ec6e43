#!/usr/bin/env bash
# Benchmarks that print ratios against a baseline measured in the same run (never timed tests):
#   transfer  `sbx cp` (tree and one big file, both ways) and the runtime's file API vs `docker cp`
#   exec      `sbx exec -- cat` of 200 MiB vs `docker exec cat`
# Builds the release `sbx` and, unless SBX_RUNTIME points at one, the static runtime first.
#
# Usage: bash install/bench.sh [BENCH...]   (default: transfer exec)
# Env: SBX_BENCH_BIG_MIB, SBX_BENCH_TREE_FILES, SBX_BENCH_ROUNDS shrink the transfer benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(transfer exec)
cargo build --locked --release -p sbx-cli --bin sbx >&2
if [ -z "${SBX_RUNTIME:-}" ]; then
  SBX_RUNTIME="$(readlink -f "$(bash install/build-runtime.sh)")"
  export SBX_RUNTIME
fi
args=()
for b in "${benches[@]}"; do args+=(--bench "$b"); done
cargo bench --locked -p sbx-tests "${args[@]}"
