"""A reply reaches every socket of its conversation, on every back-end process.

Two servers (`open_server`) share one database; the second uses the first's embedded
router. One user has one conversation open on both (a tab on each process, as a
round-robin balancer would place them). A message sent on either is answered on both
sockets, once each: the process that ran the turn answers its own socket, and the
other hears the turn's end (``genai_turns``) and reads the reply for its socket.
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import text

from ..actors.agents import invoke_echo
from ..faults.conftest import ScriptedMaster, open_master, open_sessionmaker, wait_ready
from .conftest import make_settings, open_backend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import Process

    from .conftest import Backend, Frontend, User


async def only_responses(ui: Frontend, seconds: float) -> list[dict[str, Any]]:
    return [f for f in await ui.silent_for(seconds) if f.get("type") == "agent_response"]


@dataclass
class Pair:
    """Two processes on one database; the second uses the first's embedded router."""

    first: Backend
    second: Backend
    master: ScriptedMaster
    owner: User


@contextlib.asynccontextmanager
async def open_pair(tmp_path: Path, database_url: str, **first: Any) -> AsyncIterator[Pair]:
    """Start the two, the scripted master on the router, and a user with a model."""
    first_settings = make_settings(tmp_path, **first)
    async with open_backend(first_settings, database_url) as one:
        await one.wait_session()
        second_settings = make_settings(tmp_path, ROUTER_WS_URL=one.router_url)
        async with (
            open_backend(second_settings, database_url) as two,
            open_master(one.router_url, first_settings.MASTER_AGENT_API_KEY) as master,
        ):
            await wait_ready(two.base)
            owner = await one.user()
            await one.add_model(owner)
            yield Pair(one, two, master, owner)


async def test_a_reply_reaches_the_conversations_sockets_on_both_processes(
    tmp_path: Path, database_url: str
) -> None:
    async with open_pair(tmp_path, database_url) as pair:
        first, second, master, owner = pair.first, pair.second, pair.master, pair.owner
        master.release("*")
        session_id = str(uuid.uuid4())
        async with (
            first.frontend(owner, session_id) as here,
            second.frontend(owner, session_id) as there,
        ):
            for sender, other in ((here, there), (there, here)):
                await sender.say("to both")
                mine = await sender.response(within=15)
                theirs = await other.response(within=15)
                assert theirs["response"]["request_id"] == mine["response"]["request_id"]
                assert theirs["response"]["response"] == mine["response"]["response"]
                assert mine["response"]["response"]["response"] == f"answer for {session_id}"
                # Once each.
                assert await only_responses(sender, 0.3) == []
                assert await only_responses(other, 0.3) == []
        # Delivered: a new socket is not sent them again.
        async with second.frontend(owner, session_id) as later:
            assert await only_responses(later, 0.5) == []
        history = await first.history(owner, session_id)
        assert [
            json.loads(m["content"])["response"]
            for m in history
            if m["sender_type"] == "master_agent"
        ] == [f"answer for {session_id}"] * 2


async def frames_until_answers(
    ui: Frontend, answers: int, within: float = 20
) -> list[dict[str, Any]]:
    """Read frames until ``answers`` replies have come, then a little longer."""
    frames: list[dict[str, Any]] = []
    with anyio.fail_after(within):
        while sum(f.get("type") == "agent_response" for f in frames) < answers:
            frames.append(await ui.next(within))
    return frames + await ui.silent_for(0.5)


async def test_one_turn_at_a_time_across_processes(tmp_path: Path, database_url: str) -> None:
    """A message sent on one process while the conversation's turn runs on another waits,
    queued, until that turn ends; both sockets get both replies and every event once."""
    async with (
        open_pair(tmp_path, database_url) as pair,
        open_sessionmaker(database_url) as sessionmaker,
    ):
        first, second, master, owner = pair.first, pair.second, pair.master, pair.owner
        session_id = str(uuid.uuid4())
        async with (
            first.frontend(owner, session_id, events=True) as here,
            second.frontend(owner, session_id, events=True) as there,
        ):
            await here.say("first")
            await master.wait_seen(session_id, 1)  # held by the master
            await there.say("second")
            # The second is held back: the master is not asked while the first runs.
            with anyio.move_on_after(1.5):
                await master.wait_seen(session_id, 2)
            assert master.seen[session_id] == 1
            async with sessionmaker() as session:
                rows = (
                    await session.execute(
                        text(
                            "SELECT status, count(*) FROM chatturns"
                            " WHERE session_id = :s GROUP BY status"
                        ),
                        {"s": session_id},
                    )
                ).all()
            assert dict(rows) == {"running": 1, "queued": 1}

            master.release(session_id)
            await master.wait_seen(session_id, 2)
            seen = {"here": await frames_until_answers(here, 2)}
            seen["there"] = await frames_until_answers(there, 2)

        events: dict[str, list[tuple[int, str, str]]] = {}
        for name, frames in seen.items():
            answers = [f for f in frames if f.get("type") == "agent_response"]
            assert len(answers) == 2, (name, frames)
            # Each turn's final event comes before its reply, on either process.
            for answer in answers:
                request_id = answer["response"]["request_id"]
                final = next(
                    i
                    for i, f in enumerate(frames)
                    if f.get("kind") == "answered" and f["request_id"] == request_id
                )
                assert final < frames.index(answer), (name, frames)
            events[name] = [
                (f["seq"], f["request_id"], f["kind"])
                for f in frames
                if f.get("type") == "turn_event"
            ]
        # Every event once, numbered without a gap, the same on both processes.
        assert events["here"] == events["there"]
        seqs = [seq for seq, _, _ in events["here"]]
        assert seqs == list(range(1, len(seqs) + 1))
        # The turns ran one after the other: the second started after the first ended.
        kinds = [(kind, rid) for _, rid, kind in events["here"]]
        first_id = kinds[0][1]
        ended = kinds.index(("answered", first_id))
        started_second = next(
            i for i, (kind, rid) in enumerate(kinds) if kind == "started" and rid != first_id
        )
        assert started_second > ended
        async with sessionmaker() as session:
            stored = (
                await session.execute(
                    text(
                        "SELECT seq, request_id::text, kind FROM chatturnevents"
                        " WHERE session_id = :s ORDER BY seq"
                    ),
                    {"s": session_id},
                )
            ).all()
        assert [tuple(row) for row in stored] == events["here"]


