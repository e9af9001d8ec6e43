#!/usr/bin/env python3
"""A scripted fake ACP agent (Agent Client Protocol over stdio, JSON-RPC 2.0 one object per line),
standard library only. The tests of sbx's ACP adapter run it as a configured ACP agent.

Each line of a prompt is one step:

  say TEXT            agent_message_chunk (in two pieces)
  think TEXT          agent_thought_chunk
  plan                a plan with two entries
  usage               usage_update with a cost of 0.25 USD
  write PATH TEXT     tool_call (edit) -> session/request_permission -> fs/write_text_file -> tool_call_update
  read PATH           fs/read_text_file, says the content (or the error)
  term COMMAND        terminal/create (sh -c COMMAND) -> wait_for_exit -> output -> release
  sleep MS            waits; session/cancel ends the turn with stopReason "cancelled"
  garbage             writes two lines that are not JSON-RPC (one not even UTF-8)
  env NAME            says the variable's value
  mcp                 says the mcpServers that session/new got, as JSON
  fail                answers the prompt with a JSON-RPC error
  exit                exits (status 5) in the middle of the turn

Flags: --exit-on-initialize (says why on stderr and exits 3 when asked to initialize).
"""

import json
import os
import select
import sys

OUT = sys.stdout.buffer
STATE = {"cwd": None, "mcp": None, "mode": "ask", "next_id": 100, "cancelled": False}


class Reader:
    def __init__(self):
        self.buf = b""
        self.inbox = []

    def _line(self, timeout):
        while b"\n" not in self.buf:
            r, _, _ = select.select([0], [], [], timeout)
            if not r:
                return None
            chunk = os.read(0, 65536)
            if not chunk:
                sys.exit(0)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def next(self, timeout=None):
        if self.inbox:
            return self.inbox.pop(0)
        return self._line(timeout)

    def wait_response(self, rid):
        """Reads until the response to our request `rid`; notes cancels, keeps anything else."""
        while True:
            msg = self._line(None)
            if msg.get("id") == rid and "method" not in msg:
                return msg
            if msg.get("method") == "session/cancel":
                STATE["cancelled"] = True
            else:
                self.inbox.append(msg)

    def sleep(self, seconds):
        """Waits, returning early (True) when session/cancel arrives."""
        import time

        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            msg = self._line(left)
            if msg is None:
                return False
            if msg.get("method") == "session/cancel":
                STATE["cancelled"] = True
                return True
            self.inbox.append(msg)


READER = Reader()


def send(obj):
    OUT.write(json.dumps(obj).encode() + b"\n")
    OUT.flush()


def notify(update):
    send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "fake-1", "update": update}})


def call(method, params):
    STATE["next_id"] += 1
    rid = STATE["next_id"]
    send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    return READER.wait_response(rid)


