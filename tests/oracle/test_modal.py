"""The official Modal Python SDK (`modal`) against our fake (tests/src/fakes/modal/).

If the SDK cannot complete a flow here, the fake is wrong (and so may be our provider, which is tested
against the same fake and generated from the same schema). Needs Docker and the `fake-modal` binary
(built by `cargo build -p sbx-tests --bin fake-modal`; found under $CARGO_TARGET_DIR or target/).
The SDK is pointed at the fake by MODAL_SERVER_URL (plain-text HTTP/2 to 127.0.0.1) and a token pair
in the environment; HOME is an empty directory so no ~/.modal.toml interferes. The SDK defaults to
Sandbox V2: the *V2 RPCs, and exec and files through the task command router.
"""

import os
import socket
import subprocess
import time

import pytest

from oracle_support import fake_binary, require_docker, require_module


modal = require_module("modal")
modal_exception = require_module("modal.exception")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    require_docker()
    binary = fake_binary("fake-modal")
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
    env = {}
    for _ in range(6):
        key, _, value = proc.stdout.readline().strip().partition("=")
        env[key] = value
    assert env.get("MODAL_SERVER_URL", "").startswith("http://127.0.0.1:"), env
    env["HOME"] = str(tmp_path_factory.mktemp("home"))
    yield env
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture()
def sdk(fake, monkeypatch):
    """The SDK's configuration comes from the environment (read when its client is made)."""
    for key in ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "HOME"):
        monkeypatch.setenv(key, fake[key])
    monkeypatch.setenv("MODAL_CONFIG_PATH", os.path.join(fake["HOME"], "missing.toml"))
    for key in ("MODAL_PROFILE", "MODAL_ENVIRONMENT", "MODAL_IS_REMOTE", "MODAL_SANDBOX_V2"):
        monkeypatch.delenv(key, raising=False)
    yield fake


def _containers(sandbox_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dev.sbx.fake.sandbox={sandbox_id}"], capture_output=True, text=True
    )
    return out.stdout.split()


def _http_get(host: str, port: int, path: str) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_create_exec_files_tunnels_terminate(sdk):
    app = modal.App.lookup("sbx-oracle", create_if_missing=True)
    image = modal.Image.from_registry(sdk["SBX_MODAL_IMAGE"])
    sb = modal.Sandbox.create(
        "sleep",
        "infinity",
        app=app,
        image=image,
        encrypted_ports=[2468],
        unencrypted_ports=[8000],
        timeout=600,
        workdir="/tmp",
        secrets=[modal.Secret.from_dict({"ORACLE_SECRET": "from-a-secret"})],
        env={"ORACLE_ENV": "from-env"},
        cpu=1.0,
        memory=512,
    )
    try:
        sid = sb.object_id
        assert sid.startswith("sb-") and len(sid) != 25, "a V2 id (a 22-char one would switch the SDK to V1)"
        assert _containers(sid), "a container backs the sandbox"

        # exec: stdout, stderr and the exit code, through the task command router.
        p = sb.exec("echo", "hi")
        assert p.stdout.read() == "hi\n"
        assert p.wait() == 0
        p = sb.exec("sh", "-c", "echo $ORACLE_SECRET $ORACLE_ENV; pwd; echo oops >&2; exit 3")
        assert p.wait() == 3
        assert p.stdout.read() == "from-a-secret from-env\n/tmp\n"
        assert p.stderr.read() == "oops\n"
        p = sb.exec("sh", "-c", "printf '%s' \"$X\"", env={"X": "per-exec"}, workdir="/")
        assert p.stdout.read() == "per-exec" and p.wait() == 0

        # Files: written through the in-sandbox helper's stdin, read back from its stdout.
        sb.filesystem.write_text("written by the SDK\n", "/tmp/oracle/a.txt")
        assert sb.filesystem.read_text("/tmp/oracle/a.txt") == "written by the SDK\n"
        data = bytes(range(256)) * 1000
        sb.filesystem.write_bytes(data, "/tmp/oracle/b.bin")
        assert sb.filesystem.read_bytes("/tmp/oracle/b.bin") == data
        assert sb.exec("wc", "-c", "/tmp/oracle/b.bin").stdout.read().split()[0] == str(len(data))
        with pytest.raises(Exception) as exc:
            sb.filesystem.read_text("/tmp/oracle/missing")
        assert "NotFound" in type(exc.value).__name__ or "no such file" in str(exc.value), repr(exc.value)

        # Tunnels: the encrypted port's URL has the SDK's shape; the unencrypted one reaches a server.
        tunnels = sb.tunnels()
        assert set(tunnels) == {2468, 8000}
        assert tunnels[2468].url.startswith("https://127.0.0.1:")
        sb.exec("sh", "-c", "mkdir -p /tmp/www && echo served > /tmp/www/index.html").wait()
        sb.exec("sh", "-c", "cd /tmp/www && exec python3 -m http.server 8000 >/dev/null 2>&1")
        host, port = tunnels[8000].tcp_socket
        body = b""
        for _ in range(100):
            try:
                body = _http_get(host, port, "/index.html")
                if b"200" in body.split(b"\r\n", 1)[0]:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert body.endswith(b"served\n"), body[:200]

        # Looking the sandbox up again, and listing the app's sandboxes.
        again = modal.Sandbox.from_id(sid)
        assert again.poll() is None, "still running"
        assert sid in [s.object_id for s in modal.Sandbox.list(app_id=app.app_id)]
    finally:
        sb.terminate()
    assert sb.poll() == 137, "terminated"
    assert _containers(sid) == [], "terminate removes the container"
    with pytest.raises(Exception):
        sb.exec("true").wait()


def test_network_allowlist_and_a_bad_token(sdk, monkeypatch):
    app = modal.App.lookup("sbx-oracle", create_if_missing=True)
    image = modal.Image.from_registry(sdk["SBX_MODAL_IMAGE"])
    sb = modal.Sandbox.create(app=app, image=image, outbound_cidr_allowlist=["10.0.0.0/8"], timeout=120)
    try:
        p = sb.exec("echo", "closed")
        assert p.stdout.read() == "closed\n"
        nets = subprocess.run(
            ["docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", _containers(sb.object_id)[0]],
            capture_output=True,
            text=True,
        ).stdout
        assert nets.strip().endswith("-internal"), nets
    finally:
        sb.terminate()

    # A refused token is the SDK's AuthError (UNAUTHENTICATED), before anything is made.
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-wrong")
    client = modal.Client.from_credentials(sdk["MODAL_TOKEN_ID"], "as-wrong")
    with pytest.raises(modal_exception.AuthError):
        modal.App.lookup("sbx-oracle-denied", create_if_missing=True, client=client)
