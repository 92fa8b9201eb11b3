"""Throughput of the actor runtime against pykka and a bare memory stream.

Run: ``python -m bench.runtime``. Prints one ``name=value`` per line.

The runtime's actor has its full mailbox on (bound 1000, WAIT policy,
statistics, control channel); its handler does nothing. ``tell`` counts
messages handled per second, ``ask`` round trips per second. pykka's threaded
actor and a pair of anyio memory object streams (the floor of what a task-to-task
hand-off costs) do the same work. Each figure is the best of a few rounds, which
keeps the ratios steady on a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pykka

from runtime import Actor, ChildSpec, OverflowPolicy, open_actor_system

TELLS = 200_000
ASKS = 20_000
ROUNDS = 3


class _Counter(Actor[int]):
    def __init__(self, done: anyio.Event, total: int) -> None:
        self.count = 0
        self.total = total
        self.done = done

    async def handle(self, message: int) -> int:
        self.count += 1
        if self.count == self.total:
            self.done.set()
        return message


def _best(results: dict[str, float], key: str, value: float) -> None:
    results[key] = max(results.get(key, 0.0), value)


async def _runtime(results: dict[str, float]) -> None:
    done = anyio.Event()
    counter = _Counter(done, TELLS)
    spec = ChildSpec("counter", lambda: counter, capacity=1000, overflow=OverflowPolicy.WAIT)
    async with open_actor_system(spec) as system:
        ref = system.ref_of("counter")
        start = time.perf_counter()
        for i in range(TELLS):
            await ref.tell(i)
        await done.wait()
        _best(results, "tell_per_s", TELLS / (time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(ASKS):
            await ref.ask(i)
        _best(results, "ask_per_s", ASKS / (time.perf_counter() - start))


async def _stream(results: dict[str, float]) -> None:
    send, receive = anyio.create_memory_object_stream[Any](1000)
    reply_send, reply_receive = anyio.create_memory_object_stream[Any](1)

    async def consume() -> None:
        async with receive, reply_send:
            async for message, wants_reply in receive:
                if wants_reply:
                    await reply_send.send(message)

    async with anyio.create_task_group() as tg, send, reply_receive:
        tg.start_soon(consume)
        start = time.perf_counter()
        for i in range(TELLS):
            await send.send((i, False))
        await send.send((-1, True))
        await reply_receive.receive()
        _best(results, "stream_tell_per_s", TELLS / (time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(ASKS):
            await send.send((i, True))
            await reply_receive.receive()
        _best(results, "stream_ask_per_s", ASKS / (time.perf_counter() - start))
        await send.aclose()


class _PykkaCounter(pykka.ThreadingActor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        self.count += 1
        return message


def _pykka(results: dict[str, float]) -> None:
    ref = _PykkaCounter.start()
    try:
        tells = TELLS // 4
        start = time.perf_counter()
        for i in range(tells):
            ref.tell(i)
        ref.ask(-1)  # FIFO: every tell was handled before this reply
        _best(results, "pykka_tell_per_s", tells / (time.perf_counter() - start))
        asks = ASKS // 2
        start = time.perf_counter()
        for i in range(asks):
            ref.ask(i)
        _best(results, "pykka_ask_per_s", asks / (time.perf_counter() - start))
    finally:
        ref.stop()


def _print(prefix: str, results: dict[str, float]) -> None:
    for key, value in results.items():
        print(f"{prefix}{key}={value:.0f}")


def main() -> None:
    pykka_results: dict[str, float] = {}
    for _ in range(ROUNDS):
        _pykka(pykka_results)
    _print("", pykka_results)
    for backend in ("asyncio", "trio"):
        results: dict[str, float] = {}

        async def run(results: dict[str, float] = results) -> None:
            for _ in range(ROUNDS):
                await _runtime(results)
                await _stream(results)

        runner: Callable[..., Any] = anyio.run
        runner(run, backend=backend)
        _print(f"{backend}_", results)
        tell_ratio = results["tell_per_s"] / pykka_results["pykka_tell_per_s"]
        ask_ratio = results["ask_per_s"] / pykka_results["pykka_ask_per_s"]
        print(f"{backend}_tell_vs_pykka={tell_ratio:.2f}")
        print(f"{backend}_ask_vs_pykka={ask_ratio:.2f}")


if __name__ == "__main__":
    main()
