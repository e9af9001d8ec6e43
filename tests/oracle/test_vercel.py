"""The official Vercel Sandbox Python SDK (`vercel-sandbox`) against our fake (tests/src/fakes/vercel/).

If the SDK cannot complete a flow here, the fake is wrong (and so may be our provider, which is
tested against the same fake). Needs Docker and the `fake-vercel` binary (built by
`cargo build -p sbx-tests --bin fake-vercel`; found under $CARGO_TARGET_DIR or target/). The SDK has
no environment variable for its base URL: it is set per SDK session (`SandboxServiceOptions`).
"""

import json
import subprocess
import time
import urllib.request

import pytest

from oracle_support import fake_binary, require_docker, require_module


vs = require_module("vercel.sandbox.sync")
vercel_api = require_module("vercel.api")
vercel_sandbox = require_module("vercel.sandbox")
requests = require_module("requests")


@pytest.fixture(scope="module")
def fake():
    require_docker()
    binary = fake_binary("fake-vercel")
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
    env = {}
    for _ in range(4):
        key, _, value = proc.stdout.readline().strip().partition("=")
        env[key] = value
    assert env.get("SBX_VERCEL_API_URL", "").startswith("http://127.0.0.1:"), env
    yield env
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture()
def sdk(fake, monkeypatch):
    """An SDK session pointed at the fake, with access-token credentials from the environment (an OIDC
    token would win over them, so none is left set)."""
    monkeypatch.setenv("VERCEL_TOKEN", fake["VERCEL_TOKEN"])
    monkeypatch.setenv("VERCEL_TEAM_ID", fake["VERCEL_TEAM_ID"])
    monkeypatch.setenv("VERCEL_PROJECT_ID", fake["VERCEL_PROJECT_ID"])
    monkeypatch.delenv("VERCEL_OIDC_TOKEN", raising=False)
    monkeypatch.delenv("VERCEL_OIDC_TOKEN_FILE", raising=False)
    options = vs.SandboxServiceOptions(base_url=fake["SBX_VERCEL_API_URL"])
    with vercel_api.session(service_options=[options]):
        yield fake


def _containers(name: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dev.sbx.fake.sandbox={name}"], capture_output=True, text=True
    )
    return out.stdout.split()


