"""LogFanout: a log reaches its owner's sockets on its session, and no one else's."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import anyio
import pytest

from actors.fanout import LogFanoutClient, SocketOutbox, Subscriptions, log_fanout_spec
from persistence import LogEntry
from runtime import ActorState, ActorSystem, open_actor_system

_ids = itertools.count(1)


def entry(
    owner: uuid.UUID | None, session_id: uuid.UUID, message: str = "m", log_id: int | None = None
) -> LogEntry:
    at = datetime(2026, 1, 2, 3, 4, 5, 6)
    return LogEntry(
        id=next(_ids) if log_id is None else log_id,
        session_id=session_id,
        request_id=uuid.UUID(int=7),
        agent_id="master_server_ml",
        log_level="info",
        message=message,
        creator_id=owner,
        created_at=at,
        updated_at=at,
    )


@pytest.fixture(autouse=True)
def _discard_outboxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[SocketOutbox] = []
    original = SocketOutbox.__init__

    def tracking(self: SocketOutbox, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SocketOutbox, "__init__", tracking)
    yield
    for outbox in made:
        outbox.discard()


@pytest.fixture(name="system")
async def _system() -> AsyncIterator[ActorSystem]:
    async with open_actor_system(log_fanout_spec()) as system:
        yield system


@pytest.fixture(name="fanout")
def _fanout(system: ActorSystem) -> LogFanoutClient:
    return LogFanoutClient(system)


async def drained(outbox: SocketOutbox) -> list[dict[str, object]]:
    await anyio.wait_all_tasks_blocked()
    frames = []
    while True:
        try:
            with anyio.fail_after(0.05):
                frames.append(json.loads(await outbox.receive()))
        except (TimeoutError, anyio.EndOfStream):
            return frames


async def test_frame_shape(fanout: LogFanoutClient) -> None:
    alice, session = uuid.uuid4(), uuid.uuid4()
    outbox = SocketOutbox()
    await fanout.subscribe(alice, session, outbox)
    await fanout.logs_stored([entry(alice, session, "hello")])
    assert await drained(outbox) == [
        {
            "type": "agent_log",
            "log": {
                "session_id": str(session),
                "request_id": str(uuid.UUID(int=7)),
                "log_level": "info",
                "message": "hello",
                "creator_id": str(alice),
                "agent_id": "master_server_ml",
                "created_at": "2026-01-02T03:04:05.000006",
                "updated_at": "2026-01-02T03:04:05.000006",
            },
        }
    ]


async def test_only_the_owners_sockets_on_that_session(fanout: LogFanoutClient) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    session, other_session = uuid.uuid4(), uuid.uuid4()
    alice_one, alice_two = SocketOutbox(), SocketOutbox()
    alice_elsewhere = SocketOutbox()
    bob_same_session = SocketOutbox()
    await fanout.subscribe(alice, session, alice_one)
    await fanout.subscribe(alice, session, alice_two)
    await fanout.subscribe(alice, other_session, alice_elsewhere)
    # Bob names Alice's session id: he still must not see her logs.
    await fanout.subscribe(bob, session, bob_same_session)
    await fanout.logs_stored(
        [entry(alice, session, "a1"), entry(None, session, "orphan"), entry(bob, other_session)]
    )
    assert [f["log"]["message"] for f in await drained(alice_one)] == ["a1"]  # type: ignore[index]
    assert [f["log"]["message"] for f in await drained(alice_two)] == ["a1"]  # type: ignore[index]
    assert await drained(alice_elsewhere) == []
    assert await drained(bob_same_session) == []


async def test_unsubscribed_and_closed_sockets_get_nothing(fanout: LogFanoutClient) -> None:
    alice, session = uuid.uuid4(), uuid.uuid4()
    gone, closed, live = SocketOutbox(), SocketOutbox(), SocketOutbox()
    for outbox in (gone, closed, live):
        await fanout.subscribe(alice, session, outbox)
    fanout.unsubscribe_nowait(alice, session, gone)
    closed.close()
    await fanout.logs_stored([entry(alice, session)])
    assert await drained(gone) == []
    assert await drained(closed) == []
    assert len(await drained(live)) == 1


async def test_a_full_socket_is_closed_without_blocking(fanout: LogFanoutClient) -> None:
    alice, session = uuid.uuid4(), uuid.uuid4()
    slow, fast = SocketOutbox(capacity=2), SocketOutbox()
    await fanout.subscribe(alice, session, slow)
    await fanout.subscribe(alice, session, fast)
    await fanout.logs_stored([entry(alice, session, str(i)) for i in range(5)])
    assert len(await drained(fast)) == 5
    assert slow.overflowed and slow.closed
    assert len(await drained(slow)) == 2


async def test_a_restart_after_a_crash_keeps_every_subscription(
    system: ActorSystem, fanout: LogFanoutClient
) -> None:
    # The sockets subscribe once, when they open: a fan-out that forgot them on a
    # restart would leave every open socket without live logs for good.
    alice, session = uuid.uuid4(), uuid.uuid4()
    outbox = SocketOutbox()
    await fanout.subscribe(alice, session, outbox)
    broken = entry(alice, session)
    object.__setattr__(broken, "created_at", None)  # rendering it raises: a crash
    await fanout.logs_stored([broken])
    with anyio.fail_after(5):
        while True:
            info = system.snapshot().find("fanout")
            if info is not None and info.restarts == 1 and info.state is ActorState.RUNNING:
                break
            await anyio.sleep(0.01)
    await fanout.logs_stored([entry(alice, session, "after the restart")])
    assert [f["log"]["message"] for f in await drained(outbox)] == ["after the restart"]  # type: ignore[index]


async def test_a_log_pushed_again_reaches_no_socket_twice(fanout: LogFanoutClient) -> None:
    # The same stored log may come twice (a relay's read after an outage overlapping
    # the notices; a batch notified twice around a lost commit answer).
    alice, session = uuid.uuid4(), uuid.uuid4()
    outbox = SocketOutbox()
    await fanout.subscribe(alice, session, outbox)
    first, second = entry(alice, session, "one"), entry(alice, session, "two")
    await fanout.logs_stored([first])
    await fanout.logs_stored([first, second])
    await fanout.logs_stored([second])
    assert [f["log"]["message"] for f in await drained(outbox)] == ["one", "two"]  # type: ignore[index]


def test_the_pushed_window_forgets_the_oldest() -> None:
    table = Subscriptions(window=2)
    assert [table.first_push(i) for i in (1, 2, 1, 3)] == [True, True, False, True]
    # 1 left the window when 3 came: it would be pushed again.
    assert table.first_push(1)
    assert not table.first_push(3)
