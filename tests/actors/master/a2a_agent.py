"""A real A2A agent for the built-in master's tests, built with the ``a2a-sdk`` server.

It serves its card at the SDK's well-known path and answers JSON-RPC ``SendMessage`` at
``/``: a text containing ``fail`` ends its task failed (with a status message),
``slow`` makes it wait far longer than any test's tool deadline, ``task`` answers with
a completed task carrying an artifact, and anything else is answered with one message,
``<name> planned: <text>``. Every text it received is kept in ``received``.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from a2a.helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.tasks import TaskUpdater
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.types.a2a_pb2 import Part
from starlette.applications import Starlette

from ..tools.servers import a2a_card

__all__ = ["PlanningAgent", "a2a_agent_app"]


class PlanningAgent(AgentExecutor):
    """The agent's logic (see the module's docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[str] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Answer one message."""
        text = context.get_user_input()
        self.received.append(text)
        if "slow" in text:
            await anyio.sleep(3600)
        if "fail" in text or "task" in text:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            if "fail" in text:
                await updater.failed(
                    updater.new_agent_message([Part(text="no flights to the moon")])
                )
                return
            await updater.add_artifact([Part(text=f"{self.name} itinerary for {text}")])
            await updater.complete()
            return
        await event_queue.enqueue_event(
            new_text_message(f"{self.name} planned: {text}", context_id=str(uuid.uuid4()))
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Nothing to cancel: each answer is immediate."""


def a2a_agent_app(
    url: str, agent: PlanningAgent, name: str = "Travel Agent", *, v0_3: bool = False
) -> Any:
    """An A2A agent at ``url`` (its card names that URL) running ``agent``; with
    ``v0_3``, it also speaks the protocol's older JSON-RPC (0.3) at the same path."""
    card = a2a_card(url, name)
    handler = DefaultRequestHandlerV2(
        agent_executor=agent, task_store=InMemoryTaskStore(), agent_card=card
    )
    rpc = create_jsonrpc_routes(handler, "/", enable_v0_3_compat=v0_3)
    return Starlette(routes=create_agent_card_routes(card) + rpc)
