"""Calling an A2A agent: against a real A2A agent (the ``a2a-sdk`` server) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.master._a2a import A2ACallError, a2a_message_text, call_a2a_agent
from actors.master._tools import _A2A_PARAMETERS
from actors.tools import OutboundPolicy, card_name, fetch_agent_card, stored_card_content

from ..tools.servers import ThreadServer, free_port
from .a2a_agent import PlanningAgent, a2a_agent_app

POLICY = OutboundPolicy()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # No database here: the client side runs on trio as on asyncio.
    backend: str = request.param
    return backend


@pytest.fixture(name="agent")
def _agent() -> PlanningAgent:
    return PlanningAgent("Travel")


@pytest.fixture(name="server")
def _server(agent: PlanningAgent) -> Iterator[ThreadServer]:
    port = free_port()
    server = ThreadServer(
        lambda: a2a_agent_app(f"http://127.0.0.1:{port}/", agent), port=port
    ).start()
    yield server
    server.stop()


async def stored_card(url: str) -> dict[str, Any]:
    """The card as the master holds it: what the API stored, with name and description."""
    card = await fetch_agent_card(url, POLICY)
    content = stored_card_content(card, url)
    return {**content, "name": card_name(card), "description": card["description"]}


def test_the_text_sent_is_the_task_then_the_text() -> None:
    assert a2a_message_text({"task": "Plan", "text": "Paris"}) == "Plan\nParis"
    assert a2a_message_text({"task": "Plan"}) == "Plan"
    assert _A2A_PARAMETERS["required"] == ["task", "text"]


async def test_a_message_answer(server: ThreadServer, agent: PlanningAgent) -> None:
    card = await stored_card(server.url)
    reply = await call_a2a_agent(server.url, card, {"task": "Plan", "text": "Paris"}, POLICY)
    assert reply.is_success is True
    assert reply.output == "Travel planned: Plan\nParis"
    assert agent.received == ["Plan\nParis"]


async def test_a_completed_task_answers_its_artifacts(server: ThreadServer) -> None:
    card = await stored_card(server.url)
    reply = await call_a2a_agent(server.url, card, {"task": "task", "text": "Rome"}, POLICY)
    assert (reply.is_success, reply.output) == (True, "Travel itinerary for task\nRome")


async def test_a_failed_task_is_a_failure_with_its_status_text(server: ThreadServer) -> None:
    card = await stored_card(server.url)
    reply = await call_a2a_agent(server.url, card, {"task": "fail", "text": "Moon"}, POLICY)
    assert (reply.is_success, reply.output) == (False, "no flights to the moon")


async def test_an_agent_that_is_gone_is_an_error(server: ThreadServer) -> None:
    card = await stored_card(server.url)
    server.stop()
    with pytest.raises(A2ACallError):
        await call_a2a_agent(server.url, card, {"task": "Plan", "text": "Paris"}, POLICY)


async def test_the_outbound_policy_applies(server: ThreadServer, agent: PlanningAgent) -> None:
    card = await stored_card(server.url)
    strict = OutboundPolicy(allow_private=False)
    with pytest.raises(A2ACallError, match="refused address"):
        await call_a2a_agent(server.url, card, {"task": "Plan", "text": "Paris"}, strict)
    assert agent.received == []


async def test_an_older_card_is_reached_at_the_url_it_was_added_with() -> None:
    # The older card form's endpoint was its "url", which is not stored: the agent is
    # called where its card was found, in the protocol's older JSON-RPC.
    agent = PlanningAgent("Old")
    port = free_port()
    server = ThreadServer(
        lambda: a2a_agent_app(f"http://127.0.0.1:{port}/", agent, v0_3=True), port=port
    ).start()
    card = {
        "name": "Old_Agent",
        "description": "from before",
        "version": "0.1",
        "capabilities": {},
        "defaultInputModes": ["text"],
        "defaultOutputModes": ["text"],
        "skills": [{"id": "s", "name": "S", "description": "does s", "tags": []}],
    }
    try:
        reply = await call_a2a_agent(server.url, card, {"task": "Plan", "text": "Paris"}, POLICY)
    finally:
        server.stop()
    assert (reply.is_success, reply.output) == (True, "Old planned: Plan\nParis")