def _fault(fake: dict, **fault) -> None:
    url = fake["SBX_VERCEL_API_URL"].removesuffix("/api") + "/_fake/fail"
    req = urllib.request.Request(url, data=json.dumps(fault).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def test_create_run_files_route_extend_stop(sdk):
    sandbox = vs.create_sandbox(
        ports=[8000], execution_time_limit=120, env={"ORACLE_VAR": "from-env"}, tags={"oracle": "vercel"}
    )
    name = sandbox.name
    try:
        assert sandbox.status == "running"
        assert _containers(name), "a container backs the sandbox"

        # Attached run: stdout, stderr and the exit code (NDJSON command/output/command records).
        r = sandbox.run_process("echo", ["hi"], capture_output=True)
        assert (r.returncode, r.stdout) == (0, "hi\n")
        r = sandbox.run_process("sh", ["-c", "echo $ORACLE_VAR; echo oops >&2; exit 3"], capture_output=True)
        assert r.returncode == 3
        assert r.stdout == "from-env\n" and r.stderr == "oops\n"
        r = sandbox.run_process("pwd", capture_output=True)
        assert r.stdout == "/vercel/sandbox\n", "Vercel's working directory"

        # Detached: start, wait, then read the logs (replayed from the beginning).
        p = sandbox.create_process("sh", ["-c", "echo one; sleep 0.3; echo two >&2; exit 4"])
        assert p.wait() == 4
        out, err = p.communicate()
        assert (out, err) == ("one\n", "two\n")

        # Files: a gzip tar in, raw bytes out, relative paths against the working directory.
        sandbox.fs.write_text("/tmp/oracle/a.txt", "written by the SDK\n")
        assert sandbox.fs.read_text("/tmp/oracle/a.txt") == "written by the SDK\n"
        data = bytes(range(256)) * 100
        sandbox.fs.write_bytes("notes/b.bin", data)
        assert sandbox.fs.read_bytes("/vercel/sandbox/notes/b.bin") == data
        assert sandbox.run_process("wc", ["-c", "/vercel/sandbox/notes/b.bin"], capture_output=True).stdout.split()[0] == str(
            len(data)
        )
        with pytest.raises(vercel_sandbox.SandboxPathNotFoundError):
            sandbox.fs.read_bytes("/tmp/oracle/missing")

        # The port's route reaches a server in the sandbox.
        sandbox.run_process("sh", ["-c", "mkdir -p /tmp/www && echo served > /tmp/www/index.html"])
        sandbox.create_process("python3", ["-m", "http.server", "8000"], cwd="/tmp/www")
        url = next(r.url for r in sandbox.routes if r.port == 8000)
        body = None
        for _ in range(100):
            try:
                resp = requests.get(url + "/index.html", timeout=5)
                if resp.status_code == 200:
                    body = resp.text
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        assert body == "served\n"

        # Extend the timeout: the session's limit grows by what was asked.
        before = sandbox.session().execution_time_limit
        sandbox.extend_execution_time_limit(60)
        assert sandbox.session().execution_time_limit.total_seconds() == before.total_seconds() + 60

        query = vercel_sandbox.SandboxQueryByCreatedAt(tag=vercel_sandbox.TagFilter(key="oracle", value="vercel"))
        found = list(vs.query_sandboxes(query=query, page_size=1))
        assert [s.name for s in found] == [name]

        sandbox.stop()
        assert vs.get_sandbox(name=name).status == "stopped"
    finally:
        sandbox.destroy()
    assert _containers(name) == [], "destroy removes the container"
    with pytest.raises(vercel_sandbox.SandboxApiError) as exc:
        vs.get_sandbox(name=name)
    assert exc.value.status_code == 404


def test_a_stopped_sandbox_resumes_in_a_new_session(sdk):
    sandbox = vs.create_sandbox(execution_time_limit=120)
    try:
        first = sandbox.session().id
        sandbox.stop()
        # The SDK resumes a stopped sandbox by itself (GET ?resume=true) and runs the command there.
        r = sandbox.run_process("echo", ["back"], capture_output=True)
        assert r.stdout == "back\n"
        assert sandbox.session().id != first
    finally:
        sandbox.destroy()


def test_errors_the_sdk_reads_from_the_fake(sdk, monkeypatch):
    # A 429 or a 500 on create is the SDK's SandboxApiError with the status and Vercel's code.
    _fault(sdk, route="POST /api/v3/sandboxes", status=429, retryAfter=0)
    with pytest.raises(vercel_sandbox.SandboxApiError) as exc:
        vs.create_sandbox()
    assert exc.value.status_code == 429
    _fault(sdk, route="POST /api/v3/sandboxes", status=500)
    with pytest.raises(vercel_sandbox.SandboxApiError) as exc:
        vs.create_sandbox()
    assert exc.value.status_code == 500 and exc.value.code == "internal_server_error"
    # A bad token: 403 forbidden.
    monkeypatch.setenv("VERCEL_TOKEN", "wrong")
    with pytest.raises(vercel_sandbox.SandboxApiError) as exc:
        vs.create_sandbox()
    assert exc.value.status_code == 403 and exc.value.code == "forbidden"
    # This fake's containers are named fake-vercel-<its port>-<name> (other fakes may run meanwhile).
    port = sdk["SBX_VERCEL_API_URL"].removesuffix("/api").rsplit(":", 1)[1]
    mine = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^fake-vercel-{port}-"], capture_output=True, text=True
    ).stdout.split()
    assert mine == [], "nothing was created"