async def test_a_cancel_asked_on_another_process_stops_the_turn_where_it_runs(
    tmp_path: Path, database_url: str
) -> None:
    """The process that runs the turn answers it as cancelled, once, on every socket; the
    master's late answer is kept as an event, not sent."""
    async with open_pair(tmp_path, database_url) as pair:
        first, second, master, owner = pair.first, pair.second, pair.master, pair.owner
        session_id = str(uuid.uuid4())
        async with (
            first.frontend(owner, session_id, events=True) as here,
            second.frontend(owner, session_id) as there,
        ):
            await here.say("to be cancelled")
            accepted = await here.next()
            assert accepted["kind"] == "accepted", accepted
            request_id = accepted["request_id"]
            await master.wait_seen(session_id, 1)
            # The turn's row is stored as running by its look-up.
            response = await second.http.post(
                f"/api/chat/turns/{request_id}/cancel", headers=owner.headers
            )
            assert response.status_code == 202, response.text
            for ui in (here, there):
                answer = await ui.response(within=15)
                while answer.get("type") == "turn_event":
                    answer = await ui.response(within=15)
                assert answer["response"]["request_id"] == request_id
                assert answer["response"]["response"]["response"] == "Turn cancelled"
            master.release(session_id)
            for ui in (here, there):
                assert await only_responses(ui, 1.0) == []
        response = await first.http.get(f"/api/chat/turns/{request_id}", headers=owner.headers)
        assert response.status_code == 200, response.text
        turn = response.json()
        assert turn["status"] == "cancelled"
        kinds = [event["kind"] for event in turn["events"]]
        assert kinds.count("cancelled") == 1, kinds
        with anyio.fail_after(10):
            while "late_reply" not in kinds:
                await anyio.sleep(0.2)
                response = await first.http.get(
                    f"/api/chat/turns/{request_id}", headers=owner.headers
                )
                kinds = [event["kind"] for event in response.json()["events"]]
        history = await first.history(owner, session_id)
        replies = [m for m in history if m["sender_type"] == "master_agent"]
        assert len(replies) == 1


async def test_agent_steps_seen_by_the_router_reach_the_process_that_runs_the_turn(
    tmp_path: Path, database_url: str, processes: list[Process]
) -> None:
    """The router runs in the first process; a turn of the second calls an agent: the
    second process's watchers see the call and its answer among the turn's events."""
    async with open_pair(tmp_path, database_url, MASTER_AGENT="external") as pair:
        first, second, master, owner = pair.first, pair.second, pair.master, pair.owner
        agent = await first.agent(owner)
        await first.start_agent(sys.executable, agent, processes)
        session_id = str(uuid.uuid4())
        async with second.frontend(owner, session_id, events=True) as there:
            await there.say("call the agent")
            while (event := await there.next())["kind"] != "master_invoked":
                pass
            request_id = event["request_id"]
            # The master calls the agent in this turn, through the router.
            await invoke_echo(
                first.router_url,
                first.settings.MASTER_AGENT_API_KEY,
                agent.id,
                "in the turn",
                session_id,
                request_id=request_id,
            )
            # Steps reach the turn while it runs (one that comes after its end is left
            # out, as a late log is): the master answers once the agent's answer is seen.
            events: list[dict[str, Any]] = [event]
            with anyio.fail_after(15):
                while events[-1]["kind"] != "agent_answered":
                    frame = await there.next()
                    if frame.get("type") == "turn_event":
                        events.append(frame)
            master.release(session_id)
            with anyio.fail_after(15):
                while events[-1]["kind"] != "answered":
                    frame = await there.next()
                    if frame.get("type") == "turn_event":
                        events.append(frame)
        steps = [
            (event["kind"], event["data"].get("agent_id"))
            for event in events
            if event["kind"] in {"agent_invoked", "agent_answered"}
        ]
        assert steps == [("agent_invoked", agent.id), ("agent_answered", agent.id)]
        assert {event["request_id"] for event in events} == {request_id}
