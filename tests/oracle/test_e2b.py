"""The official E2B Python SDK (`e2b`) against our fake (tests/src/fakes/e2b.rs).

If the SDK cannot complete a flow here, the fake is wrong (and so may be our provider, which is
tested against the same fake). Needs Docker and the `fake-e2b` binary, found under
$CARGO_TARGET_DIR/debug or target/debug and built with `cargo build -p sbx-tests --bin fake-e2b`
when missing.

The SDK is pointed at the fake the documented way: E2B_API_URL and E2B_SANDBOX_URL (one port
serves both planes; envd requests carry `E2b-Sandbox-Id`), E2B_API_KEY.
"""

import subprocess
import time
import urllib.error
import urllib.request

import pytest

from oracle_support import fake_binary, require_docker, require_module


e2b = require_module("e2b")

API_KEY = "e2b_oracle_key"


def _containers(sandbox_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", "label=dev.sbx.fake=e2b",
         "--filter", f"label=dev.sbx.fake.e2b-sandbox={sandbox_id}"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.split()


@pytest.fixture(scope="module")
def fake():
    require_docker()
    proc = subprocess.Popen([str(fake_binary("fake-e2b")), "--api-key", API_KEY], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield url
    proc.terminate()
    proc.wait(timeout=60)


@pytest.fixture()
def env(fake, monkeypatch):
    monkeypatch.setenv("E2B_API_KEY", API_KEY)
    monkeypatch.setenv("E2B_API_URL", fake)
    monkeypatch.setenv("E2B_SANDBOX_URL", fake)
    monkeypatch.delenv("E2B_DOMAIN", raising=False)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    return fake


def _get(fake_url: str, host: str, path: str = "/") -> tuple[int, bytes]:
    """A request to the fake's address with the public host in the Host header (no DNS needed)."""
    req = urllib.request.Request(fake_url + path, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_full_flow(env):
    sbx = e2b.Sandbox.create(metadata={"owner": "oracle"}, envs={"GREETING": "hello"}, timeout=120)
    try:
        assert sbx.sandbox_id
        assert len(_containers(sbx.sandbox_id)) == 1, "one container per sandbox"

        # A command: stdout and exit code; sandbox-wide env reaches it.
        r = sbx.commands.run("echo $GREETING; echo to-stderr >&2")
        assert r.exit_code == 0
        assert r.stdout == "hello\n"
        assert r.stderr == "to-stderr\n"
        with pytest.raises(e2b.CommandExitException) as exc:
            sbx.commands.run("echo failing >&2; exit 3")
        assert exc.value.exit_code == 3
        assert "failing" in exc.value.stderr
        r = sbx.commands.run("pwd", cwd="/tmp", envs={"X": "1"})
        assert r.stdout.strip() == "/tmp"

        # Files: write, read back, exists, list.
        sbx.files.write("/home/user/dir/a.txt", "file contents\n")
        assert sbx.files.read("/home/user/dir/a.txt") == "file contents\n"
        assert sbx.commands.run("cat /home/user/dir/a.txt").stdout == "file contents\n"
        sbx.files.write("/tmp/bin.dat", b"\x00\x01\xff")
        assert sbx.files.read("/tmp/bin.dat", format="bytes") == b"\x00\x01\xff"
        assert sbx.files.exists("/home/user/dir/a.txt")
        assert not sbx.files.exists("/home/user/nope")
        names = [e.name for e in sbx.files.list("/home/user/dir")]
        assert names == ["a.txt"]
        with pytest.raises(e2b.NotFoundException):
            sbx.files.read("/home/user/missing.txt")

        # Info and listing by metadata.
        info = sbx.get_info()
        assert info.metadata == {"owner": "oracle"}
        assert info.state.value == "running"
        listed = e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"owner": "oracle"})).next_items()
        assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
        assert e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"owner": "someone-else"})).next_items() == []

        # A server on a port, reached at the public host of that port.
        sbx.commands.run("cd /tmp && python3 -m http.server 8000", background=True)
        host = sbx.get_host(8000)
        assert host.startswith(f"8000-{sbx.sandbox_id}."), host
        deadline = time.monotonic() + 20
        status, body = 0, b""
        while time.monotonic() < deadline:
            status, body = _get(env, host, "/bin.dat")
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, body
        assert body == b"\x00\x01\xff"
        status, body = _get(env, sbx.get_host(8001))
        assert status == 502 and b"port is not open" in body

        sbx.set_timeout(300)
    finally:
        assert sbx.kill() is True
    assert _containers(sbx.sandbox_id) == [], "kill removes the container"
    assert sbx.kill() is False, "a second kill is a 404, which the SDK reports as False"
    status, body = _get(env, f"8000-{sbx.sandbox_id}.e2b.fake")
    assert status == 502 and b"The sandbox was not found" in body


def test_pause_and_connect_keep_files(env):
    sbx = e2b.Sandbox.create(timeout=120)
    try:
        sbx.files.write("/home/user/kept.txt", "still here")
        assert sbx.pause() is True
        assert sbx.get_info().state.value == "paused"
        assert sbx.pause() is False, "pausing a paused sandbox is a 409, reported as False"
        resumed = e2b.Sandbox.connect(sbx.sandbox_id, timeout=300)
        assert resumed.files.read("/home/user/kept.txt") == "still here"
        assert resumed.commands.run("echo back").stdout == "back\n"
    finally:
        sbx.kill()
    with pytest.raises(e2b.SandboxNotFoundException):
        e2b.Sandbox.connect(sbx.sandbox_id)


def test_errors_the_sdk_maps(env, monkeypatch):
    monkeypatch.setenv("E2B_API_KEY", "wrong-key")
    with pytest.raises(e2b.AuthenticationException):
        e2b.Sandbox.create()
    monkeypatch.setenv("E2B_API_KEY", API_KEY)
    with pytest.raises(e2b.SandboxException) as exc:
        e2b.Sandbox.create(template="no-such-template")
    assert "not found" in str(exc.value)
    with pytest.raises(e2b.SandboxNotFoundException):
        e2b.Sandbox.get_info("inotasandbox00000000")


def _fault(fake_url: str, **fault) -> None:
    import json

    req = urllib.request.Request(
        fake_url + "/_fake/faults", data=json.dumps(fault).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def test_the_sdk_reads_the_fakes_faults_like_e2bs(env):
    # 429 with Retry-After: the SDK waits that long, retries, and gets its sandbox.
    _fault(env, route="create", status=429, retryAfter=1)
    started = time.monotonic()
    sbx = e2b.Sandbox.create(metadata={"case": "retried"})
    assert time.monotonic() - started >= 1.0, "Retry-After: 1 was honoured"
    try:
        listed = e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"case": "retried"})).next_items()
        assert len(listed) == 1, "one sandbox, not two"
    finally:
        sbx.kill()
    # A 429 that outlasts the SDK's retries is its RateLimitException.
    _fault(env, route="create", status=429, retryAfter=0, times=5)
    with pytest.raises(e2b.RateLimitException):
        e2b.Sandbox.create()
    _fault(env, clear=True)
    # 500 is not retried by the SDK: a SandboxException with E2B's message.
    _fault(env, route="create", status=500)
    with pytest.raises(e2b.SandboxException) as exc:
        e2b.Sandbox.create()
    assert "500" in str(exc.value)
    # 409 on pause is "already paused": False, not an error.
    sbx = e2b.Sandbox.create()
    try:
        _fault(env, route="pause", status=409)
        assert sbx.pause() is False
    finally:
        sbx.kill()
