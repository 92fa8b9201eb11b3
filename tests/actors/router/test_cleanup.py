"""Nothing of a connection outlives its socket: a close that never reaches the hub is
swept, a sender whose socket closed stops, and a second back-end connection waits."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from websockets.asyncio.server import ServerConnection, serve

from actors.router import (
    ClientKind,
    Identity,
    OpenConnection,
    RoutingTable,
    Switchboard,
    open_router,
)
from actors.router._connection import ConnectionActor
from runtime import ChildSpec, DynamicSupervisor, open_actor_system

from .conftest import BACKEND_KEY, mint_jwt, open_peer


class _Outbox:
    def __init__(self) -> None:
        self.frames: list[Any] = []

    def send_nowait(self, frame: Any) -> bool:
        self.frames.append(frame)
        return True

    def overflow(self) -> None:
        raise AssertionError("no overflow expected")


def agent(agent_id: str) -> Identity:
    return Identity(agent_id, ClientKind.AGENT, agent_jwt="t")


class TestSweep:
    def test_a_released_connection_goes_at_the_second_sweep(self) -> None:
        board = Switchboard(RoutingTable())
        backend = _Outbox()
        board.open(Identity("master_server_be", ClientKind.BACKEND), backend)
        socket = _Outbox()
        conn_id = board.open(agent("a"), socket)
        assert conn_id is not None
        board.release(socket)  # its close message was lost
        # Frames it read before its release may still be queued to the hub: the first
        # sweep leaves it, so they are still routed.
        assert board.sweep() == 0
        board.receive(conn_id, '{"message_type": "agent_register", "request_payload": {}}')
        assert board.table.conn_id_of("a") == conn_id
        assert board.sweep() == 1
        assert board.table.conn_id_of("a") is None
        assert backend.frames[-1] == {
            "request_payload": {"agent_uuid": "a", "message_type": "agent_unregister"}
        }
        assert board.statistics().swept_connections == 1
        # Closed already (the usual case): a sweep finds nothing to do.
        other = _Outbox()
        other_id = board.open(agent("b"), other)
        assert other_id is not None
        board.release(other)
        board.close(other_id)
        assert (board.sweep(), board.sweep()) == (0, 0)

    async def test_the_hub_sweeps_on_its_own(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None, sweep_interval=0.05) as router:
            board = router.hub.switchboard
            outbox = _Outbox()
            # As a socket handler that opened, then lost its close message.
            await router.hub.ref.ask(OpenConnection(agent("lost"), outbox))
            board.release(outbox)
            with anyio.fail_after(5):
                while board.table.conn_id_of("lost") is not None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert board.statistics().swept_connections == 1


class TestConnectionActor:
    async def test_it_stops_once_its_socket_closes_whoever_serves_the_socket(self) -> None:
        async with open_actor_system(
            ChildSpec("connections", DynamicSupervisor), name="t"
        ) as system:
            supervisor = system.supervisor("connections")
            assert isinstance(supervisor, DynamicSupervisor)
            started = anyio.Event()

            async def handler(ws: ServerConnection) -> None:
                # A handler that never stops its actor (as a cleanup that gave up).
                await supervisor.get_or_start("c", lambda: ConnectionActor(ws))
                started.set()
                await ws.wait_closed()

            server = await serve(handler, "127.0.0.1", 0)
            port = next(iter(server.sockets)).getsockname()[1]
            try:
                async with open_peer(f"ws://127.0.0.1:{port}/ws"):
                    await started.wait()
                    assert supervisor.keys() == ["c"]
                with anyio.fail_after(5):
                    while supervisor.keys():  # noqa: ASYNC110
                        await anyio.sleep(0.01)
            finally:
                server.close()
                await server.wait_closed()


class TestBackends:
    async def test_a_second_backend_waits_and_takes_over_with_what_it_missed(self) -> None:
        async with open_router("127.0.0.1", 0, ping_interval=None) as router:
            agent_id = str(uuid.uuid4())
            async with (
                open_peer(router.url, **{"API-KEY": BACKEND_KEY}) as first,
                open_peer(router.url, **{"API-KEY": BACKEND_KEY}) as second,
                open_peer(router.url, **{"X-Custom-Authorization": mint_jwt(agent_id)}) as peer,
            ):
                await peer.send({"message_type": "agent_register", "request_payload": {}})
                registered = await first.next()
                assert registered["request_payload"]["agent_uuid"] == agent_id
                assert router.hub.statistics().standby_backends == 1
                await first.ws.close()
                # The standby becomes the back-end and is told who is connected.
                replayed = await second.next()
                assert replayed["request_payload"]["agent_uuid"] == agent_id
                assert replayed["request_payload"]["message_type"] == "agent_register"
