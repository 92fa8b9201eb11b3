"""A PostgreSQL outage while agents flood logs: nothing lost, not ready while down,
recovered without restarting the server.

The database is an embedded PostgreSQL this test owns (stopped and started again on
the same data directory), given to the server as an external ``DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import anyio
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect

from persistence import DatabaseSettings, Log, open_embedded_postgres, upgrade_to_head
from web import Settings
from web._server import open_server

from .conftest import make_world, open_sessionmaker, wait_ready

AGENTS = 3
BEFORE = 50
DURING = 400


async def send_logs(ws: ClientConnection, agent_id: str, count: int, label: str) -> None:
    session_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
    for n in range(count):
        frame = {
            "message_type": "agent_log",
            "log_message": f"{label} {n}",
            "log_level": "info",
            "agent_uuid": agent_id,
            "request_id": request_id,
            "session_id": session_id,
            "invoked_by": f"caller:{agent_id}#1",
        }
        await ws.send(json.dumps(frame))


class TestDatabaseOutage:
    async def test_no_log_is_lost_and_readiness_follows_the_database(
        self, server_settings: Settings, tmp_path: Path
    ) -> None:
        async with open_embedded_postgres(tmp_path / "pgdata") as pg:
            url = pg.url()
            await upgrade_to_head(url)
            db = DatabaseSettings(DATABASE_URL=url)
            async with (
                open_server(server_settings, db) as server,
                open_sessionmaker(url) as sessionmaker,
            ):
                host, port = server.http_addresses[0]
                base = f"http://{host}:{port}"
                await wait_ready(base)
                world = await make_world(base, server_settings, sessionmaker)
                tokens = [
                    await world.add_agent(sessionmaker, server_settings.JWT_SECRET_KEY)
                    for _ in range(AGENTS)
                ]

                async def stored() -> int:
                    async with sessionmaker() as session:
                        return int(await session.scalar(select(func.count()).select_from(Log)) or 0)

                async def wait_stored(count: int, within: float) -> None:
                    with anyio.fail_after(within):
                        while await stored() < count:  # noqa: ASYNC110 - polls the database
                            await anyio.sleep(0.1)

                sockets = [
                    await connect(
                        server.router_url, additional_headers={"X-Custom-Authorization": token}
                    )
                    for token in tokens
                ]
                try:
                    ids = [_agent_id(token) for token in tokens]
                    for ws, agent_id in zip(sockets, ids, strict=True):
                        await send_logs(ws, agent_id, BEFORE, "before")
                    await wait_stored(AGENTS * BEFORE, 20)

                    await asyncio.to_thread(pg.stop)
                    async with anyio.create_task_group() as tg:
                        for ws, agent_id in zip(sockets, ids, strict=True):
                            tg.start_soon(send_logs, ws, agent_id, DURING, "during")
                    down = await wait_ready(base, status=503, within=10)
                    assert down["reason"].startswith("database unreachable"), down

                    await asyncio.to_thread(pg.start)
                    assert pg.url() == url  # same socket directory: the server's URL holds
                    await wait_ready(base, within=30)
                    total = AGENTS * (BEFORE + DURING)
                    await wait_stored(total, 60)
                    await anyio.sleep(0.5)
                    assert await stored() == total
                finally:
                    for ws in sockets:
                        await ws.close()
                metrics = await _metrics(base)
        for stat in ("dropped", "overflowed", "failed"):
            assert f'genai_log_rows{{stat="{stat}"}} 0.0' in metrics, metrics
        # The outage was seen: the writer retried at least once.
        assert 'genai_log_rows{stat="retries"} 0.0' not in metrics


def _agent_id(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def _metrics(base: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=base) as http:
        return (await http.get("/metrics")).text
