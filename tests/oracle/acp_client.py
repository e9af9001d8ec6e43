"""A one-prompt ACP client on the official SDK, for Rust tests that drive `sbx acp` against real agents
(tests/it/acp.rs): `python acp_client.py PROMPT -- COMMAND ARGS…` spawns the agent command, initializes,
opens a session, sends PROMPT, allows every permission request, and prints one JSON object: the stop
reason, the update kinds in order, the permission requests, and the agent's text."""

import asyncio
import json
import os
import sys

import acp
from acp import schema


class Editor:
    def __init__(self):
        self.kinds = []
        self.text = []
        self.asked = []
        self.statuses = []

    async def request_permission(self, session_id, tool_call, options, **kwargs):
        self.asked.append({"title": tool_call.title, "kind": tool_call.kind, "options": [o.option_id for o in options]})
        allow = next(o.option_id for o in options if o.kind == "allow_once")
        return schema.RequestPermissionResponse(outcome=schema.AllowedOutcome(outcome="selected", option_id=allow))

    async def session_update(self, session_id, update, **kwargs):
        self.kinds.append(update.session_update)
        if update.session_update == "agent_message_chunk":
            self.text.append(update.content.text)
        if update.session_update == "tool_call_update" and update.status:
            self.statuses.append(update.status)

    def on_connect(self, conn):
        pass


async def main(prompt, command):
    editor = Editor()
    # The SDK passes the child only a few variables by default; sbx needs its state directory.
    async with acp.spawn_agent_process(editor, command[0], *command[1:], env=dict(os.environ)) as (conn, _proc):
        await asyncio.wait_for(conn.initialize(protocol_version=acp.PROTOCOL_VERSION), 60)
        sess = await asyncio.wait_for(conn.new_session(cwd="/", mcp_servers=[]), 120)
        resp = await asyncio.wait_for(conn.prompt(session_id=sess.session_id, prompt=[acp.text_block(prompt)]), 180)
    print(json.dumps({"stopReason": resp.stop_reason, "kinds": editor.kinds, "asked": editor.asked,
                      "statuses": editor.statuses, "text": "".join(editor.text)}))


if __name__ == "__main__":
    sep = sys.argv.index("--")
    asyncio.run(main(sys.argv[1], sys.argv[sep + 1:]))
