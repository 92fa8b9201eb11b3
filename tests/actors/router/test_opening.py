"""A socket whose opening the hub does not answer in time is closed, and leaves nothing
behind: neither its sender actor nor, once the hub gets to it, a connection."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from websockets.exceptions import ConnectionClosed

from actors.router import OpenConnection, RouterHub, open_router
from actors.router import _connection as connection_module

from .conftest import mint_jwt, open_peer


async def test_an_opening_the_hub_answers_late_leaves_no_sender_and_no_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handle = RouterHub.handle
    answered = anyio.Event()

    async def slow_open(self: RouterHub, message: Any) -> Any:
        if isinstance(message, OpenConnection):
            await anyio.sleep(0.5)  # longer than the socket waits
            try:
                return await handle(self, message)
            finally:
                answered.set()
        return await handle(self, message)

    monkeypatch.setattr(RouterHub, "handle", slow_open)
    monkeypatch.setattr(connection_module, "OPEN_TIMEOUT", 0.1)
    async with open_router("127.0.0.1", 0, ping_interval=None) as router:
        agent_id = str(uuid.uuid4())
        async with open_peer(router.url, **{"X-Custom-Authorization": mint_jwt(agent_id)}) as peer:
            with pytest.raises(ConnectionClosed) as closed:
                await peer.next(within=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        with anyio.fail_after(5):
            await answered.wait()
            # The hub handles the abandonment right after the late opening.
            while router.hub.switchboard.table.statistics().connections:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        connections = router.hub.system.supervisor("connections")
        assert connections.keys() == []  # type: ignore[union-attr]