def say(text):
    half = len(text) // 2
    for piece in (text[:half], text[half:]):
        if piece:
            notify({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": piece}})


def tool_call(call_id, title, kind, raw_input, name):
    notify({"sessionUpdate": "tool_call", "toolCallId": call_id, "title": title, "kind": kind, "status": "pending",
            "rawInput": raw_input, "_meta": {"tool_name": name}})


def tool_done(call_id, status, text, extra=()):
    content = list(extra) + [{"type": "content", "content": {"type": "text", "text": text}}]
    notify({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": status, "content": content})


def step(line, n):
    """Runs one step; returns a stop reason to end the turn early."""
    verb, _, rest = line.partition(" ")
    if verb == "say":
        say(rest)
    elif verb == "think":
        notify({"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": rest}})
    elif verb == "plan":
        notify({"sessionUpdate": "plan", "entries": [
            {"content": "look around", "priority": "high", "status": "completed"},
            {"content": "write the file", "priority": "medium", "status": "pending"}]})
    elif verb == "usage":
        notify({"sessionUpdate": "usage_update", "used": 1000, "size": 200000, "cost": {"amount": 0.25, "currency": "USD"}})
    elif verb == "write":
        path, _, text = rest.partition(" ")
        call_id = "call_%d" % n
        full = os.path.join(STATE["cwd"], path)
        tool_call(call_id, "Write " + path, "edit", {"path": path, "content": text}, "write_file")
        resp = call("session/request_permission", {"sessionId": "fake-1", "toolCall": {"toolCallId": call_id}, "options": [
            {"optionId": "allow_once", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "allow_always", "name": "Always", "kind": "allow_always"},
            {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"}]})
        outcome = resp.get("result", {}).get("outcome", {})
        if outcome.get("outcome") == "cancelled" or STATE["cancelled"]:
            tool_done(call_id, "failed", "cancelled")
            return "cancelled"
        if outcome.get("optionId") not in ("allow_once", "allow_always"):
            tool_done(call_id, "failed", "denied by the user (%s)" % outcome.get("optionId"))
            say("not allowed to write " + path)
            return None
        w = call("fs/write_text_file", {"sessionId": "fake-1", "path": full, "content": text})
        if "error" in w:
            tool_done(call_id, "failed", "write failed: " + w["error"]["message"])
        else:
            diff = {"type": "diff", "path": full, "oldText": None, "newText": text}
            tool_done(call_id, "completed", "wrote %d bytes" % len(text.encode()), [diff])
            say("wrote " + path)
    elif verb == "read":
        r = call("fs/read_text_file", {"sessionId": "fake-1", "path": rest})
        say(r["result"]["content"] if "result" in r else "refused: " + r["error"]["message"])
    elif verb == "term":
        call_id = "call_%d" % n
        tool_call(call_id, "Run " + rest, "execute", {"command": rest}, "bash")
        t = call("terminal/create", {"sessionId": "fake-1", "command": "sh", "args": ["-c", rest], "outputByteLimit": 1000})
        if "error" in t:
            tool_done(call_id, "failed", "no terminal: " + t["error"]["message"])
            return None
        tid = t["result"]["terminalId"]
        ex = call("terminal/wait_for_exit", {"sessionId": "fake-1", "terminalId": tid})["result"]
        out = call("terminal/output", {"sessionId": "fake-1", "terminalId": tid})["result"]
        call("terminal/release", {"sessionId": "fake-1", "terminalId": tid})
        tool_done(call_id, "completed", out["output"])
        say("exit %s" % ex.get("exitCode"))
    elif verb == "sleep":
        if READER.sleep(int(rest) / 1000.0):
            return "cancelled"
    elif verb == "garbage":
        OUT.write(b"this is not json\n\xff\xfe{oops\n")
        OUT.flush()
    elif verb == "env":
        say("%s=%s" % (rest, os.environ.get(rest, "<unset>")))
    elif verb == "mcp":
        say(json.dumps(STATE["mcp"], sort_keys=True))
    elif verb == "exit":
        sys.stderr.write("fake acp agent: exiting as told\n")
        sys.stderr.flush()
        os._exit(5)
    else:
        say(line)
    return None


def prompt(msg):
    STATE["cancelled"] = False
    text = "".join(b.get("text", "") for b in msg["params"]["prompt"] if b.get("type") == "text")
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if lines == ["fail"]:
        send({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32603, "message": "the fake was told to fail"}})
        return
    reason = "end_turn"
    for n, line in enumerate(lines, 1):
        r = step(line, n)
        if r or STATE["cancelled"]:
            reason = "cancelled"
            break
    usage = {"inputTokens": len(text), "outputTokens": 7, "totalTokens": len(text) + 7, "cachedReadTokens": 2}
    send({"jsonrpc": "2.0", "id": msg["id"], "result": {"stopReason": reason, "usage": usage}})


def main():
    exit_on_init = "--exit-on-initialize" in sys.argv
    while True:
        msg = READER.next()
        method = msg.get("method")
        rid = msg.get("id")
        if method == "initialize":
            if exit_on_init:
                sys.stderr.write("fake acp agent: no API key configured, giving up\n")
                sys.stderr.flush()
                sys.exit(3)
            STATE["client"] = msg["params"].get("clientCapabilities")
            send({"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": 1, "authMethods": [], "agentInfo": {"name": "fake-acp", "version": "1.0"},
                "agentCapabilities": {"loadSession": False, "mcpCapabilities": {"http": False}}}})
        elif method == "session/new":
            STATE["cwd"] = msg["params"]["cwd"]
            STATE["mcp"] = msg["params"].get("mcpServers")
            send({"jsonrpc": "2.0", "id": rid, "result": {"sessionId": "fake-1", "modes": {"currentModeId": "ask", "availableModes": [
                {"id": "ask", "name": "Ask"}, {"id": "yolo", "name": "Yolo"}]}}})
            notify({"sessionUpdate": "available_commands_update", "availableCommands": [{"name": "init", "description": "x"}]})
        elif method == "session/set_mode" and msg["params"]["modeId"] not in ("ask", "yolo"):
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "unknown mode " + msg["params"]["modeId"]}})
        elif method == "session/set_mode":
            STATE["mode"] = msg["params"]["modeId"]
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
            notify({"sessionUpdate": "current_mode_update", "currentModeId": STATE["mode"]})
        elif method == "session/prompt":
            prompt(msg)
        elif method == "session/cancel":
            pass
        elif rid is not None:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no " + str(method)}})


if __name__ == "__main__":
    main()
