"""`sbx acp` driven by the official ACP Python SDK (`agent-client-protocol`, pinned in requirements.txt) as
the editor would: initialize, a new session, a prompt whose tool call asks permission (allowed, then
denied), and a cancel mid-turn, against the built-in mock agent in a local sandbox. The SDK's pydantic
models validate every message sbx sends, so a message off the schema fails the test."""

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from oracle_support import ROOT, missing, require_module

acp = require_module("acp")
schema = require_module("acp.schema")


def sbx_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    p = target / "debug" / "sbx"
    if not p.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "sbx-cli"], cwd=ROOT, check=True)
    if not p.exists():
        missing("sbx is not built: cargo build -p sbx-cli")
    return p


class Editor:
    """The client side: records updates, answers permission requests with `self.answer`."""

    def __init__(self):
        self.updates = []
        self.asked = []
        self.answer = "allow_once"

    async def request_permission(self, session_id, tool_call, options, **kwargs):
        self.asked.append((tool_call, [o.option_id for o in options]))
        return schema.RequestPermissionResponse(outcome=schema.AllowedOutcome(outcome="selected", option_id=self.answer))

    async def session_update(self, session_id, update, **kwargs):
        self.updates.append(update)

    def kinds(self):
        return [u.session_update for u in self.updates]

    def text(self):
        return "".join(u.content.text for u in self.updates if u.session_update == "agent_message_chunk")

    def on_connect(self, conn):
        pass


