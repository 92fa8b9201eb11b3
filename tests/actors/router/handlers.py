"""Agent handlers bound by in-process ``genai-protocol`` 2.0.3 sessions in the tests.

No ``from __future__ import annotations`` here: the library builds the agent's input
schema from the handler's runtime annotations, and string annotations give ``{}``.
"""

import typing

import anyio


async def echo(agent_context: typing.Any, text: str, delay: float = 0.0) -> dict[str, str]:
    """Log the text, wait ``delay`` seconds, and return it."""
    agent_context.logger.info(f"echo {text}")
    await anyio.sleep(delay)
    return {"text": text}
