"""Monitors: a watcher gets `Down` when the watched actor restarts or stops."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import (
    Actor,
    ActorDeadError,
    ActorRef,
    ChildSpec,
    Down,
    Restart,
    open_actor_system,
)
from runtime.testing import RecordingActor


class Watcher(Actor[Any]):
    """Watches the ref it is given in `on_start` (as a chat actor watches its session)."""

    def __init__(self, target: ActorRef[Any]) -> None:
        self.target = target
        self.downs: list[Down] = []

    async def on_start(self) -> None:
        self.watch(self.target)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Down):
            self.downs.append(message)
        return len(self.downs)


class TestMonitors:
    async def test_down_on_restart_then_on_stop(self) -> None:
        recorder = RecordingActor()
        target = ChildSpec(
            "session", lambda: RecordingActor(fail_on="crash"), restart=Restart.TRANSIENT
        )
        async with open_actor_system(target, ChildSpec("watcher", lambda: recorder)) as system:
            session = system.ref_of("session")
            session.watch(system.ref_of("watcher"))
            with pytest.raises(ActorDeadError):
                await session.ask("crash")
            first = (await recorder.wait_for_messages(1))[0]
            assert first == Down(session, "restarting", first.error)
            assert isinstance(first.error, RuntimeError)
            await system.stop("session")
            second = (await recorder.wait_for_messages(2))[1]
            assert second == Down(session, "stopped")

    async def test_actor_watch_and_noproc(self) -> None:
        async with open_actor_system(
            ChildSpec("target", RecordingActor, restart=Restart.TEMPORARY)
        ) as system:
            target = system.ref_of("target")
            watcher_ref = await system.start(ChildSpec("watcher", lambda: Watcher(target)))
            await system.stop("target")
            assert await watcher_ref.ask("count") == 1
            late = await system.start(ChildSpec("late", lambda: Watcher(target)))
            assert await late.ask("count") == 1  # Down(target, "noproc")

    async def test_unwatch(self) -> None:
        recorder = RecordingActor()
        async with open_actor_system(
            ChildSpec("target", RecordingActor, restart=Restart.TEMPORARY),
            ChildSpec("watcher", lambda: recorder),
        ) as system:
            target, watcher = system.ref_of("target"), system.ref_of("watcher")
            target.watch(watcher)
            target.unwatch(watcher)
            await system.stop("target")
            assert await watcher.ask("only this") == "only this"
            assert recorder.messages == ["only this"]
