"""A stop answers every message it finds: the running turns and those queued behind them."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from actors.chat import SHUTTING_DOWN
from persistence import ChatMessage as StoredMessage
from persistence import DatabaseSettings
from web import Settings
from web._server import open_server

from .conftest import make_world, open_master, open_sessionmaker, receive


async def read_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Return every frame the socket gets, and its close code."""
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(await receive(ws, within=15))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd is not None else None


class TestDrainQueue:
    async def test_a_stop_answers_the_running_and_the_queued_messages(
        self, server_settings: Settings, database_url: str
    ) -> None:
        answered, cut = uuid.uuid4(), uuid.uuid4()
        db = DatabaseSettings(DATABASE_URL=database_url)
        async with (
            open_server(server_settings, db) as server,
            open_sessionmaker(database_url) as sessionmaker,
            open_master(server.router_url, server_settings.MASTER_AGENT_API_KEY) as master,
        ):
            host, port = server.http_addresses[0]
            world = await make_world(f"http://{host}:{port}", server_settings, sessionmaker)
            async with (
                connect(world.ws_url(answered)) as ws_answered,
                connect(world.ws_url(cut)) as ws_cut,
                anyio.create_task_group() as tg,
            ):
                # One turn running and two queued behind it; one running and one queued.
                for n in range(3):
                    await ws_answered.send(world.message(f"answered {n}"))
                for n in range(2):
                    await ws_cut.send(world.message(f"cut {n}"))
                await master.wait_seen(answered)
                await master.wait_seen(cut)

                tg.start_soon(server.drain, server_settings.SHUTDOWN_GRACE_SECONDS)
                await anyio.sleep(0.2)
                # Within the grace: this turn and those queued behind it get replies.
                master.release(answered)
                (frames_answered, code_answered), (frames_cut, code_cut) = [
                    await read_until_closed(ws) for ws in (ws_answered, ws_cut)
                ]

            async with sessionmaker() as session:
                rows = (
                    await session.execute(
                        select(StoredMessage).where(
                            StoredMessage.conversation_id.in_([answered, cut])
                        )
                    )
                ).scalars()
                stored = [(row.conversation_id, row.sender_type.value) for row in rows]

        assert code_answered == code_cut == 1001
        replies = [f["response"]["response"] for f in frames_answered]
        assert (
            replies
            == [{"agents_trace": [], "response": f"answer for {answered}", "is_success": True}] * 3
        )
        # The queued message reached the master only after the deadline: cut at once.
        assert [f["response"]["response"] for f in frames_cut] == [
            {"response": SHUTTING_DOWN, "agents_trace": [], "is_success": False}
        ] * 2
        assert master.seen.get(str(cut)) == 1
        assert sorted(stored) == sorted(
            [(answered, "user"), (answered, "master_agent")] * 3
            + [(cut, "user"), (cut, "master_agent")] * 2
        )
