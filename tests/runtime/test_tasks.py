"""Tasks an actor owns: they run while it runs, and a failing one crashes it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import Actor, ActorState, ChildSpec, Restart, open_actor_system
from runtime.testing import wait_for_state


class Ticker(Actor[str]):
    """Counts ticks from its own task; `fail` makes the task raise."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.ticks = 0
        self.fail = anyio.Event()
        self.stopped = anyio.Event()

    async def on_start(self) -> None:
        self.log.append("start")
        self.start_soon(self._tick)

    async def _tick(self) -> None:
        try:
            while True:
                self.ticks += 1
                with anyio.move_on_after(0.001):
                    await self.fail.wait()
                if self.fail.is_set():
                    raise OSError("socket closed")
        finally:
            self.stopped.set()

    async def handle(self, message: str) -> Any:
        if message == "ticks":
            return self.ticks
        if message == "fail":
            self.fail.set()
        return None

    async def on_stop(self) -> None:
        self.log.append("stop")


class TestOwnedTasks:
    async def test_task_runs_while_the_actor_runs_and_stops_with_it(self) -> None:
        log: list[str] = []
        actors: list[Ticker] = []

        def make() -> Ticker:
            actors.append(Ticker(log))
            return actors[-1]

        async with open_actor_system() as system:
            ref = await system.start(ChildSpec("ticker", make, restart=Restart.TEMPORARY))
            with anyio.fail_after(5):
                while await ref.ask("ticks") < 3:  # noqa: ASYNC110 - polling another actor
                    await anyio.sleep(0.001)
            await system.stop("ticker")
            assert actors[0].stopped.is_set()
        assert log == ["start", "stop"]

    async def test_failing_task_crashes_the_actor_and_it_restarts(self) -> None:
        log: list[str] = []
        actors: list[Ticker] = []

        def make() -> Ticker:
            actors.append(Ticker(log))
            return actors[-1]

        async with open_actor_system() as system:
            ref = await system.start(ChildSpec("ticker", make))
            await ref.tell("fail")
            with anyio.fail_after(5):
                while len(actors) < 2 or system.snapshot().children[0].restarts < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            await wait_for_state(system, "ticker", ActorState.RUNNING)
            info = system.snapshot().children[0]
            assert info.last_failure is not None
            assert info.last_failure.type.endswith("OSError")
            assert actors[0].stopped.is_set()
            # The new instance's task may not have run yet when the first ask lands.
            with anyio.fail_after(5):
                while await ref.ask("ticks") < 1:  # noqa: ASYNC110 - polling another actor
                    await anyio.sleep(0.001)
        assert log[:3] == ["start", "stop", "start"]

    async def test_start_soon_outside_the_running_actor_is_refused(self) -> None:
        with pytest.raises(RuntimeError, match="not running"):
            Ticker([]).start_soon(anyio.sleep, 0)
