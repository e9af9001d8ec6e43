"""The official Daytona Python SDK against our fake (tests/src/fakes/daytona.rs).

If the SDK cannot complete a flow here, the fake is wrong (and so may be our provider, which is
tested against the same fake). Needs Docker and the `fake-daytona` binary (built by
`cargo build -p sbx-tests --bin fake-daytona`; found under $CARGO_TARGET_DIR or target/).
"""

import subprocess
import time

import pytest

from oracle_support import fake_binary, require_docker, require_module


daytona = require_module("daytona")
requests = require_module("requests")


@pytest.fixture(scope="module")
def fake():
    require_docker()
    binary = fake_binary("fake-daytona")
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
    env = {}
    for _ in range(2):
        line = proc.stdout.readline().strip()
        key, _, value = line.partition("=")
        env[key] = value
    assert env.get("DAYTONA_API_URL", "").startswith("http://127.0.0.1:"), env
    yield env
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture()
def client(fake, monkeypatch):
    monkeypatch.setenv("DAYTONA_API_URL", fake["DAYTONA_API_URL"])
    monkeypatch.setenv("DAYTONA_API_KEY", fake["DAYTONA_API_KEY"])
    monkeypatch.delenv("DAYTONA_JWT_TOKEN", raising=False)
    monkeypatch.delenv("DAYTONA_USE_DEPRECATED_POLLING", raising=False)
    return daytona.Daytona()


def test_create_exec_files_preview_delete(client):
    params = daytona.CreateSandboxFromSnapshotParams(env_vars={"ORACLE_VAR": "from-env"}, labels={"oracle": "daytona"})
    sandbox = client.create(params, timeout=120)
    try:
        assert sandbox.state == "started"
        assert sandbox.labels.get("oracle") == "daytona"

        r = sandbox.process.exec("echo hi")
        assert r.exit_code == 0
        assert r.result == "hi\n"
        r = sandbox.process.exec("echo $ORACLE_VAR; echo oops >&2; exit 3")
        assert r.exit_code == 3
        assert "from-env" in r.result and "oops" in r.result
        r = sandbox.process.exec("pwd", cwd="/tmp")
        assert r.result.strip() == "/tmp"

        data = bytes(range(256)) * 100
        sandbox.fs.upload_file(data, "/tmp/oracle/a.bin")
        assert sandbox.fs.download_file("/tmp/oracle/a.bin") == data
        assert sandbox.process.exec("wc -c < /tmp/oracle/a.bin").result.strip() == str(len(data))
        with pytest.raises(Exception):
            sandbox.fs.download_file("/tmp/oracle/missing")

        sandbox.process.exec("mkdir -p /tmp/www && echo served > /tmp/www/index.html")
        sandbox.process.exec("cd /tmp/www && nohup python3 -m http.server 8000 > /tmp/www.log 2>&1 &")
        link = sandbox.get_preview_link(8000)
        assert link.url.startswith("http://")
        headers = {"X-Daytona-Preview-Token": link.token}
        body = None
        for _ in range(100):
            try:
                resp = requests.get(link.url + "/index.html", headers=headers, timeout=5)
                if resp.status_code == 200:
                    body = resp.text
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        assert body == "served\n"
        assert requests.get(link.url + "/index.html", timeout=5).status_code == 401

        found = list(client.list(daytona.ListSandboxesQuery(labels={"oracle": "daytona"})))
        assert [s.id for s in found] == [sandbox.id]
    finally:
        client.delete(sandbox)
    with pytest.raises(daytona.DaytonaNotFoundError):
        client.get(sandbox.id)


def test_stop_start_keeps_files(client):
    sandbox = client.create(timeout=120)
    try:
        sandbox.fs.upload_file(b"kept", "/tmp/kept.txt")
        sandbox.stop()
        assert sandbox.state == "stopped"
        sandbox.start()
        assert sandbox.state == "started"
        assert sandbox.fs.download_file("/tmp/kept.txt") == b"kept"
    finally:
        client.delete(sandbox)


def test_bad_key_is_an_authentication_error(fake, monkeypatch):
    monkeypatch.setenv("DAYTONA_API_URL", fake["DAYTONA_API_URL"])
    monkeypatch.setenv("DAYTONA_API_KEY", "wrong")
    with pytest.raises(daytona.DaytonaAuthenticationError):
        list(daytona.Daytona().list())


def _inject(fake, route, status, retry_after=None, times=1):
    body = {"route": route, "status": status, "times": times}
    if retry_after is not None:
        body["retryAfter"] = retry_after
    base = fake["DAYTONA_API_URL"].rsplit("/api", 1)[0]
    r = requests.post(base + "/_fake/fail", json=body, headers={"Authorization": "Bearer " + fake["DAYTONA_API_KEY"]}, timeout=5)
    assert r.status_code == 204, r.text


def _clear(fake):
    base = fake["DAYTONA_API_URL"].rsplit("/api", 1)[0]
    r = requests.delete(base + "/_fake/fail", headers={"Authorization": "Bearer " + fake["DAYTONA_API_KEY"]}, timeout=5)
    assert r.status_code == 204, r.text


def test_error_bodies_map_to_the_sdk_errors(client, fake):
    """The fake's 429/500/404/409 bodies are what the SDK turns into its typed errors."""
    _inject(fake, "GET /api/sandbox", 429, retry_after=0, times=20)
    with pytest.raises(daytona.DaytonaRateLimitError):
        list(client.list())
    _clear(fake)
    _inject(fake, "POST /api/sandbox", 500)
    with pytest.raises(daytona.DaytonaError) as e:
        client.create(timeout=60)
    assert "Internal server error" in str(e.value)
    with pytest.raises(daytona.DaytonaNotFoundError):
        client.get("no-such-sandbox")
    sandbox = client.create(timeout=120)
    try:
        with pytest.raises(daytona.DaytonaConflictError):
            sandbox.archive()
    finally:
        client.delete(sandbox)
