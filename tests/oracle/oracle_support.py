"""What every oracle needs: its SDK, Docker and a fake binary. A missing one fails the oracle with what
to install; it never skips (an oracle that skips proves nothing)."""

import importlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def missing(why: str):
    """Fails the oracle: its dependency is not there."""
    pytest.fail(f"{why} (install/test-deps.sh installs what the oracles need)", pytrace=False)


def require_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python module `{name}` is not installed (install tests/oracle/requirements.txt)")


def require_docker():
    if shutil.which("docker") is None or subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        missing("Docker is not available")


def fake_binary(name: str) -> Path:
    """The fake's binary under $CARGO_TARGET_DIR or target/, built when it is not there."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    p = target / "debug" / name
    if not p.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "sbx-tests", "--bin", name], cwd=ROOT, check=True)
    if not p.exists():
        missing(f"{name} is not built: cargo build -p sbx-tests --bin {name}")
    return p
