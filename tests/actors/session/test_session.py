"""The router session against the real router and a scripted master agent."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors.router import open_router
from actors.router._identity import DEFAULT_MASTER_AGENT_API_KEY
from actors.session import (
    MasterAgentError,
    MasterFailedError,
    MasterNotActiveError,
    MasterReplied,
    MasterReply,
    MasterTimeoutError,
    RouterSessionClient,
    RouterUnavailableError,
    SessionConfig,
    router_session_spec,
)
from runtime import Actor, ActorState, Backoff, ChildSpec, RestartIntensity, open_actor_system
from runtime.testing import wait_for
from tests.actors.router.conftest import Peer, open_peer

from ..agents import BACKEND_KEY, free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from runtime import ActorSystem


class Replies(Actor[MasterReplied]):
    """Where the tests' invocations are answered: keeps each `MasterReplied` by request."""

    def __init__(self) -> None:
        self.received: dict[str, MasterReplied] = {}
        self.changed = anyio.Event()

    async def handle(self, message: MasterReplied) -> None:
        self.received[message.request_id] = message
        self.changed.set()
        self.changed = anyio.Event()


class Session:
    """A running session and a client that waits for the reply, as a chat actor does."""

    def __init__(self, system: ActorSystem, replies: Replies) -> None:
        self.system = system
        self.client = RouterSessionClient(system.ref_of("session"))
        self._replies = replies

    async def invoke(
        self,
        payload: dict[str, Any],
        *,
        request_id: str = "r",
        timeout: float,  # noqa: ASYNC109
        within: float = 10.0,
    ) -> MasterReply:
        """Invoke the master and wait for its `MasterReplied`; raise its error."""
        received = self._replies.received
        received.pop(request_id, None)
        await self.client.invoke_master(
            payload,
            request_id=request_id,
            session_id="s",
            timeout=timeout,
            reply_to=self.system.ref_of("replies"),
        )
        with anyio.fail_after(within):
            while request_id not in received:
                await self._replies.changed.wait()
        outcome = received.pop(request_id).outcome
        if isinstance(outcome, MasterAgentError):
            raise outcome
        return outcome


@contextlib.asynccontextmanager
async def open_session(url: str) -> AsyncIterator[Session]:
    spec = router_session_spec(
        SessionConfig(
            url,
            BACKEND_KEY,
            open_timeout=1.0,
            ping_interval=None,
            reconnect=Backoff(initial=0.05, maximum=0.2, jitter=0.0),
        ),
        events=None,
        backoff=Backoff(initial=0.1, maximum=0.4, jitter=0.0),
    )
    replies = Replies()
    async with open_actor_system(
        ChildSpec("replies", lambda: replies), spec, intensity=RestartIntensity(100, 10.0)
    ) as system:
        yield Session(system, replies)


async def serve_master(master: Peer, delay: float = 0.0, answers: int = 1) -> list[dict[str, Any]]:
    """Answer invocations as the master agent does (PROTOCOL.md §3.5)."""
    seen: list[dict[str, Any]] = []

    async def answer(frame: dict[str, Any]) -> None:
        await anyio.sleep(delay)
        await master.send(
            {
                "response": {"agents_trace": [], "response": "ok", "is_success": True},
                "message_type": "agent_response",
                "execution_time": 1.5,
                "invoked_by": frame["invoked_by"],
            }
        )

    async with anyio.create_task_group() as tg:
        for _ in range(answers):
            frame = await master.next(30)
            seen.append(frame)
            tg.start_soon(answer, frame)
    return seen


@pytest.fixture(name="port")
def _port() -> int:
    return free_port()


