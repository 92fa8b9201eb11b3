"""The public surface of ``actors.router`` is exactly its ``__all__``."""

from __future__ import annotations

import actors.router


def test_all_names_are_exported_and_public() -> None:
    for name in actors.router.__all__:
        assert hasattr(actors.router, name), name
        assert not name.startswith("_"), name


def test_public_surface_is_pinned() -> None:
    assert sorted(actors.router.__all__) == sorted(EXPECTED)


EXPECTED = [
    "AGENT_NOT_ACTIVE",
    "AGENT_UNREGISTERED",
    "CLOSE_INVALID_TOKEN",
    "CLOSE_MISSING_IDENTITY",
    "CLOSE_OUTBOX_OVERFLOW",
    "CORRELATION_FEATURE",
    "CORRELATION_ID",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_PORT",
    "FEATURES_HEADER",
    "ApiKeys",
    "ClientKind",
    "CloseConnection",
    "ConnectionActor",
    "Deliver",
    "ErrorType",
    "Frame",
    "FrameTooLargeError",
    "GetStatistics",
    "HubMessage",
    "Identity",
    "InvalidFrameError",
    "MessageType",
    "OpenConnection",
    "AbandonConnection",
    "AgentStepObserver",
    "AgentVerifier",
    "LogLimits",
    "Outbox",
    "ReceiveFrame",
    "RouterConfig",
    "RouterError",
    "RouterHub",
    "RoutingTable",
    "RunningRouter",
    "SendFrame",
    "Sweep",
    "Switchboard",
    "TableStatistics",
    "VerifiedAgent",
    "identify",
    "open_router",
    "router_children",
]
