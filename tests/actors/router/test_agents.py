"""The router against real, unmodified ``genai-protocol`` agents (1.0.9 and 2.0.3)."""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from genai_session.session import GenAISession

from actors.router import AGENT_NOT_ACTIVE, AGENT_UNREGISTERED

from . import handlers
from .conftest import BACKEND_KEY, Agents, Peer, mint_jwt, open_peer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from actors.router import RunningRouter

FAST = 0.1  # the forwarding deadline for register/unregister events


def library_session(router: RunningRouter, agent_id: str) -> GenAISession:
    """A 2.0.3 session in this process, configured as its environment would."""
    session = GenAISession()
    session.jwt_token = mint_jwt(agent_id)
    session.ws_url = router.url
    session.is_local_setup = True
    return session


def echo_session(router: RunningRouter, agent_id: str) -> GenAISession:
    session = library_session(router, agent_id)
    session.bind(name="echo_agent", description="Echoes text")(handlers.echo)
    return session


def input_schema(agent_id: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": agent_id,
            "description": "Echoes text",
            "parameters": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "delay": {"type": "number", "default": 0.0},
                },
                "required": ["text"],
            },
        },
    }


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 (the table has no change notification)
            await anyio.sleep(0.005)


@pytest.fixture(params=["1.0.9", "2.0.3"], name="python")
def _python(request: pytest.FixtureRequest) -> Path | str:
    name = "python_109" if request.param == "1.0.9" else "python_203"
    python: Path | str = request.getfixturevalue(name)
    return python


class TestRegistration:
    async def test_register_and_unregister_are_forwarded_at_once(
        self, router: RunningRouter, backend: Peer
    ) -> None:
        agent_id = str(uuid.uuid4())
        session = echo_session(router, agent_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.process_events)
            registered = await backend.expect("agent_register", within=FAST)
            tg.cancel_scope.cancel()
        assert registered == {
            "agent_name": "echo_agent",
            "agent_description": "Echoes text",
            "agent_input_schema": input_schema(agent_id),
            "agent_uuid": agent_id,
            "agent_jwt": session.jwt_token,
            "message_type": "agent_register",
        }
        unregistered = await backend.expect("agent_unregister", within=FAST)
        assert unregistered == {"agent_uuid": agent_id, "message_type": "agent_unregister"}

    async def test_killed_agent_is_unregistered_at_once(
        self, backend: Peer, agents: Agents, python: Path | str
    ) -> None:
        agent_id = str(uuid.uuid4())
        process = await agents.start(python, "echo", agent_id)
        registered = await backend.expect("agent_register", within=15)
        assert registered["agent_name"] == "echo_agent"
        assert registered["agent_input_schema"] == input_schema(agent_id)
        process.kill()
        await backend.expect("agent_unregister", within=FAST, agent_uuid=agent_id)

    async def test_backend_error_frame_stops_the_agent(
        self, router: RunningRouter, backend: Peer, agents: Agents, python: Path | str
    ) -> None:
        agent_id = str(uuid.uuid4())
        process = await agents.start(python, "echo", agent_id)
        await backend.expect("agent_register", within=15)
        # What the back-end's send(close_timeout=1) does for a bad JWT (API.md §9.4).
        key = f"{BACKEND_KEY}:{agent_id}"
        async with open_peer(router.url, **{"x-custom-invoke-key": key}) as notice:
            await notice.send(
                {
                    "message_type": "agent_invoke",
                    "agent_uuid": agent_id,
                    "request_payload": {
                        "error_message": "Agent ID was not registered before",
                        "error_type": "AgentGeneralError",
                    },
                    "request_metadata": {"request_id": "", "session_id": ""},
                }
            )
            with anyio.fail_after(10):
                await process.wait()
            await backend.expect("agent_unregister", agent_uuid=agent_id)
            await notice.assert_silent(0.05)