class TestInvokeMaster:
    async def test_reply_is_returned(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port, ping_interval=None) as router,
            open_session(router.url) as session,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):
            await wait_for_connected(session)
            async with anyio.create_task_group() as tg:
                seen: list[list[dict[str, Any]]] = []

                async def run() -> None:
                    seen.append(await serve_master(master, answers=2))

                tg.start_soon(run)
                replies = []
                for n in range(2):
                    replies.append(
                        await session.invoke(
                            {"user_id": "u", "n": n}, request_id=f"r{n}", timeout=5
                        )
                    )
        assert replies[0] == MasterReply(
            {"agents_trace": [], "response": "ok", "is_success": True}, 1.5
        )
        frames = seen[0]
        assert frames[0]["request_payload"] == {"user_id": "u", "n": 0}
        assert frames[0]["request_metadata"] == {"request_id": "r0", "session_id": "s"}
        # Each request has its own correlation.
        assert frames[0]["invoked_by"] != frames[1]["invoked_by"]

    async def test_concurrent_invocations_do_not_mix(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port, ping_interval=None) as router,
            open_session(router.url) as session,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):

            async def echo_master() -> None:
                while True:
                    frame = await master.next(30)
                    await master.send(
                        {
                            "response": frame["request_payload"]["n"],
                            "message_type": "agent_response",
                            "execution_time": 0,
                            "invoked_by": frame["invoked_by"],
                        }
                    )

            results: dict[int, Any] = {}

            async def call(n: int) -> None:
                reply = await session.invoke({"n": n}, request_id=str(n), timeout=5)
                results[n] = reply.response

            async with anyio.create_task_group() as tg:
                tg.start_soon(echo_master)
                async with anyio.create_task_group() as calls:
                    for n in range(20):
                        calls.start_soon(call, n)
                tg.cancel_scope.cancel()
        assert results == {n: n for n in range(20)}

    async def test_master_absent_fails_at_once(self, port: int) -> None:
        async with open_router("127.0.0.1", port) as router, open_session(router.url) as session:
            # Far sooner than the deadline.
            with pytest.raises(MasterNotActiveError) as caught:
                await session.invoke({}, timeout=30, within=5)
        assert str(caught.value) == "Agent is NOT active"

    async def test_master_error_is_reported(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port) as router,
            open_session(router.url) as session,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
            anyio.create_task_group() as tg,
        ):

            async def fail() -> None:
                frame = await master.next(10)
                await master.send(
                    {
                        "message_type": "agent_error",
                        "error": {"error_message": "boom"},
                        "execution_time": 0,
                        "invoked_by": frame["invoked_by"],
                    }
                )

            tg.start_soon(fail)
            with pytest.raises(MasterFailedError, match=r"^boom$"):
                await session.invoke({}, timeout=5)

    async def test_slow_master_times_out_at_the_deadline(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port) as router,
            open_session(router.url) as session,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(serve_master, master, 30.0)
            started = anyio.current_time()
            with pytest.raises(MasterTimeoutError) as caught:
                await session.invoke({}, timeout=0.5)
            elapsed = anyio.current_time() - started
            tg.cancel_scope.cancel()
        # Not before the deadline; the upper bound only shows it is not the master's 30 s.
        assert 0.5 <= elapsed < 10
        assert str(caught.value) == "Master agent did not answer within 0.5 s"

    async def test_a_cancelled_invocation_is_not_answered(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port) as router,
            open_session(router.url) as session,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):
            await wait_for_connected(session)
            await session.client.invoke_master(
                {}, request_id="gone", session_id="s", timeout=30, reply_to=replies_of(session)
            )
            await master.next(10)
            session.client.cancel_master("gone")
            await wait_for(lambda: _status_in_flight(session) == 0, timeout=5)
            assert "gone" not in session._replies.received


class TestConnection:
    async def test_router_restart_fails_calls_in_flight_and_reconnects(self, port: int) -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        master_key = {"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}
        stop_router = anyio.Event()

        async def first_router(*, task_status: Any) -> None:
            async with (
                open_router("127.0.0.1", port, ping_interval=None),
                open_peer(url, **master_key) as master,
            ):
                task_status.started(master)
                await stop_router.wait()

        async with anyio.create_task_group() as routers:
            master = await routers.start(first_router)
            async with open_session(url) as session:
                outcome: list[BaseException] = []

                async def call() -> None:
                    try:
                        await session.invoke({}, timeout=60)
                    except Exception as exc:
                        outcome.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    await master.next(10)  # the master got it and never answers
                    stop_router.set()  # the router stops: every socket is closed
                    # At once, not at the 60-s deadline.
                    await wait_for(lambda: bool(outcome), timeout=5)
                assert isinstance(outcome[0], RouterUnavailableError)
                assert str(outcome[0]) == "Cannot connect to router service. Try again later"

                # While the router is down, calls fail fast and the status says so.
                with pytest.raises(RouterUnavailableError):
                    await session.invoke({}, timeout=60, within=5)
                status = await session.client.status(timeout=1)
                assert not status.connected and status.last_error is not None

                async with (
                    open_router("127.0.0.1", port, ping_interval=None),
                    open_peer(url, **master_key) as master,
                ):
                    await wait_for_connected(session)
                    # The outage was waited for inside: no restart spent on it.
                    assert _restarts(session) == 0
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(serve_master, master)
                        reply = await session.invoke({}, request_id="r2", timeout=5)
                    assert reply.response["response"] == "ok"

    async def test_no_router_at_start_starts_anyway_and_connects_once_there(
        self, port: int
    ) -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        async with open_session(url) as session:
            with pytest.raises(RouterUnavailableError):
                await session.invoke({}, timeout=60, within=5)
            # Several attempts (0.05 s doubling to 0.2 s) and not one restart.
            await anyio.sleep(1.0)
            status = await session.client.status(timeout=1)
            assert not status.connected
            assert status.last_error is not None and "router connection failed" in status.last_error
            info = session.system.snapshot().find("session")
            assert info is not None and info.state is ActorState.RUNNING
            assert info.restarts == 0 and info.last_failure is None

            async with (
                open_router("127.0.0.1", port, ping_interval=None),
                open_peer(url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
            ):
                await wait_for_connected(session)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(serve_master, master)
                    reply = await session.invoke({}, timeout=5)
                assert reply.response["response"] == "ok"

    async def test_a_call_made_while_connecting_waits_for_the_connection(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port, ping_interval=None) as router,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
            open_session(router.url) as session,
            anyio.create_task_group() as tg,
        ):
            # Called as soon as the tree has started, before the socket is open.
            tg.start_soon(serve_master, master)
            reply = await session.invoke({}, timeout=5)
            assert reply.response["response"] == "ok"


def replies_of(session: Session) -> Any:
    return session.system.ref_of("replies")


async def wait_for_connected(session: Session, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not (await session.client.status(timeout=1)).connected:  # noqa: ASYNC110
            await anyio.sleep(0.02)


def _status_in_flight(session: Session) -> int:
    instance = session.system.ref_of("session")._cell.instance
    return len(instance._calls)


def _restarts(session: Session) -> int:
    info = session.system.snapshot().find("session")
    return 0 if info is None else info.restarts
