"""The database cut for several seconds under the whole server, while real agents
connect, disconnect and log: afterwards, with no restart of the process, the server is
ready, no actor failed or spent a restart, and nothing accepted was lost.

The server reaches PostgreSQL through a `TcpProxy` the test cuts (every connection
closed, new ones refused) and restores; the test itself reads the database directly.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import jwt
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect

from actors.chat import DATABASE_UNAVAILABLE
from actors.registry import RegistryClient, RegistryStatistics
from persistence import Log
from tests.actors.agents import is_active, start_agent, stop_processes, wait_active
from tests.actors.registry.test_registry import log_frame
from tests.actors.router.conftest import open_peer

from .conftest import ProxiedServer, open_master, receive, wait_ready

if TYPE_CHECKING:
    from anyio.abc import Process
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

CUT_SECONDS = 4.0
INVOCATIONS = 5  # per connected agent during the cut; each logs one line
FLOOD = 300  # raw agent_log frames during the cut


def agent_id(token: str) -> uuid.UUID:
    return uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sub"])


def stranger_token(secret: str, user_id: uuid.UUID) -> str:
    """Well signed, for an agent id that has no row: refused once the row is checked."""
    claims = {"sub": str(uuid.uuid4()), "exp": 253402300799, "user_id": str(user_id)}
    return jwt.encode(claims, secret, algorithm="HS256")


async def send_logs(
    ws: ClientConnection, agent: uuid.UUID, count: int, label: str, session_id: uuid.UUID
) -> None:
    """Send ``agent_log`` frames as a 2.x agent does, on a raw agent socket."""
    request_id = str(uuid.uuid4())
    for n in range(count):
        await ws.send(json.dumps(log_frame(agent, str(session_id), request_id, f"{label} {n}")))


async def registry_stats(proxied: ProxiedServer) -> RegistryStatistics:
    return await RegistryClient(proxied.server.system.ref_of("registry")).statistics()


async def wait_pending(proxied: ProxiedServer, at_least: int) -> None:
    with anyio.fail_after(20):
        while (await registry_stats(proxied)).pending_events < at_least:  # noqa: ASYNC110 - polls
            await anyio.sleep(0.02)


async def count_logs(
    sessionmaker: async_sessionmaker[AsyncSession], session_ids: list[uuid.UUID]
) -> int:
    async with sessionmaker() as db:
        stmt = select(func.count()).select_from(Log).where(Log.session_id.in_(session_ids))
        return int(await db.scalar(stmt) or 0)


async def stored_logs(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID
) -> list[tuple[str, str]]:
    """The (agent id, message) of every stored log of a session."""
    async with sessionmaker() as db:
        rows = await db.execute(
            select(Log.agent_id, Log.message).where(Log.session_id == session_id)
        )
        return [(str(agent), message) for agent, message in rows]


def tree_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("children", []) for n in tree_nodes(child))]


async def health(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/health")
    body: dict[str, Any] = response.json()
    return body


class TestDatabaseCut:
    async def test_agents_come_and_go_and_log_through_a_cut(
        self, proxied_server: ProxiedServer
    ) -> None:
        proxied = proxied_server
        sessionmaker, world, secret = (
            proxied.sessionmaker,
            proxied.world,
            proxied.settings.JWT_SECRET_KEY,
        )
        router = proxied.server.router_url
        tokens = {
            name: await world.add_agent(sessionmaker, secret)
            for name in ("steady", "leaver", "newcomer", "visitor", "flooder")
        }
        ids = {name: agent_id(token) for name, token in tokens.items()}
        before_sid, cut_sid, flood_sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        processes: list[Process] = []
        python = sys.executable  # genai-protocol 2.0.3

        async def start(name: str, token: str | None = None) -> Process:
            return await start_agent(python, "echo", router, token or tokens[name], processes)

        async def say(name: str, text: str, sid: uuid.UUID) -> None:
            # As the master agent would: the router admits send() sockets of a
            # master key or of a connected verified agent only.
            reply = await invoke(
                router,
                ids[name],
                text,
                str(sid),
                str(uuid.uuid4()),
                caller=proxied.settings.MASTER_AGENT_API_KEY,
            )
            assert reply["message_type"] == "agent_response", reply

        chats = [uuid.uuid4(), uuid.uuid4()]
        answers: dict[uuid.UUID, list[dict[str, Any]]] = {sid: [] for sid in chats}

        async def chat(ws: ClientConnection, sid: uuid.UUID, text: str) -> dict[str, Any]:
            await ws.send(world.message(text))
            frame = await receive(ws, within=20)
            assert frame["type"] == "agent_response", frame
            answers[sid].append(frame)
            inner: dict[str, Any] = frame["response"]["response"]
            return inner

        master_context = open_master(router, proxied.settings.MASTER_AGENT_API_KEY)
        master = await master_context.__aenter__()
        master.release("*")
        sockets = [await connect(world.ws_url(sid)) for sid in chats]
        try:
            for ws, sid in zip(sockets, chats, strict=True):
                assert (await chat(ws, sid, "before the cut"))["is_success"] is True
            await start("steady")
            leaver = await start("leaver")
            for name in ("steady", "leaver"):
                await wait_active(sessionmaker, ids[name], True, within=20)
            flooder = await connect(
                router, additional_headers={"X-Custom-Authorization": tokens["flooder"]}
            )
            await say("steady", "before", before_sid)
            await send_logs(flooder, ids["flooder"], 50, "before", before_sid)
            await _wait_logs(sessionmaker, [before_sid], 51)

            # -- the cut ------------------------------------------------------------
            proxied.proxy.cut()
            cut_at = anyio.current_time()
            down = await wait_ready(proxied.base_url, status=503, within=10)
            assert down["reason"].startswith("database unreachable"), down
            leaver.kill()
            await wait_pending(proxied, 1)
            await start("newcomer")
            visitor = await start("visitor")
            stranger = await start("stranger", stranger_token(secret, world.user_id))
            await wait_pending(proxied, 4)  # one disconnect, three registrations
            visitor.kill()
            await wait_pending(proxied, 5)
            for n in range(INVOCATIONS):
                await say("steady", f"cut {n}", cut_sid)
                await say("newcomer", f"cut {n}", cut_sid)
            await send_logs(flooder, ids["flooder"], FLOOD, "during", flood_sid)
            # Users chat meanwhile: every message gets exactly one answer, an error
            # they can act on, and nothing crashes.
            for n in range(3):
                for ws, sid in zip(sockets, chats, strict=True):
                    inner = await chat(ws, sid, f"during the cut {n}")
                    assert inner == {
                        "response": DATABASE_UNAVAILABLE,
                        "agents_trace": [],
                        "is_success": False,
                    }
            await anyio.sleep(max(0.0, CUT_SECONDS - (anyio.current_time() - cut_at)))
            stats = await registry_stats(proxied)
            assert stats.waiting_since is not None, stats
            assert stats.pending_events == 5, stats
            async with httpx.AsyncClient(base_url=proxied.base_url) as http:
                metrics = (await http.get("/metrics")).text
            assert 'genai_registry{stat="pending"} 5.0' in metrics
            waited = next(
                line
                for line in metrics.splitlines()
                if line.startswith('genai_registry{stat="waiting_seconds"}')
            )
            assert float(waited.split()[-1]) > 0, waited
            during = (await health(proxied.base_url))["registry"]
            assert during["pending"] == 5 and during["waiting_seconds"] > 0, during
            assert stranger.returncode is None  # its answer waits for the row check

            proxied.proxy.restore()
            # -- after: no restart of the process -----------------------------------
            await wait_ready(proxied.base_url, within=30)
            with anyio.fail_after(30):
                await stranger.wait()  # refused with the protocol's error frame
            await _wait_logs(sessionmaker, [cut_sid], 2 * INVOCATIONS)
            await _wait_logs(sessionmaker, [flood_sid], FLOOD)
            with anyio.fail_after(20):
                while (await registry_stats(proxied)).pending_events:  # noqa: ASYNC110 - polls
                    await anyio.sleep(0.05)
            await flooder.close()
            # Read while the agents are still connected: once they are stopped, their
            # unregistrations make every one of them inactive.
            assert await is_active(sessionmaker, ids["steady"])
            assert await is_active(sessionmaker, ids["newcomer"])
            assert not await is_active(sessionmaker, ids["leaver"])
            assert not await is_active(sessionmaker, ids["visitor"])  # came and went
            # The next turns work, on the same sockets.
            for ws, sid in zip(sockets, chats, strict=True):
                assert (await chat(ws, sid, "after the cut"))["is_success"] is True
                assert len(answers[sid]) == 5  # one answer per message, no more
        finally:
            await stop_processes(processes)
            for ws in sockets:
                await ws.close()
            await master_context.__aexit__(None, None, None)

        # Every log sent with valid ids is stored: the raw ones exactly, and each
        # agent's log of each invocation (the library may log more lines of its own).
        assert await count_logs(sessionmaker, [flood_sid]) == FLOOD
        stored = await stored_logs(sessionmaker, cut_sid)
        for name in ("steady", "newcomer"):
            for n in range(INVOCATIONS):
                assert (str(ids[name]), f"echo cut {n}") in stored, (name, n, stored)
        stats = await registry_stats(proxied)
        assert stats.waiting_since is None
        assert stats.retries > 0  # the outage was seen
        lost = (stats.overflowed, stats.failed, stats.events_overflowed, stats.events_failed)
        assert lost == (0, 0, 0, 0), stats
        body = await health(proxied.base_url)
        assert body["ready"] is True, body
        nodes = tree_nodes(body["tree"])
        assert [n["path"] for n in nodes if n["state"] == "failed"] == []
        spent = {n["path"]: n["restarts"] for n in nodes if n["restarts"]}
        assert spent == {}, spent
        assert not proxied.server.system.failed


async def _wait_logs(
    sessionmaker: async_sessionmaker[AsyncSession], session_ids: list[uuid.UUID], count: int
) -> None:
    with anyio.fail_after(30):
        while await count_logs(sessionmaker, session_ids) < count:  # noqa: ASYNC110 - polls
            await anyio.sleep(0.1)


async def invoke(
    url: str, agent_id: uuid.UUID, text: str, sid: str, rid: str, *, caller: str
) -> dict[str, Any]:
    """Invoke an agent as ``caller``'s send() would, and return its reply."""
    async with open_peer(url, **{"x-custom-invoke-key": f"{caller}:{agent_id}"}) as peer:
        await peer.send(
            {
                "message_type": "agent_invoke",
                "agent_uuid": str(agent_id),
                "request_payload": {"text": text},
                "request_metadata": {"request_id": rid, "session_id": sid},
            }
        )
        while True:
            frame = await peer.next(10)
            if "message_type" in frame:
                return frame
