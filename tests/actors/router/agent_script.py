"""A real ``genai-protocol`` agent, run as a subprocess by the router tests.

Usage: ``python agent_script.py <role> <router url> <jwt> [<target id>]``, with role
``echo`` (answers ``{"text", "version"}`` after ``delay`` seconds, logging first) or
``caller`` (forwards its ``text`` to the target agent with the library's ``send``).
Works with 1.0.9 (constructor arguments) and 2.x (environment).

No ``from __future__ import annotations`` here: the library builds the agent's input
schema from the handler's runtime annotations, and string annotations give ``{}``.
"""

import asyncio
import os
import sys
import typing
from importlib.metadata import version

VERSION = version("genai-protocol")
role, url, token = sys.argv[1:4]
target = sys.argv[4] if len(sys.argv) > 4 else ""

if VERSION.startswith("1."):
    from genai_session.session import GenAISession

    session = GenAISession(ws_url=url, jwt_token=token)
else:
    os.environ.update(AGENT_JWT_TOKEN=token, ROUTER_WS_URL=url, IS_LOCAL_SETUP="true")
    from genai_session.session import GenAISession

    session = GenAISession()


if role == "echo":

    @session.bind(name="echo_agent", description="Echoes text")  # type: ignore[untyped-decorator]
    async def echo(agent_context: typing.Any, text: str, delay: float = 0.0) -> dict[str, str]:
        agent_context.logger.info(f"echo {text}")
        await asyncio.sleep(delay)
        return {"text": text, "version": VERSION}

else:

    @session.bind(name="caller_agent", description="Calls another agent")  # type: ignore[untyped-decorator]
    async def call(agent_context: typing.Any, text: str) -> dict[str, typing.Any]:
        if VERSION.startswith("1."):
            reply = await session.send(message={"text": text}, client_id=target)
        else:
            reply = await session.send(message={"text": text}, agent_uuid=target)
        return {"is_success": reply.is_success, "response": reply.response}


asyncio.run(session.process_events())
