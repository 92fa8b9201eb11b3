"""What hypercorn's connections hold per connection: the app's events in order and
bounded (as the queue they replace), the HTTP/1.1 read gate made only when waited on."""

from __future__ import annotations

import anyio
import pytest
from hypercorn.asyncio.worker_context import WorkerContext

from web._http import _AppEvents, _ReadGate


async def test_app_events_come_in_order() -> None:
    events = _AppEvents(10)
    await events.put({"type": "websocket.connect"})
    await events.put({"type": "websocket.receive", "text": "a"})
    assert await events.get() == {"type": "websocket.connect"}
    assert await events.get() == {"type": "websocket.receive", "text": "a"}


async def test_a_waiting_get_takes_the_next_event() -> None:
    events = _AppEvents(10)
    got: list[object] = []

    async def get() -> None:
        got.append(await events.get())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(get)
            await anyio.wait_all_tasks_blocked()
            await events.put({"type": "websocket.disconnect", "code": 1000})
    assert got == [{"type": "websocket.disconnect", "code": 1000}]


async def test_a_put_waits_while_the_limit_is_reached() -> None:
    events = _AppEvents(2)
    await events.put({"type": "websocket.receive", "text": "1"})
    await events.put({"type": "websocket.receive", "text": "2"})
    done = anyio.Event()

    async def put() -> None:
        await events.put({"type": "websocket.receive", "text": "3"})
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(put)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert await events.get() == {"type": "websocket.receive", "text": "1"}
            await done.wait()
    assert await events.get() == {"type": "websocket.receive", "text": "2"}
    assert await events.get() == {"type": "websocket.receive", "text": "3"}


async def test_a_cancelled_get_loses_no_event() -> None:
    events = _AppEvents(10)
    with anyio.move_on_after(0.01):
        await events.get()
    await events.put({"type": "websocket.receive", "text": "kept"})
    assert await events.get() == {"type": "websocket.receive", "text": "kept"}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_read_gate_waits_until_set() -> None:
    gate = _ReadGate(WorkerContext(None))
    await gate.clear()
    opened = anyio.Event()

    async def wait() -> None:
        await gate.wait()
        opened.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not opened.is_set()
            await gate.set()
            await opened.wait()
    # Set and not cleared since: no wait.
    with anyio.fail_after(5):
        await gate.wait()
