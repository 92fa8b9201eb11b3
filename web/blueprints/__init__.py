"""One blueprint per resource; the app registers them in this order."""

from __future__ import annotations

from quart import Blueprint

from . import (
    agents,
    asyncapi,
    chats,
    files,
    flows,
    health,
    integrations,
    llm,
    logs,
    profiles,
    turns,
    users,
    ws,
)

__all__ = ["BLUEPRINTS"]

BLUEPRINTS: tuple[Blueprint, ...] = (
    users.blueprint,
    profiles.blueprint,
    agents.blueprint,
    flows.blueprint,
    integrations.blueprint,
    llm.blueprint,
    logs.blueprint,
    chats.blueprint,
    turns.blueprint,
    files.blueprint,
    health.blueprint,
    ws.blueprint,
    asyncapi.blueprint,
)