class TestInvocation:
    async def test_invoke_response_and_logs(
        self, router: RunningRouter, backend: Peer, agents: Agents, python: Path | str
    ) -> None:
        agent_id = str(uuid.uuid4())
        await agents.start(python, "echo", agent_id)
        await backend.expect("agent_register", within=15)
        async with open_peer(router.url, **{"x-custom-invoke-key": f"tester:{agent_id}"}) as peer:
            await peer.send(
                {
                    "message_type": "agent_invoke",
                    "agent_uuid": agent_id,
                    "request_payload": {"text": "hi"},
                    "request_metadata": {"request_id": "r1", "session_id": "s1"},
                }
            )
            reply = await peer.next()
        version = "1.0.9" if "gp109" in str(python) else "2.0.3"
        execution_time = reply.pop("execution_time")
        assert isinstance(execution_time, float) and math.isfinite(execution_time)
        expected: dict[str, Any] = {
            "response": {"text": "hi", "version": version},
            "message_type": "agent_response",
        }
        if version == "2.0.3":
            expected["response_metadata"] = {"request_id": "r1", "session_id": "s1"}
        assert reply == expected
        log = await backend.expect("agent_log", log_message="echo hi")
        invoked_by = log.pop("invoked_by", None)
        assert log == {
            "message_type": "agent_log",
            "agent_uuid": agent_id,
            "log_message": "echo hi",
            "log_level": "info",
            "request_id": "r1",
            "session_id": "s1",
        }
        if version == "2.0.3":
            assert invoked_by is not None and invoked_by.startswith(f"tester:{agent_id}#")
        else:
            assert invoked_by is None

    async def test_agent_calls_agent_through_the_router(
        self, backend: Peer, agents: Agents, python_109: Path, python_203: str
    ) -> None:
        echo_id, caller_id = str(uuid.uuid4()), str(uuid.uuid4())
        await agents.start(python_203, "echo", echo_id)
        await agents.start(python_109, "caller", caller_id, target=echo_id)
        await backend.expect("agent_register", within=15, agent_uuid=echo_id)
        await backend.expect("agent_register", within=15, agent_uuid=caller_id)
        router = agents.router
        async with open_peer(router.url, **{"x-custom-invoke-key": f"t:{caller_id}"}) as peer:
            await peer.send(
                {
                    "message_type": "agent_invoke",
                    "agent_uuid": caller_id,
                    "request_payload": {"text": "relay"},
                }
            )
            reply = await peer.next(within=10)
        assert reply["response"] == {
            "is_success": True,
            "response": {"text": "relay", "version": "2.0.3"},
        }
        # The caller's temporary send() socket has closed by now: no unregister for it.
        await backend.drain(0.2)
        types = {f["request_payload"]["message_type"] for f in backend.skipped}
        assert types == {"agent_log"}

    async def test_absent_agent_is_not_active(self, router: RunningRouter, backend: Peer) -> None:
        caller = library_session(router, str(uuid.uuid4()))
        absent = str(uuid.uuid4())
        with anyio.fail_after(5):
            reply = await caller.send(message={"text": "x"}, agent_uuid=absent)
        assert (reply.is_success, reply.response) == (False, AGENT_NOT_ACTIVE)
        async with open_peer(router.url, **{"x-custom-invoke-key": f"t:{absent}"}) as peer:
            await peer.send(
                {"message_type": "agent_invoke", "agent_uuid": absent, "request_payload": {}}
            )
            assert await peer.next() == {
                "message_type": "agent_error",
                "error": {"error_message": AGENT_NOT_ACTIVE, "error_type": "AgentNotActive"},
            }

    async def test_agent_killed_mid_call_fails_the_caller(
        self, router: RunningRouter, backend: Peer, agents: Agents, python: Path | str
    ) -> None:
        agent_id = str(uuid.uuid4())
        process = await agents.start(python, "echo", agent_id)
        await backend.expect("agent_register", within=15)
        caller = library_session(router, str(uuid.uuid4()))
        replies: list[Any] = []

        async def call() -> None:
            replies.append(
                await caller.send(message={"text": "x", "delay": 60}, agent_uuid=agent_id)
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_until(lambda: router.hub.statistics().pending_invocations == 1)
            process.kill()
        [reply] = replies
        assert (reply.is_success, reply.response) == (False, AGENT_UNREGISTERED)
        assert router.hub.statistics().pending_invocations == 0

    async def test_concurrent_calls_are_answered_to_their_caller(
        self, router: RunningRouter, backend: Peer
    ) -> None:
        agent_id = str(uuid.uuid4())
        echo = echo_session(router, agent_id)
        # One caller, one target: both send() sockets carry the same invoke key.
        caller = library_session(router, str(uuid.uuid4()))
        replies: dict[str, Any] = {}

        async def call(text: str, delay: float) -> None:
            reply = await caller.send(message={"text": text, "delay": delay}, agent_uuid=agent_id)
            replies[text] = reply

        async with anyio.create_task_group() as tg:
            tg.start_soon(echo.process_events)
            await backend.expect("agent_register")
            with anyio.fail_after(5):
                async with anyio.create_task_group() as calls:
                    calls.start_soon(call, "slow", 0.3)
                    calls.start_soon(call, "fast", 0.0)
            tg.cancel_scope.cancel()
        assert {text: r.response for text, r in replies.items()} == {
            "slow": {"text": "slow"},
            "fast": {"text": "fast"},
        }
        assert all(r.is_success for r in replies.values())


class TestRobustness:
    async def test_no_identity_is_closed_with_4000(self, router: RunningRouter) -> None:
        for headers in (
            {},
            {"API-KEY": "not-a-key"},
            {"X-Custom-Authorization": "master_server_be"},
        ):
            async with open_peer(router.url, **headers) as peer:
                with pytest.raises(Exception) as info:
                    await peer.next()
            assert info.value.rcvd.code == 4000  # type: ignore[attr-defined]
            assert info.value.rcvd.reason == "Missing Authorization header"  # type: ignore[attr-defined]

    async def test_oversize_frame_is_refused_and_others_unaffected(
        self, router: RunningRouter, backend: Peer
    ) -> None:
        agent_id = str(uuid.uuid4())
        echo = echo_session(router, agent_id)
        caller = library_session(router, str(uuid.uuid4()))
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo.process_events)
            await backend.expect("agent_register")
            key = {"x-custom-invoke-key": f"t:{agent_id}"}
            async with open_peer(router.url, **key) as peer:
                big = {
                    "message_type": "agent_invoke",
                    "agent_uuid": agent_id,
                    "request_payload": {"text": "x" * (2 * 1024 * 1024)},
                }
                await peer.send(big)
                refused = await peer.next()
                assert refused["message_type"] == "agent_error"
                assert refused["error"]["error_type"] == "InvalidJSONRequestFormat"
                assert "exceeds the limit of 1048576 bytes" in refused["error"]["error_message"]
                # The same socket still works.
                await peer.send(
                    {
                        "message_type": "agent_invoke",
                        "agent_uuid": agent_id,
                        "request_payload": {"text": "small"},
                    }
                )
                assert (await peer.next())["response"] == {"text": "small"}
            with anyio.fail_after(5):
                reply = await caller.send(message={"text": "other"}, agent_uuid=agent_id)
            assert reply.response == {"text": "other"}
            tg.cancel_scope.cancel()
        assert router.hub.statistics().refused_frames == 1

    async def test_invalid_json_gets_an_error_frame(self, router: RunningRouter) -> None:
        async with open_peer(router.url, **{"x-custom-invoke-key": "a:b"}) as peer:
            await peer.ws.send("{not json")
            assert await peer.next() == {
                "error": {
                    "error_message": "Invalid JSON format",
                    "error_type": "InvalidJSONRequestFormat",
                }
            }

    async def test_old_socket_closing_keeps_the_reconnected_agent(
        self, router: RunningRouter, backend: Peer
    ) -> None:
        agent_id = str(uuid.uuid4())
        auth: dict[str, str] = {"X-Custom-Authorization": mint_jwt(agent_id)}
        invoke = {"x-custom-invoke-key": f"t:{agent_id}"}
        async with open_peer(router.url, **auth) as old:
            await old.send({"message_type": "agent_register", "request_payload": {}})
            await backend.expect("agent_register")
            async with open_peer(router.url, **auth) as new:
                await new.send({"message_type": "agent_register", "request_payload": {}})
                await backend.expect("agent_register")
                await old.ws.close()
                await backend.assert_silent(0.1)
                async with open_peer(router.url, **invoke) as peer:
                    await peer.send(
                        {
                            "message_type": "agent_invoke",
                            "agent_uuid": agent_id,
                            "request_payload": {"q": 1},
                        }
                    )
                    call = await new.next()
                    assert call["request_payload"] == {"q": 1}
                    assert call["invoked_by"].startswith(f"t:{agent_id}#")
                    await new.send(
                        {
                            "message_type": "agent_response",
                            "response": 2,
                            "execution_time": 0.0,
                            "invoked_by": call["invoked_by"],
                        }
                    )
                    assert await peer.next() == {
                        "response": 2,
                        "execution_time": 0.0,
                        "message_type": "agent_response",
                    }
        await backend.expect("agent_unregister", within=FAST, agent_uuid=agent_id)