@pytest.fixture
def sandbox(tmp_path):
    sbx = sbx_binary()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"), NO_COLOR="1")
    name = "acp-" + uuid.uuid4().hex[:8]
    up = subprocess.run([str(sbx), "up", "--provider", "local", "--name", name], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    try:
        yield sbx, name, env
    finally:
        subprocess.run([str(sbx), "down", name], env=env, capture_output=True)


def sbx_cat(sandbox, path):
    sbx, name, env = sandbox
    return subprocess.run([str(sbx), "fs", "cat", name, path], env=env, capture_output=True, text=True)


def test_sbx_acp_serves_an_editor(sandbox):
    sbx, name, env = sandbox
    async def main():
        editor = Editor()
        args = ["acp", name, "--agent", "mock"]
        async with acp.spawn_agent_process(editor, str(sbx), *args, env=env) as (conn, _proc):
            init = await asyncio.wait_for(conn.initialize(protocol_version=acp.PROTOCOL_VERSION), 30)
            assert init.protocol_version == 1
            assert init.agent_info.name == "sbx"
            sess = await conn.new_session(cwd=str(Path.cwd()), mcp_servers=[])
            sid = sess.session_id

            # A tool call that asks permission, allowed: the file is written in the sandbox.
            resp = await asyncio.wait_for(conn.prompt(session_id=sid, prompt=[acp.text_block("write a.txt hello from acp\necho done")]), 60)
            assert resp.stop_reason == "end_turn"
            assert len(editor.asked) == 1 and editor.asked[0][1] == ["allow_once", "allow_always", "reject_once"]
            assert "tool_call" in editor.kinds() and "tool_call_update" in editor.kinds()
            done = [u for u in editor.updates if u.session_update == "tool_call_update" and u.status == "completed"]
            assert done, editor.kinds()
            assert "done" in editor.text()
            assert resp.usage is not None and resp.usage.input_tokens > 0

            # Denied: the tool never runs.
            editor.answer = "reject_once"
            resp = await asyncio.wait_for(conn.prompt(session_id=sid, prompt=[acp.text_block("write b.txt nope")]), 60)
            assert resp.stop_reason == "end_turn"
            assert any(u.session_update == "tool_call_update" and u.status == "failed" for u in editor.updates)

            # A question comes as a permission request whose options are its answers.
            editor.answer = "answer_0"
            resp = await asyncio.wait_for(conn.prompt(session_id=sid, prompt=[acp.text_block("ask Ship it?")]), 60)
            assert resp.stop_reason == "end_turn"
            assert editor.asked[-1][1] == ["answer_0", "answer_1", "no_answer"]
            assert "you answered: yes" in editor.text()

            # Cancel mid-turn.
            editor.updates.clear()
            turn = asyncio.ensure_future(conn.prompt(session_id=sid, prompt=[acp.text_block("echo started\nsleep 30000\necho never")]))
            for _ in range(300):
                if "started" in editor.text():
                    break
                await asyncio.sleep(0.05)
            assert "started" in editor.text(), editor.kinds()
            await conn.cancel(session_id=sid)
            resp = await asyncio.wait_for(turn, 20)
            assert resp.stop_reason == "cancelled"
            assert "never" not in editor.text()

    asyncio.run(main())
    # The session worked in the sandbox's root (no --cwd): the file is there, the denied one is not.
    assert sbx_cat(sandbox, "a.txt").stdout == "hello from acp"
    assert sbx_cat(sandbox, "b.txt").returncode != 0


def sbx_names(sbx, env):
    ls = subprocess.run([str(sbx), "ls", "--json"], env=env, capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr
    return [s["name"] for s in json.loads(ls.stdout)]


def test_sbx_acp_up_makes_the_sandbox_and_rm_removes_it(tmp_path):
    """`sbx acp NAME --up --provider local --rm`: the editor's one command makes the sandbox, serves a
    session in it (mode switches included), and removes it when the editor closes its stdin."""
    sbx = sbx_binary()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"), NO_COLOR="1")
    name = "acpup-" + uuid.uuid4().hex[:6]
    seen = {}

    async def main(*extra):
        editor = Editor()
        args = ["acp", name, "--agent", "mock", "--up", "--provider", "local", *extra]
        # A long shutdown grace: --rm tears the sandbox down after stdin closes.
        async with acp.spawn_agent_process(editor, str(sbx), *args, env=env, transport_kwargs={"shutdown_timeout": 30}) as (conn, proc):
            await asyncio.wait_for(conn.initialize(protocol_version=acp.PROTOCOL_VERSION), 120)
            sess = await conn.new_session(cwd=str(Path.cwd()), mcp_servers=[])
            sid = sess.session_id
            assert sess.modes.current_mode_id == "default"
            # The mock has one mode: switching to it works, to any other is refused with the list.
            await asyncio.wait_for(conn.set_session_mode(session_id=sid, mode_id="default"), 30)
            assert editor.kinds()[-1] == "current_mode_update"
            with pytest.raises(acp.RequestError) as refused:
                await asyncio.wait_for(conn.set_session_mode(session_id=sid, mode_id="plan"), 30)
            assert "no mode `plan`" in str(refused.value), refused.value
            resp = await asyncio.wait_for(conn.prompt(session_id=sid, prompt=[acp.text_block("write up.txt made by --up")]), 60)
            assert resp.stop_reason == "end_turn"
            seen["names"] = sbx_names(sbx, env)
            seen["file"] = subprocess.run([str(sbx), "fs", "cat", name, "up.txt"], env=env, capture_output=True, text=True).stdout
        seen["code"] = proc.returncode

    # --rm: made for the editor, removed when it closes stdin.
    asyncio.run(main("--rm"))
    assert name in seen["names"] and seen["file"] == "made by --up"
    assert seen["code"] == 0
    assert name not in sbx_names(sbx, env), "--rm removed the sandbox once the editor closed stdin"
    # Without --rm it stays; a later --up --rm uses it as it is and, not having made it, leaves it.
    asyncio.run(main())
    assert seen["code"] == 0 and name in sbx_names(sbx, env)
    try:
        subprocess.run([str(sbx), "exec", name, "--", "sh", "-c", "echo kept > kept.txt"], env=env, check=True)
        asyncio.run(main("--rm"))
        assert name in sbx_names(sbx, env)
        kept = subprocess.run([str(sbx), "fs", "cat", name, "kept.txt"], env=env, capture_output=True, text=True)
        assert kept.stdout == "kept\n", "the existing sandbox was used, not made again"
    finally:
        subprocess.run([str(sbx), "down", name], env=env, capture_output=True)


def test_sbx_acp_bad_input_says_what_to_do(tmp_path):
    sbx = sbx_binary()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"), NO_COLOR="1")
    # No sandbox and no --up: the error names both ways out, and nothing is made.
    r = subprocess.run([str(sbx), "acp", "nosuch", "--agent", "mock"], env=env, capture_output=True, text=True, input="")
    assert r.returncode == 2 and "sbx up --name nosuch" in r.stderr, r.stderr
    # --rm without --up is a usage error.
    r = subprocess.run([str(sbx), "acp", "nosuch", "--rm"], env=env, capture_output=True, text=True, input="")
    assert r.returncode == 2 and "--up" in r.stderr, r.stderr
    # --up with an agent that cannot be put in: the new sandbox is removed again.
    r = subprocess.run([str(sbx), "acp", "halfmade", "--up", "--agent", "vibe", "--agents-from", "image"], env=env,
                       capture_output=True, text=True, input="")
    assert r.returncode != 0 and "vibe" in r.stderr and "removed again" in r.stderr, r.stderr
    assert sbx_names(sbx, env) == []


def test_sbx_acp_up_rm_stopped_while_the_agent_goes_in_leaves_nothing(tmp_path):
    """SIGTERM (how editors stop agents) after the sandbox is made but while the agent is still being
    installed (from a mirror that accepts and never answers): with --rm, nothing is left."""
    import signal
    import socket
    import time
    sbx = sbx_binary()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"), NO_COLOR="1")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        p = subprocess.Popen([str(sbx), "acp", "stopme", "--up", "--rm", "--agent", "claude", "--agents-from",
                              f"mirror=http://127.0.0.1:{port}/{{agent}}/{{version}}"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while "stopme" not in sbx_names(sbx, env):
            assert p.poll() is None, p.communicate()
            assert time.time() < deadline, "the sandbox was never made"
            time.sleep(0.1)
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err.decode()
        assert sbx_names(sbx, env) == [], err.decode()
    finally:
        silent.close()
        subprocess.run([str(sbx), "down", "stopme"], env=env, capture_output=True)
