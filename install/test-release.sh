#!/usr/bin/env bash
# The release path end to end, a step of install/test.sh. Needs Docker, the base image and the test venv
# (install/test-deps.sh provides them) and FAILS, never skips, when one is missing.
#
#  1. bash install/release.sh: the archive, its .sha256, the manifest, the installer; prints the figures
#  2. tests/release/check_workflows.py: action.yml and .github/workflows are valid YAML whose steps name
#     only scripts that exist; the release workflow runs exactly install/release.sh, as step 1 does
#  3. the static sbx and sbx-agent run in an empty image (nothing but the binaries)
#  4. tests/release/in-container.sh, in a clean container from the base image (no Rust, no repo,
#     --network none: a local HTTP server on the container's own loopback serves the release): a
#     corrupted archive and a wrong .sha256 are refused and nothing is installed; the installer installs
#     into a temp prefix, warns about Docker's sbx on PATH, is idempotent; the installed sbx runs
#     --version, self-update and local up -> exec -> down; the composite action's shell steps run
#     (tests/release/run_action.py), leave sbx on PATH and run `sbx run` of templates/run/quickstart.yaml
#
#   bash install/test-release.sh          (uses CARGO_TARGET_DIR like the rest of the suite)
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-release: FAIL: $*" >&2; exit 1; }
step() { printf '\n--> %s\n' "$*" >&2; }

command -v docker >/dev/null || fail "docker is required"
docker info >/dev/null 2>&1 || fail "docker does not answer"
[ -n "${SBX_BASE_IMAGE:-}" ] || fail "SBX_BASE_IMAGE is not set (install/test-deps.sh builds the base image and writes env.sh)"
docker image inspect "$SBX_BASE_IMAGE" >/dev/null 2>&1 || fail "no image $SBX_BASE_IMAGE (run install/test-deps.sh)"
py="${SBX_TEST_VENV:-}/bin/python"
[ -x "$py" ] || fail "no test venv python at $py (run install/test-deps.sh)"

work=$(mktemp -d)
label=org.sbx.test=release
container= image=
cleanup() {
  [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1
  [ -n "$image" ] && docker rmi "$image" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

step "release archives (install/release.sh)"
# The static-check profile: the release path without fat LTO's build time (releases use `runtime`).
bash install/release.sh --out "$work/dist" --profile "${SBX_RELEASE_TEST_PROFILE:-static-check}"
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$work/dist/sbx-manifest.json")
target=x86_64-unknown-linux-gnu
archive="sbx-$version-$target.tar.gz"
[ -f "$work/dist/$archive" ] || fail "install/release.sh wrote no $archive"
(cd "$work/dist" && sha256sum -c --quiet "$archive.sha256") || fail "$archive.sha256 does not match"
"$py" - "$work/dist" "$version" <<'PY' || fail "sbx-manifest.json: $(cat "$work/dist/sbx-manifest.json")"
import hashlib, json, os, sys
dist, version = sys.argv[1:]
m = json.load(open(os.path.join(dist, "sbx-manifest.json")))
assert m["version"] == version and m["archives"], m
for a in m["archives"]:
    data = open(os.path.join(dist, a["file"]), "rb").read()
    assert a["size"] == len(data) and a["sha256"] == hashlib.sha256(data).hexdigest(), a
    assert a["file"] == f"sbx-{version}-{a['target']}.tar.gz", a
for n in m["not_built"]:
    assert n["target"] and n["reason"], n
PY

step "action.yml and the workflows"
"$py" tests/release/check_workflows.py . --dump-action "$work/action.json"

step "the static binaries in an empty image"
mkdir -p "$work/bare"
tar -xzf "$work/dist/$archive" -C "$work/bare"
image="sbx-release-test:$$"
tar -C "$work/bare/sbx-$version-$target" -cf - sbx sbx-agent |
  docker import --change "LABEL $label" - "$image" >/dev/null
out=$(docker run --rm --label "$label" --network none "$image" /sbx --version) || fail "the static sbx does not run in an empty image"
case "$out" in *"coding-agent sandbox CLI"*) ;; *) fail "sbx --version in an empty image: $out" ;; esac
docker run --rm --label "$label" --network none "$image" /sbx-agent --version >/dev/null || fail "sbx-agent does not run in an empty image"
echo "  $out" >&2

step "install as a user would, in a clean container from $SBX_BASE_IMAGE"
bash install/release-www.sh "$work/dist" "$work/w/srv/good" >/dev/null
cp -r "$work/w/srv/good" "$work/w/srv/corrupt"
cp -r "$work/w/srv/good" "$work/w/srv/badsum"
# One byte of the archive changed; the .sha256 and the manifest left as they were.
"$py" - "$work/w/srv/corrupt/download/v$version/$archive" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x01
open(sys.argv[1], "wb").write(b)
PY
# A .sha256 that names another file's checksum.
echo "$(sha256sum "$work/dist/sbx-manifest.json" | cut -d' ' -f1)  $archive" >"$work/w/srv/badsum/download/v$version/$archive.sha256"
# What the runner checks out at github.action_path: the action and the installer it runs.
mkdir -p "$work/w/action/install"
cp action.yml "$work/w/action/"
cp install/get-sbx.sh "$work/w/action/install/"
cp "$work/action.json" tests/release/run_action.py tests/release/in-container.sh "$work/w/"
cp -r templates/run "$work/w/run"
chmod -R a+rX "$work/w"
container=$(docker run -d --label "$label" --network none -v "$work/w:/w:ro" "$SBX_BASE_IMAGE" sleep infinity)
docker exec "$container" bash /w/in-container.sh "$version" "$target" || fail "in the clean container (above)"
step "release path ok"
