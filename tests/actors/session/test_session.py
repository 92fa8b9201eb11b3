"""The router session against the real router and a scripted master agent."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors.router import open_router
from actors.router._identity import DEFAULT_MASTER_AGENT_API_KEY
from actors.session import (
    MasterFailedError,
    MasterNotActiveError,
    MasterReply,
    MasterTimeoutError,
    RouterSessionClient,
    RouterUnavailableError,
    SessionConfig,
    router_session_spec,
)
from runtime import ActorState, Backoff, RestartIntensity, open_actor_system
from runtime.testing import wait_for, wait_for_state
from tests.actors.router.conftest import Peer, open_peer

from ..agents import BACKEND_KEY, free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from runtime import ActorSystem


@contextlib.asynccontextmanager
async def open_session(url: str) -> AsyncIterator[ActorSystem]:
    spec = router_session_spec(
        SessionConfig(url, BACKEND_KEY, open_timeout=1.0, ping_interval=None),
        events=None,
        backoff=Backoff(initial=0.1, maximum=0.4, jitter=0.0),
    )
    async with open_actor_system(spec, intensity=RestartIntensity(100, 10.0)) as system:
        yield system


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
            open_session(router.url) as system,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):
            client = RouterSessionClient(system.ref_of("session"))
            assert (await client.status()).connected
            async with anyio.create_task_group() as tg:
                seen: list[list[dict[str, Any]]] = []

                async def run() -> None:
                    seen.append(await serve_master(master, answers=2))

                tg.start_soon(run)
                replies = []
                for n in range(2):
                    replies.append(
                        await client.invoke_master(
                            {"user_id": "u", "n": n}, request_id=f"r{n}", session_id="s", timeout=5
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
            open_session(router.url) as system,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):
            client = RouterSessionClient(system.ref_of("session"))

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
                reply = await client.invoke_master(
                    {"n": n}, request_id=str(n), session_id="s", timeout=5
                )
                results[n] = reply.response

            async with anyio.create_task_group() as tg:
                tg.start_soon(echo_master)
                async with anyio.create_task_group() as calls:
                    for n in range(20):
                        calls.start_soon(call, n)
                tg.cancel_scope.cancel()
        assert results == {n: n for n in range(20)}

    async def test_master_absent_fails_at_once(self, port: int) -> None:
        async with open_router("127.0.0.1", port) as router, open_session(router.url) as system:
            client = RouterSessionClient(system.ref_of("session"))
            started = time.monotonic()
            with pytest.raises(MasterNotActiveError) as caught:
                await client.invoke_master({}, request_id="r", session_id="s", timeout=30)
        assert time.monotonic() - started < 1.0
        assert str(caught.value) == "Agent is NOT active"

    async def test_master_error_is_reported(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port) as router,
            open_session(router.url) as system,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):
            client = RouterSessionClient(system.ref_of("session"))
            async with anyio.create_task_group() as tg:

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
                    await client.invoke_master({}, request_id="r", session_id="s", timeout=5)

    async def test_slow_master_times_out_at_the_deadline(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port) as router,
            open_session(router.url) as system,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
        ):
            client = RouterSessionClient(system.ref_of("session"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_master, master, 5.0)
                started = time.monotonic()
                with pytest.raises(MasterTimeoutError) as caught:
                    await client.invoke_master({}, request_id="r", session_id="s", timeout=0.5)
                elapsed = time.monotonic() - started
                tg.cancel_scope.cancel()
        assert 0.5 <= elapsed < 0.8
        assert str(caught.value) == "Master agent did not answer within 0.5 s"


class TestConnection:
    async def test_router_restart_fails_calls_in_flight_and_reconnects(self, port: int) -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        master_key = {"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}
        stop_router = anyio.Event()

        async def first_router(*, task_status: Any) -> None:
            async with (
                open_router("127.0.0.1", port, ping_interval=None),
                open_peer(url, **master_key),
            ):
                task_status.started()
                await stop_router.wait()

        async with anyio.create_task_group() as routers:
            await routers.start(first_router)
            async with open_session(url) as system:
                client = RouterSessionClient(system.ref_of("session"))
                outcome: list[BaseException] = []

                async def call() -> None:
                    try:
                        await client.invoke_master({}, request_id="r", session_id="s", timeout=60)
                    except Exception as exc:
                        outcome.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    await anyio.sleep(0.2)  # the master got it and never answers
                    stop_router.set()  # the router stops: every socket is closed
                    started = time.monotonic()
                    with anyio.fail_after(1):
                        while not outcome:  # noqa: ASYNC110
                            await anyio.sleep(0.005)
                assert time.monotonic() - started < 0.2
                assert isinstance(outcome[0], RouterUnavailableError)
                assert str(outcome[0]) == "Cannot connect to router service. Try again later"

                # While the router is down, calls fail fast and the status says so.
                with pytest.raises(RouterUnavailableError):
                    await client.invoke_master({}, request_id="r", session_id="s", timeout=60)
                assert not (await client.status(timeout=0.2)).connected

                async with (
                    open_router("127.0.0.1", port, ping_interval=None),
                    open_peer(url, **master_key) as master,
                ):
                    await wait_for_state(system, "session", ActorState.RUNNING, timeout=5)
                    info = system.snapshot().find("session")
                    assert info is not None and info.restarts >= 1
                    assert info.last_failure is not None
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(serve_master, master)
                        reply = await client.invoke_master(
                            {}, request_id="r2", session_id="s", timeout=5
                        )
                    assert reply.response["response"] == "ok"

    async def test_no_router_at_start_starts_anyway_and_connects_once_there(
        self, port: int
    ) -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        async with open_session(url) as system:
            client = RouterSessionClient(system.ref_of("session"), accept_timeout=0.2)
            with pytest.raises(RouterUnavailableError):
                await client.invoke_master({}, request_id="r", session_id="s", timeout=60)
            assert not (await client.status(timeout=0.2)).connected
            await wait_for(lambda: _restarts(system) >= 1, timeout=5)
            info = system.snapshot().find("session")
            assert info is not None
            assert info.last_failure is not None
            assert info.last_failure.type.endswith("RouterConnectionError")

            async with (
                open_router("127.0.0.1", port, ping_interval=None),
                open_peer(url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
            ):
                with anyio.fail_after(5):
                    while not (await client.status(timeout=0.2)).connected:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(serve_master, master)
                    reply = await client.invoke_master(
                        {}, request_id="r", session_id="s", timeout=5
                    )
                assert reply.response["response"] == "ok"

    async def test_a_call_made_while_connecting_waits_for_the_connection(self, port: int) -> None:
        async with (
            open_router("127.0.0.1", port, ping_interval=None) as router,
            open_peer(router.url, **{"API-KEY": DEFAULT_MASTER_AGENT_API_KEY}) as master,
            open_session(router.url) as system,
            anyio.create_task_group() as tg,
        ):
            # Called as soon as the tree has started, before the socket is open.
            tg.start_soon(serve_master, master)
            client = RouterSessionClient(system.ref_of("session"))
            reply = await client.invoke_master({}, request_id="r", session_id="s", timeout=5)
            assert reply.response["response"] == "ok"


def _restarts(system: ActorSystem) -> int:
    info = system.snapshot().find("session")
    return 0 if info is None else info.restarts
