"""sbx's E2B template: E2B's base image with the static `sbx-agent` runtime preinstalled.

Built with the official SDK's template builder (`pip install e2b`, `E2B_API_KEY` set):

    python3 templates/e2b/template.py /path/to/static/sbx-agent [NAME]

NAME defaults to `sbx` (what `sbx up --provider e2b` uses unless SBX_E2B_TEMPLATE or --image says
otherwise). `build.sh cloud` calls this with the runtime from install/build-runtime.sh.
"""

import shutil
import sys
import tempfile
from pathlib import Path

from e2b import Template

RUNTIME_PATH = "/usr/local/bin/sbx-agent"


def template(context: Path) -> Template:
    return (
        Template(file_context_path=str(context))
        .from_base_image()  # e2bdev/base: Debian with bash, tar, python3, user `user` with sudo
        .copy("sbx-agent", RUNTIME_PATH, user="root", mode=0o755)
        # The bootstrap probes `sbx-agent --version` and skips the upload when it matches.
        .run_cmd(f"{RUNTIME_PATH} --version", user="root")
    )


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runtime = Path(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else "sbx"
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy2(runtime, Path(ctx) / "sbx-agent")
        info = Template.build(
            template(Path(ctx)),
            name,
            cpu_count=2,
            memory_mb=2048,
            on_build_logs=lambda entry: print(entry, file=sys.stderr),
        )
    print(info)


if __name__ == "__main__":
    main()
