"""The in-process link to the embedded router: the same routing as a socket, no socket."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors.router import MASTER_SERVER_BE, ApiKeys, open_router
from actors.session import LocalConnector, RouterConnection, RouterConnectionError
from tests.actors.router.conftest import BACKEND_KEY, mint_jwt, open_peer

if TYPE_CHECKING:
    from actors.router import RunningRouter

KEYS = ApiKeys()


def connector(router: RunningRouter, **limits: int) -> LocalConnector:
    return LocalConnector(lambda: router.hub.ref, KEYS, url=router.url, **limits)


async def next_frame(conn: RouterConnection, within: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        frame: dict[str, Any] = await conn.recv()
    return frame


def log_frame(n: int) -> dict[str, str]:
    return {
        "message_type": "agent_log",
        "log_message": str(n),
        "log_level": "info",
        "request_id": "r",
        "session_id": "s",
    }


class TestLocalConnector:
    async def test_the_backend_link_receives_what_agents_send_over_sockets(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            backend = await connector(router).connect({"API-KEY": BACKEND_KEY})
            table = router.hub.switchboard.table
            assert table.conn_id_of(MASTER_SERVER_BE) is not None
            agent = {"X-Custom-Authorization": mint_jwt(str(uuid.uuid4()))}
            async with open_peer(router.url, **agent) as peer:
                await peer.send(log_frame(7))
                frame = await next_frame(backend)
            assert frame["request_payload"]["log_message"] == "7"
            await backend.aclose()

    async def test_an_invocation_reaches_a_socket_agent_and_its_answer_comes_back(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            target = str(uuid.uuid4())
            agent = {"X-Custom-Authorization": mint_jwt(target)}
            async with open_peer(router.url, **agent) as peer:
                with anyio.fail_after(2):
                    while router.hub.switchboard.table.conn_id_of(target) is None:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                conn = await connector(router).connect({"x-custom-invoke-key": f"me:{target}"})
                invoke = {
                    "message_type": "agent_invoke",
                    "agent_uuid": target,
                    "request_payload": {"q": 1},
                }
                await conn.send(invoke)
                received = await peer.next()
                assert received["request_payload"] == {"q": 1}
                answer = {
                    "message_type": "agent_response",
                    "response": "done",
                    "execution_time": 0.1,
                    "invoked_by": received["invoked_by"],
                }
                await peer.send(answer)
                reply = await next_frame(conn)
            assert reply["message_type"] == "agent_response"
            assert reply["response"] == "done"
            await conn.aclose()
            with anyio.fail_after(2):
                while router.hub.statistics().connections:  # noqa: ASYNC110
                    await anyio.sleep(0.005)

    async def test_an_absent_agent_is_reported_not_active(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            target = str(uuid.uuid4())
            conn = await connector(router).connect({"x-custom-invoke-key": f"me:{target}"})
            invoke = {"message_type": "agent_invoke", "agent_uuid": target, "request_payload": {}}
            await conn.send(invoke)
            reply = await next_frame(conn)
            assert reply["error"]["error_message"] == "Agent is NOT active"
            await conn.aclose()

    async def test_no_identity_is_refused(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            with pytest.raises(RouterConnectionError):
                await connector(router).connect({"API-KEY": "not ours"})
            assert router.hub.statistics().connections == 0

    async def test_closing_removes_the_connection_and_later_use_fails(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            conn = await connector(router).connect({"API-KEY": BACKEND_KEY})
            await conn.aclose()
            await conn.aclose()  # idempotent
            with anyio.fail_after(2):
                while router.hub.switchboard.table.conn_id_of(MASTER_SERVER_BE):  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            with pytest.raises(RouterConnectionError):
                await conn.send({})
            with pytest.raises(RouterConnectionError):
                await conn.recv()

    async def test_a_full_outbox_cuts_the_link_after_what_it_holds(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            backend = await connector(router, backend_capacity=3).connect({"API-KEY": BACKEND_KEY})
            agent = {"X-Custom-Authorization": mint_jwt(str(uuid.uuid4()))}
            async with open_peer(router.url, **agent) as peer:
                for n in range(6):
                    await peer.send(log_frame(n))
                with anyio.fail_after(2):
                    while router.hub.switchboard.dropped_frames == 0:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
            seen = [(await next_frame(backend))["request_payload"]["log_message"] for _ in range(3)]
            assert seen == ["0", "1", "2"]
            with pytest.raises(RouterConnectionError, match="overflowed"):
                await backend.recv()
            with pytest.raises(RouterConnectionError):
                await backend.send({})
            await backend.aclose()

    async def test_a_router_that_is_gone_cannot_be_reached(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            link = connector(router)
        with pytest.raises(RouterConnectionError):
            await link.connect({"API-KEY": BACKEND_KEY})

    async def test_a_router_not_started_yet_cannot_be_reached(self) -> None:
        def missing() -> Any:
            raise KeyError("router.hub")

        link = LocalConnector(missing, KEYS, url="ws://127.0.0.1:1/ws")
        with pytest.raises(RouterConnectionError):
            await link.connect({"API-KEY": BACKEND_KEY})
        assert link.url == "ws://127.0.0.1:1/ws"
