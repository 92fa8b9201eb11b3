"""Hostile router clients against the whole server: nobody is routed, invoked, answered
or stored on a claim alone.

Each test runs the real server (its embedded router verifies agent tokens against the
secret and the database) and talks to it over real sockets, as an attacker would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from actors.router import CLOSE_INVALID_TOKEN, CLOSE_MISSING_IDENTITY, GetStatistics
from persistence._models import Agent, Log

from .live import Live, open_live

# Generous bounds for a busy machine; the waits end as soon as the condition holds.
WITHIN = 10.0
# How long a socket must stay silent to show it was sent nothing.
QUIET = 0.5


@pytest.fixture(name="live")
async def _live(
    tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Live]:
    # ``sessionmaker`` empties the tables once the test is over. A small log budget
    # shows the limit without sending megabytes.
    async with open_live(
        tmp_path,
        database_url,
        ROUTER_LOG_RATE=1.0,
        ROUTER_LOG_BURST=20,
        ROUTER_LOG_BYTES_BURST=64 * 1024,
    ) as live:
        yield live


async def _agent(live: Live, token: str) -> tuple[str, str]:
    """Register an agent for the token's user; return ``(agent id, agent JWT)``."""
    async with live.http() as http:
        response = await http.post(
            "/api/agents/register",
            json={"name": f"a_{uuid.uuid4().hex[:6]}", "description": "d", "input_parameters": {}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    token_ = str(response.json()["jwt"])
    return _sub(token_), token_


def _sub(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"])


async def _recv_json(ws: ClientConnection) -> Any:
    with anyio.fail_after(WITHIN):
        return json.loads(await ws.recv())


async def _closed_with(ws: ClientConnection) -> tuple[int | None, list[Any]]:
    """Read until the socket closes; return its close code and the frames before it."""
    frames: list[Any] = []
    with anyio.fail_after(WITHIN):
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), frames


async def _silent(ws: ClientConnection) -> None:
    with anyio.move_on_after(QUIET):
        frame = await ws.recv()
        raise AssertionError(f"unexpected frame: {frame!r}")


async def _opened(ws: ClientConnection) -> ClientConnection:
    """Wait until the router has opened the socket's connection (it answers a frame)."""
    await ws.send("not json")
    assert (await _recv_json(ws))["error"]["error_type"] == "InvalidJSONRequestFormat"
    return ws


def _invoke(target: str, text: str) -> str:
    return json.dumps(
        {
            "message_type": "agent_invoke",
            "agent_uuid": target,
            "request_payload": {"text": text},
            "request_metadata": {"request_id": str(uuid.uuid4()), "session_id": "s"},
        }
    )


async def _hub_statistics(live: Live) -> Any:
    return await live.server.system.ref_of("router.hub").ask(GetStatistics())


class TestIdentity:
    async def test_a_forged_token_claiming_a_victims_id_is_closed_and_gets_nothing(
        self, live: Live
    ) -> None:
        _, owner = await live.login()
        victim_id, victim_jwt = await _agent(live, owner)
        caller_id, caller_jwt = await _agent(live, owner)
        forged = jwt.encode(
            jwt.decode(victim_jwt, options={"verify_signature": False}),
            "not-the-server-secret-but-long-enough!",
            algorithm="HS256",
        )
        unsigned = (
            ".".join(
                base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                for part in ({"alg": "none"}, {"sub": victim_id})
            )
            + "."
        )
        async with (
            live.router({"X-Custom-Authorization": victim_jwt}) as victim,
            live.router({"X-Custom-Authorization": caller_jwt}) as caller,
        ):
            await _opened(victim)
            await _opened(caller)
            for token in (forged, unsigned):
                async with live.router({"X-Custom-Authorization": token}) as impostor:
                    code, frames = await _closed_with(impostor)
                assert code == CLOSE_INVALID_TOKEN
                # The frame a library agent stops on, as for a token refused at register.
                assert frames == [
                    {
                        "error": {
                            "error_message": "Agent ID was not registered before",
                            "error_type": "AgentGeneralError",
                            "message_type": "agent_error",
                        }
                    }
                ]
            # The victim is still the one invoked.
            async with live.router({"x-custom-invoke-key": f"{caller_id}:{victim_id}"}) as send:
                await send.send(_invoke(victim_id, "hello"))
                invocation = await _recv_json(victim)
                assert invocation["request_payload"] == {"text": "hello"}

    async def test_a_deleted_agents_token_is_closed(self, live: Live) -> None:
        _, owner = await live.login()
        agent_id, agent_jwt = await _agent(live, owner)
        async with live.http() as http:
            response = await http.delete(
                f"/api/agents/{agent_id}", headers={"Authorization": f"Bearer {owner}"}
            )
        assert response.status_code in (200, 204), response.text
        async with live.router({"X-Custom-Authorization": agent_jwt}) as ws:
            code, _ = await _closed_with(ws)
        assert code == CLOSE_INVALID_TOKEN

    async def test_an_invoke_key_needs_a_connected_verified_caller(self, live: Live) -> None:
        _, owner = await live.login()
        agent_id, agent_jwt = await _agent(live, owner)
        # A stranger, then a real agent's id while that agent is not connected.
        for key in (f"{uuid.uuid4()}:{agent_id}", f"{agent_id}:{uuid.uuid4()}"):
            async with live.router({"x-custom-invoke-key": key}) as ws:
                code, _ = await _closed_with(ws)
            assert code == CLOSE_MISSING_IDENTITY, key
        async with live.router({"X-Custom-Authorization": agent_jwt}) as agent:
            await _opened(agent)
            async with live.router({"x-custom-invoke-key": f"{agent_id}:x"}) as ws:
                await _opened(ws)


class TestInvocations:
    async def test_another_users_agent_looks_not_active(self, live: Live) -> None:
        _, alice = await live.login()
        _, mallory = await live.login()
        target_id, target_jwt = await _agent(live, alice)
        mallory_id, mallory_jwt = await _agent(live, mallory)
        async with (
            live.router({"X-Custom-Authorization": target_jwt}) as target,
            live.router({"X-Custom-Authorization": mallory_jwt}) as attacker,
        ):
            await _opened(target)
            await _opened(attacker)
            key = {"x-custom-invoke-key": f"{mallory_id}:{target_id}"}
            async with live.router(key) as send:
                await send.send(_invoke(target_id, "steal"))
                reply = await _recv_json(send)
            assert reply == {
                "message_type": "agent_error",
                "error": {"error_message": "Agent is NOT active", "error_type": "AgentNotActive"},
            }
            # On its main socket as well.
            await attacker.send(_invoke(target_id, "steal"))
            assert (await _recv_json(attacker))["error"]["error_type"] == "AgentNotActive"
            await _silent(target)
        assert (await _hub_statistics(live)).refused_invocations == 2

    async def test_a_reply_reaches_only_the_connection_that_invoked(self, live: Live) -> None:
        _, alice = await live.login()
        _, mallory = await live.login()
        callee_id, callee_jwt = await _agent(live, alice)
        caller_id, caller_jwt = await _agent(live, alice)
        _, mallory_jwt = await _agent(live, mallory)
        async with (
            live.router({"X-Custom-Authorization": callee_jwt}) as callee,
            live.router({"X-Custom-Authorization": caller_jwt}) as caller,
            live.router({"X-Custom-Authorization": mallory_jwt}) as attacker,
        ):
            for ws in (callee, caller, attacker):
                await _opened(ws)
            async with live.router({"x-custom-invoke-key": f"{caller_id}:{callee_id}"}) as send:
                await send.send(_invoke(callee_id, "question"))
                invoked_by = (await _recv_json(callee))["invoked_by"]
                # Anyone who learns the caller's connection id cannot answer for the callee.
                forged = {"message_type": "agent_response", "invoked_by": invoked_by}
                await attacker.send(json.dumps({**forged, "response": "forged"}))
                await caller.send(json.dumps({**forged, "response": "forged too"}))
                await _opened(attacker)  # both handled by now
                await _opened(caller)
                await callee.send(json.dumps({**forged, "response": "genuine"}))
                assert (await _recv_json(send))["response"] == "genuine"
                # The callee owes nothing more: a second reply goes nowhere.
                await callee.send(json.dumps({**forged, "response": "again"}))
                await _silent(send)
        assert (await _hub_statistics(live)).stray_replies == 3


class TestBackend:
    async def test_a_second_backend_connection_takes_no_registrations(
        self, live: Live, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, owner = await live.login()
        agent_id, agent_jwt = await _agent(live, owner)
        rogue_headers = {"API-KEY": live.settings.MASTER_BE_API_KEY}
        async with live.router(rogue_headers) as rogue:
            await _opened(rogue)
            async with live.router({"X-Custom-Authorization": agent_jwt}) as agent:
                await agent.send(
                    json.dumps({"message_type": "agent_register", "request_payload": {}})
                )
                # The server's own back-end connection still receives it.
                with anyio.fail_after(WITHIN):
                    while not await _is_active(sessionmaker, agent_id):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                await _silent(rogue)
                assert (await _hub_statistics(live)).standby_backends == 1


async def _is_active(sessionmaker: async_sessionmaker[AsyncSession], agent_id: str) -> bool:
    async with sessionmaker() as session:
        active = await session.scalar(
            select(Agent.is_active).where(Agent.id == uuid.UUID(agent_id))
        )
    return bool(active)


class TestLogs:
    async def test_only_verified_agents_log_and_within_their_budget(
        self, live: Live, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, owner = await live.login()
        agent_id, agent_jwt = await _agent(live, owner)

        def log(text: str) -> str:
            return json.dumps(
                {
                    "message_type": "agent_log",
                    "log_message": text,
                    "log_level": "info",
                    "request_id": str(uuid.uuid4()),
                    "session_id": str(uuid.uuid4()),
                }
            )

        async with live.router({"X-Custom-Authorization": agent_jwt}) as agent:
            await _opened(agent)
            # A send() socket of the agent is no agent: its logs are dropped.
            async with live.router({"x-custom-invoke-key": f"{agent_id}:x"}) as send:
                for _ in range(5):
                    await send.send(log("anonymous"))
                await _opened(send)
            # 100 logs of 8 KiB at once: the burst (20 frames, 64 KiB) passes, no more.
            for _ in range(100):
                await agent.send(log("x" * 8 * 1024))
            await _opened(agent)
        stats = await _hub_statistics(live)
        assert stats.logs_unauthenticated == 5
        assert stats.logs_forwarded <= 8, stats
        assert stats.logs_forwarded + stats.logs_over_budget == 100
        with anyio.fail_after(WITHIN):
            while await _stored_logs(sessionmaker, agent_id) < stats.logs_forwarded:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert await _stored_logs(sessionmaker, agent_id) == stats.logs_forwarded
        async with live.http() as http:
            metrics = (await http.get("/metrics")).text
        assert f'genai_router{{stat="logs_over_budget"}} {float(stats.logs_over_budget)}' in (
            metrics
        )


async def _stored_logs(sessionmaker: async_sessionmaker[AsyncSession], agent_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Log).where(Log.agent_id == agent_id)
        )
    return int(count or 0)


STORM_AGENTS = 300


class TestStorm:
    async def test_after_a_kill_and_reconnect_storm_table_actors_and_database_agree(
        self, live: Live, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, owner = await live.login()
        tokens = [(await _agent(live, owner))[1] for _ in range(STORM_AGENTS)]
        register = json.dumps({"message_type": "agent_register", "request_payload": {}})

        async def connect_all() -> list[ClientConnection]:
            sockets: list[ClientConnection] = []

            async def one(token: str) -> None:
                ws = await live.router({"X-Custom-Authorization": token}).__aenter__()
                await ws.send(register)
                sockets.append(ws)

            async with anyio.create_task_group() as tg:
                for token in tokens:
                    tg.start_soon(one, token)
            return sockets

        sockets = await connect_all()
        await _agree(live, sessionmaker, STORM_AGENTS)
        for _ in range(2):
            # Killed at once (no close handshake, as a killed process), and back at once.
            for ws in sockets:
                ws.transport.abort()
            sockets = await connect_all()
            await _agree(live, sessionmaker, STORM_AGENTS)
        for ws in sockets:
            ws.transport.abort()
        await _agree(live, sessionmaker, 0)


async def _agree(live: Live, sessionmaker: async_sessionmaker[AsyncSession], n: int) -> None:
    """Wait until routing table, connection actors and database all count ``n`` agents."""
    seen: tuple[int, int, int] = (-1, -1, -1)
    with anyio.move_on_after(60):
        while True:
            stats = await _hub_statistics(live)
            info = live.server.system.snapshot().find("router.connections")
            async with sessionmaker() as session:
                active = await session.scalar(
                    select(func.count()).select_from(Agent).where(Agent.is_active)
                )
            seen = (stats.registered_agents, len(getattr(info, "children", ())), int(active or 0))
            if seen == (n, n, n) and stats.connections == n + 2:  # and our two in-process
                return
            await anyio.sleep(0.1)
    raise AssertionError(f"table, actors and database: {seen}, expected {n} each")


class TestMetrics:
    async def test_sockets_are_counted_by_kind_not_listed_one_by_one(self, live: Live) -> None:
        _, owner = await live.login()
        tokens = [(await _agent(live, owner))[1] for _ in range(20)]
        async with contextlib.AsyncExitStack() as stack:
            for token in tokens:
                ws = await stack.enter_async_context(live.router({"X-Custom-Authorization": token}))
                await _opened(ws)
            async with live.http() as http:
                text = (await http.get("/metrics")).text
        assert 'genai_actor_running{actor="router.connections.*",kind="actor"} 20.0' in text
        assert 'genai_actor_mailbox_capacity{actor="router.connections.*"} 20000.0' in text
        # No series names a socket (a connection actor's path ends in its socket's id).
        socket_series = [
            line
            for line in text.splitlines()
            if 'actor="router.connections.' in line and 'connections.*"' not in line
        ]
        assert socket_series == []
