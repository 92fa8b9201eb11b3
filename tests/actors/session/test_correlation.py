"""Invocations on the main connection, against a real router over real sockets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actors.router._hub
from actors.router import MASTER_SERVER_BE, open_router
from actors.router._identity import DEFAULT_MASTER_AGENT_API_KEY
from actors.session import RouterUnavailableError
from runtime.testing import wait_for
from tests.actors.router.conftest import Peer, open_peer

from ...faults.proxy import open_proxy
from ..agents import free_port
from .test_session import (
    Session,
    _status_in_flight,
    open_session,
    replies_of,
    wait_for_connected,
)

if TYPE_CHECKING:
    from actors.router import RunningRouter

MASTER_KEY = {"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}
CALLS = 50


def answer(frame: dict[str, Any], response: Any) -> dict[str, Any]:
    return {
        "response": response,
        "message_type": "agent_response",
        "execution_time": 0,
        "invoked_by": frame["invoked_by"],
    }


async def invoke_all(session: Session, calls: int, results: dict[int, Any]) -> None:
    async def call(n: int) -> None:
        try:
            results[n] = (await session.invoke({"n": n}, request_id=str(n), timeout=30)).response
        except Exception as exc:
            results[n] = exc

    async with anyio.create_task_group() as tg:
        for n in range(calls):
            tg.start_soon(call, n)


async def receive(master: Peer, calls: int) -> list[dict[str, Any]]:
    return [await master.next(10) for _ in range(calls)]


class TestMultiplexed:
    async def test_concurrent_calls_share_the_main_connection(self) -> None:
        async with (
            open_router("127.0.0.1", free_port(), ping_interval=None) as router,
            open_session(router.url) as session,
            open_peer(router.url, **MASTER_KEY) as master,
        ):
            await wait_for_connected(session)
            results: dict[int, Any] = {}
            async with anyio.create_task_group() as tg:
                tg.start_soon(invoke_all, session, CALLS, results)
                seen = await receive(master, CALLS)
                # Every call pending at once, and no socket but the session's and the master's.
                stats = router.hub.statistics()
                assert (stats.connections, stats.pending_invocations) == (2, CALLS)
                # The master sees the frames it always saw: no extension key.
                assert {frozenset(frame) for frame in seen} == {
                    frozenset({"request_payload", "request_metadata", "invoked_by"})
                }
                assert len({frame["invoked_by"] for frame in seen}) == CALLS
                for frame in reversed(seen):  # answered out of order
                    await master.send(answer(frame, frame["request_payload"]["n"]))
        assert results == {n: n for n in range(CALLS)}

    async def test_a_withdrawn_calls_late_reply_is_dropped(self) -> None:
        async with (
            open_router("127.0.0.1", free_port(), ping_interval=None) as router,
            open_session(router.url) as session,
            open_peer(router.url, **MASTER_KEY) as master,
        ):
            await wait_for_connected(session)
            await session.client.invoke_master(
                {}, request_id="gone", session_id="s", timeout=30, reply_to=replies_of(session)
            )
            late = await master.next(10)
            session.client.cancel_master("gone")
            await wait_for(lambda: _status_in_flight(session) == 0, timeout=5)
            await master.send(answer(late, "late"))
            # The next call is answered with its own reply, not the late one.
            async with anyio.create_task_group() as tg:

                async def serve() -> None:
                    frame = await master.next(10)
                    await master.send(answer(frame, "fresh"))

                tg.start_soon(serve)
                reply = await session.invoke({}, request_id="next", timeout=5)
            assert reply.response == "fresh"
            assert "gone" not in session._replies.received
            assert router.hub.statistics().pending_invocations == 0

    async def test_the_main_connection_cut_fails_every_pending_call(self) -> None:
        async with (
            open_router("127.0.0.1", free_port(), ping_interval=None) as router,
            open_proxy("127.0.0.1", router.port) as proxy,
            open_session(f"ws://{proxy.host}:{proxy.port}/ws") as session,
            open_peer(router.url, **MASTER_KEY) as master,
        ):
            await wait_for_connected(session)
            results: dict[int, Any] = {}
            async with anyio.create_task_group() as tg:
                tg.start_soon(invoke_all, session, 10, results)
                await receive(master, 10)  # the master has them and never answers
                started = anyio.current_time()
                proxy.cut()
                await wait_for(lambda: len(results) == 10, timeout=5)
                proxy.restore()
            # At once, not at the 30-s deadline.
            assert anyio.current_time() - started < 5
            assert all(isinstance(outcome, RouterUnavailableError) for outcome in results.values())
            # The session comes back through the proxy and calls work again.
            await wait_for_connected(session)
            async with anyio.create_task_group() as tg:

                async def serve() -> None:
                    frame = await master.next(10)
                    await master.send(answer(frame, "again"))

                tg.start_soon(serve)
                assert (await session.invoke({}, request_id="again", timeout=5)).response == "again"


class TestOriginalRouter:
    async def test_a_router_without_the_header_gets_a_socket_per_call(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Our router, minus the header: the original's handshake.
        monkeypatch.setattr(actors.router._hub, "_name_features", lambda *_: None)
        async with (
            open_router("127.0.0.1", free_port(), ping_interval=None) as router,
            open_session(router.url) as session,
            open_peer(router.url, **MASTER_KEY) as master,
        ):
            await wait_for_connected(session)
            results: dict[int, Any] = {}
            async with anyio.create_task_group() as tg:
                tg.start_soon(invoke_all, session, 5, results)
                seen = await receive(master, 5)
                assert router.hub.statistics().connections == 2 + 5
                for frame in seen:
                    # Each from a connection of its own, none from the back-end's.
                    assert not frame["invoked_by"].startswith(MASTER_SERVER_BE)
                    assert "~" not in frame["invoked_by"]
                    await master.send(answer(frame, frame["request_payload"]["n"]))
            assert results == {n: n for n in range(5)}
            await wait_for(lambda: _connections(router) == 2, timeout=5)


def _connections(router: RunningRouter) -> int:
    return router.hub.statistics().connections
