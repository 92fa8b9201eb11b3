"""Turns that can be watched, resumed and cancelled, through the real front-end socket,
with the original master's part played by a scripted router client that answers only
once a test releases the conversation (so a turn is held in the middle).

And a server killed with SIGKILL in the middle of a turn: started again on the same
database, the turn is ``interrupted`` and the conversation's next socket is told.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from actors.chat import CANCELLED, INTERRUPTED
from persistence import DatabaseSettings
from web._server import open_server

from .conftest import World, make_world, open_master, open_sessionmaker, receive, wait_ready

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from web import Settings

    from .conftest import ScriptedMaster

ROOT = Path(__file__).resolve().parents[2]


class Served:
    def __init__(self, base_url: str, world: World, master: ScriptedMaster, other: World) -> None:
        self.base_url = base_url
        self.world = world
        self.master = master
        self.other = other

    def url(self, session_id: uuid.UUID, *, world: World | None = None, **query: Any) -> str:
        url = (world or self.world).ws_url(session_id)
        return url + "".join(f"&{key}={value}" for key, value in query.items())

    async def turn(self, request_id: str, *, world: World | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return await http.get(
                f"/api/chat/turns/{request_id}",
                headers={"Authorization": f"Bearer {(world or self.world).token}"},
            )

    async def wait_status(self, request_id: str, status: str) -> dict[str, Any]:
        with anyio.fail_after(10):
            while True:
                response = await self.turn(request_id)
                if response.status_code == 200 and response.json()["status"] == status:
                    body: dict[str, Any] = response.json()
                    return body
                await anyio.sleep(0.05)


@pytest.fixture(name="served")
async def _served(server_settings: Settings, database_url: str) -> AsyncIterator[Served]:
    settings = server_settings.model_copy(update={"MASTER_AGENT": "external"})
    async with (
        open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server,
        open_sessionmaker(database_url) as sessionmaker,
    ):
        host, port = server.http_addresses[0]
        base_url = f"http://{host}:{port}"
        await wait_ready(base_url)
        world = await make_world(base_url, settings, sessionmaker)
        other = await make_world(base_url, settings, sessionmaker)
        async with open_master(server.router_url, settings.MASTER_AGENT_API_KEY) as master:
            yield Served(base_url, world, master, other)


async def events_until(
    ws: ClientConnection, kind: str, within: float = 10.0
) -> list[dict[str, Any]]:
    """Read ``turn_event`` frames (skipping others) up to one of ``kind``."""
    found: list[dict[str, Any]] = []
    with anyio.fail_after(within):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") != "turn_event":
                continue
            found.append(frame)
            if frame["kind"] == kind:
                return found


async def response_frame(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    """Read frames up to the next ``agent_response``."""
    with anyio.fail_after(within):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") == "agent_response":
                return frame


def texts(frame: dict[str, Any]) -> str:
    text: str = frame["response"]["response"]["response"]
    return text


class TestWatching:
    async def test_a_socket_without_the_flag_gets_todays_frames_only(self, served: Served) -> None:
        session_id = uuid.uuid4()
        served.master.release(session_id)
        async with connect(served.url(session_id)) as ws:
            await ws.send(World.message("hello"))
            frame = await receive(ws)
            assert frame["type"] == "agent_response", frame
            with anyio.move_on_after(0.3):
                extra = await ws.recv()
                pytest.fail(f"unexpected frame {extra}")

    async def test_events_arrive_in_order_and_match_what_is_stored(self, served: Served) -> None:
        session_id = uuid.uuid4()
        served.master.release(session_id)
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("first"))
            first = await events_until(ws, "answered")
            await response_frame(ws)
            await ws.send(World.message("second"))
            second = await events_until(ws, "answered")
        kinds = [event["kind"] for event in first]
        assert kinds == ["accepted", "started", "master_invoked", "answered"], kinds
        seqs = [event["seq"] for event in first + second]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert first[0]["data"]["message"] == "first"
        assert first[2]["data"] == {"master": "external"}
        reply = first[-1]["data"]["reply"]
        assert reply["type"] == "agent_response"
        assert reply["response"]["response"]["is_success"] is True
        stored = (await served.turn(first[0]["request_id"])).json()
        assert stored["status"] == "answered"
        assert [(e["seq"], e["kind"], e["data"]) for e in stored["events"]] == [
            (e["seq"], e["kind"], e["data"]) for e in first
        ]

    async def test_a_reconnect_mid_turn_misses_nothing_and_repeats_nothing(
        self, served: Served
    ) -> None:
        session_id = uuid.uuid4()
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("held"))
            before = await events_until(ws, "accepted")
            await served.master.wait_seen(session_id)
        seen = before[-1]["seq"]
        # Meanwhile the turn went on (started, master invoked), unwatched.
        async with connect(served.url(session_id, after_seq=seen)) as ws:
            served.master.release(session_id)
            after = await events_until(ws, "answered")
            frame = await response_frame(ws)
        assert frame["response"]["request_id"] == before[0]["request_id"]
        every = before + after
        assert [e["seq"] for e in every] == list(range(1, len(every) + 1))
        assert [e["kind"] for e in every] == ["accepted", "started", "master_invoked", "answered"]

    async def test_replay_from_zero_after_the_chat_actor_is_gone(self, served: Served) -> None:
        session_id = uuid.uuid4()
        served.master.release(session_id)
        async with connect(served.url(session_id)) as ws:
            await ws.send(World.message("one"))
            await response_frame(ws)
        await anyio.sleep(0.3)  # the actor passivates; the events are read back
        async with connect(served.url(session_id, after_seq=0)) as ws:
            replayed = await events_until(ws, "answered")
        assert [e["kind"] for e in replayed] == [
            "accepted",
            "started",
            "master_invoked",
            "answered",
        ]

    async def test_bad_watch_parameters_are_refused_as_a_bad_session_id_is(
        self, served: Served
    ) -> None:
        for query in ({"after_seq": "-1"}, {"after_seq": "x"}, {"events": "yes"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(served.url(uuid.uuid4(), **query)):
                    pass
            assert refused.value.response.status_code == 403


class TestDelivery:
    async def test_a_reply_made_while_no_socket_was_open_arrives_on_the_next(
        self, served: Served
    ) -> None:
        session_id = uuid.uuid4()
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("are you there"))
            accepted = await events_until(ws, "accepted")
            await served.master.wait_seen(session_id)
        request_id = accepted[0]["request_id"]
        served.master.release(session_id)
        await served.wait_status(request_id, "answered")
        async with connect(served.url(session_id)) as ws:
            frame = await receive(ws)
            assert frame["type"] == "agent_response"
            assert frame["response"]["request_id"] == request_id
            assert texts(frame) == f"answer for {session_id}"
        async with connect(served.url(session_id)) as ws:  # delivered once
            with anyio.move_on_after(0.3):
                extra = await ws.recv()
                pytest.fail(f"delivered twice: {extra}")


class TestCancelling:
    async def test_a_running_turn_is_cancelled_and_the_late_answer_kept(
        self, served: Served
    ) -> None:
        session_id = uuid.uuid4()
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("slow"))
            events = await events_until(ws, "master_invoked")
            request_id = events[0]["request_id"]
            await served.master.wait_seen(session_id)
            await ws.send(json.dumps({"type": "cancel", "request_id": request_id}))
            frame = await response_frame(ws)
            assert frame["response"]["request_id"] == request_id
            assert texts(frame) == CANCELLED
            assert frame["response"]["response"]["is_success"] is False
            # The external master cannot be told: its answer is kept, not sent.
            served.master.release(session_id)
            late = await events_until(ws, "late_reply")
            assert late[-1]["data"]["response"]["response"] == f"answer for {session_id}"
            with anyio.move_on_after(0.3):
                while True:
                    extra = json.loads(await ws.recv())
                    assert extra.get("type") != "agent_response", extra
        await served.wait_status(request_id, "cancelled")
        with anyio.fail_after(10):  # the late answer is stored by the chat's own flush
            while True:
                body = (await served.turn(request_id)).json()
                if body["events"][-1]["kind"] == "late_reply":
                    break
                await anyio.sleep(0.1)
        assert [e["kind"] for e in body["events"]][-2:] == ["cancelled", "late_reply"]

    async def test_a_queued_turn_is_cancelled_and_the_running_one_goes_on(
        self, served: Served
    ) -> None:
        session_id = uuid.uuid4()
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("first"))
            await events_until(ws, "master_invoked")
            await ws.send(World.message("second"))
            queued = await events_until(ws, "accepted")
            assert queued[-1]["data"]["queued"] is True
            second = queued[-1]["request_id"]
            await ws.send(json.dumps({"type": "cancel", "request_id": second}))
            cancelled = await response_frame(ws)
            assert cancelled["response"]["request_id"] == second
            assert texts(cancelled) == CANCELLED
            served.master.release(session_id)
            answered = await response_frame(ws)
            assert texts(answered) == f"answer for {session_id}"
            with anyio.move_on_after(0.5):
                while True:
                    extra = json.loads(await ws.recv())
                    assert extra.get("type") != "agent_response", extra
        assert served.master.seen[str(session_id)] == 1  # the second never ran
        body = await served.wait_status(second, "cancelled")
        assert [e["kind"] for e in body["events"]] == ["accepted", "cancelled"]

    async def test_another_users_cancel_is_refused(self, served: Served) -> None:
        session_id = uuid.uuid4()
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("mine"))
            events = await events_until(ws, "master_invoked")
            request_id = events[0]["request_id"]
            async with connect(served.url(session_id, world=served.other)) as theirs:
                await theirs.send(json.dumps({"type": "cancel", "request_id": request_id}))
                refused = await receive(theirs)
            assert refused == {"type": "error", "error": "Turn not found"}
            async with httpx.AsyncClient(base_url=served.base_url) as http:
                response = await http.post(
                    f"/api/chat/turns/{request_id}/cancel",
                    headers={"Authorization": f"Bearer {served.other.token}"},
                )
            assert response.status_code == 404
            served.master.release(session_id)
            frame = await response_frame(ws)
            assert texts(frame) == f"answer for {session_id}"

    async def test_a_cancel_over_rest_answers_the_socket(self, served: Served) -> None:
        session_id = uuid.uuid4()
        async with connect(served.url(session_id, events=1)) as ws:
            await ws.send(World.message("stop me"))
            events = await events_until(ws, "master_invoked")
            request_id = events[0]["request_id"]
            async with httpx.AsyncClient(base_url=served.base_url) as http:
                response = await http.post(
                    f"/api/chat/turns/{request_id}/cancel",
                    headers={"Authorization": f"Bearer {served.world.token}"},
                )
            assert response.status_code == 202, response.text
            frame = await response_frame(ws)
            assert texts(frame) == CANCELLED
            await ws.send(json.dumps({"type": "cancel", "request_id": request_id}))
            assert await receive(ws) == {"type": "error", "error": "Turn is already finished"}


@contextlib.asynccontextmanager
async def serve_process(
    settings: Settings, database_url: str, log: Path
) -> AsyncIterator[anyio.abc.Process]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(settings.HTTP_PORT),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(settings.ROUTER_PORT),
        "FILES_DIR": str(settings.FILES_DIR),
        "BCRYPT_ROUNDS": "4",
        "MASTER_AGENT": "external",
    }
    with log.open("ab") as out:
        proc = await anyio.open_process(
            [sys.executable, "-c", "from web.cli import main; main()", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await wait_ready(f"http://127.0.0.1:{settings.HTTP_PORT}", within=60)
        yield proc
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await proc.aclose()


async def test_a_turn_of_a_killed_server_is_interrupted_and_its_user_told(
    server_settings: Settings, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{server_settings.HTTP_PORT}"
    router = f"ws://127.0.0.1:{server_settings.ROUTER_PORT}/ws"
    session_id = uuid.uuid4()
    async with open_sessionmaker(database_url) as sessionmaker:
        async with (
            serve_process(server_settings, database_url, log) as proc,
            open_master(router, server_settings.MASTER_AGENT_API_KEY) as master,
        ):
            world = await make_world(base, server_settings, sessionmaker)
            async with connect(world.ws_url(session_id) + "&events=1") as ws:
                await ws.send(World.message("never answered"))
                events = await events_until(ws, "master_invoked")
                await master.wait_seen(session_id)
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        request_id = events[0]["request_id"]
        async with serve_process(server_settings, database_url, log):
            async with connect(world.ws_url(session_id)) as ws:
                frame = await receive(ws)
            assert frame["type"] == "agent_response", frame
            assert frame["response"]["request_id"] == request_id
            assert texts(frame) == INTERRUPTED
            async with httpx.AsyncClient(base_url=base) as http:
                response = await http.get(
                    f"/api/chat/turns/{request_id}",
                    headers={"Authorization": f"Bearer {world.token}"},
                )
                history = await http.get(
                    "/api/chat",
                    params={"session_id": str(session_id)},
                    headers={"Authorization": f"Bearer {world.token}"},
                )
        body = response.json()
        assert body["status"] == "interrupted", body
        kinds = [e["kind"] for e in body["events"]]
        assert kinds[0] == "accepted" and kinds[-1] == "interrupted", kinds
        seqs = [e["seq"] for e in body["events"]]
        assert seqs == sorted(set(seqs)), seqs
        contents = [item["content"] for item in history.json()["items"]]
        assert any(INTERRUPTED in str(content) for content in contents), contents
