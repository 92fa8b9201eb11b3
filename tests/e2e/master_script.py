"""A scripted master agent on ``genai-protocol`` 1.0.9, run as a subprocess by the e2e tests.

Usage: ``python master_script.py <router url> <master agent key> <back-end API url>
<back-end key>``.

It behaves like the upstream master (PROTOCOL.md §3) without an LLM: it connects with
``API-KEY`` (so it is ``master_server_ml``), reads the chat history and the caller's
active agents from the back-end with ``user_id`` and ``X-API-KEY``, invokes every active
``genai`` agent with the library's ``send`` (through the router), and returns
``{"response", "agents_trace", "is_success"}``. A message ``sleep <seconds>`` makes it
wait that long first (a master too slow for its deadline).

No ``from __future__ import annotations``: the library reads the handler's annotations.
"""

import asyncio
import json
import sys
import time
import typing

import aiohttp
from genai_session.session import GenAISession

router_url, master_key, api_url, backend_key = sys.argv[1:5]
session = GenAISession(ws_url=router_url, api_key=master_key)


async def fetch(http: aiohttp.ClientSession, path: str, **params: typing.Any) -> typing.Any:
    headers = {"X-API-KEY": backend_key}
    async with http.get(f"{api_url}{path}", params=params, headers=headers) as response:
        response.raise_for_status()
        return await response.json()


@session.bind(name="MasterAgent", description="Master agent that orchestrates other agents")  # type: ignore[untyped-decorator]
async def master(
    agent_context: typing.Any,
    session_id: str,
    user_id: str,
    configs: dict[str, typing.Any],
    files: typing.Optional[list[typing.Any]],  # noqa: UP045 - 1.0.9 maps Optional, not X | None
    timestamp: typing.Any = None,
) -> dict[str, typing.Any]:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        history = await fetch(
            http,
            "/chat",
            session_id=session_id,
            user_id=user_id,
            per_page=configs.get("max_last_messages", 5),
        )
        active = await fetch(http, "/agents/active", agent_type="all", user_id=user_id)
    messages = list(reversed(history["items"]))
    text = messages[-1]["content"] if messages else ""
    if text.startswith("sleep "):
        await asyncio.sleep(float(text.split()[1]))
    trace = []
    outputs = []
    for item in sorted(active["active_connections"], key=lambda i: i["name"]):
        if item["type"] != "genai":
            continue
        called = time.perf_counter()
        reply = await session.send(message={"text": text}, client_id=item["id"])
        trace.append(
            {
                "id": item["id"],
                "name": item["name"].rsplit("_", 1)[0],
                "type": "genai",
                "input": {"text": text},
                "output": reply.response,
                "execution_time": time.perf_counter() - called,
                "is_success": reply.is_success,
            }
        )
        outputs.append(reply.response)
    summary = {
        "history": [m["sender_type"] for m in messages],
        "agents": len(trace),
        "outputs": outputs,
        "config": configs.get("config_name"),
        "files": len(files or []),
    }
    trace.insert(
        0,
        {
            "name": "MasterAgent",
            "input": text,
            "output": summary,
            "is_success": True,
            "execution_time": time.perf_counter() - started,
        },
    )
    return {"response": json.dumps(summary), "agents_trace": trace, "is_success": True}


asyncio.run(session.process_events())
