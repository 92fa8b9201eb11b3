"""Dynamic supervisors: keyed get-or-start, passivation, limits."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from runtime import (
    ActivationLimitError,
    Actor,
    ActorDeadError,
    ActorRef,
    ChildSpec,
    DynamicSupervisor,
    Restart,
    open_actor_system,
)
from runtime.testing import FakeClock, RecordingActor, wait_for


class SlowStart(Actor[Any]):
    async def on_start(self) -> None:
        await anyio.sleep(0.01)

    async def handle(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


class BadStart(Actor[Any]):
    async def on_start(self) -> None:
        raise LookupError("no such session")


class TestGetOrStart:
    async def test_concurrent_callers_get_the_same_actor(self) -> None:
        dyn = DynamicSupervisor()
        made: list[SlowStart] = []

        def factory() -> SlowStart:
            made.append(SlowStart())
            return made[-1]

        refs: list[ActorRef[Any]] = []

        async def get() -> None:
            refs.append(await dyn.get_or_start("k", factory))

        async with open_actor_system(ChildSpec("chats", lambda: dyn)) as system:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(get)
            assert len(made) == 1
            assert all(ref is refs[0] for ref in refs)
            assert dyn.get("k") is refs[0]
            assert system.supervisor("chats") is dyn
            assert await refs[0].ask("hi") == "hi"

    async def test_a_crashed_child_restarts_on_the_same_ref(self) -> None:
        dyn = DynamicSupervisor()
        async with open_actor_system(ChildSpec("chats", lambda: dyn)):
            ref = await dyn.get_or_start(1, SlowStart)
            with pytest.raises(ActorDeadError):
                await ref.ask("crash")
            assert await ref.ask("back") == "back"
            assert await dyn.get_or_start(1, SlowStart) is ref

    async def test_on_start_error_reaches_the_caller(self) -> None:
        dyn = DynamicSupervisor()
        async with open_actor_system(ChildSpec("chats", lambda: dyn)):
            with pytest.raises(LookupError):
                await dyn.get_or_start("x", BadStart)
            assert dyn.get("x") is None
            assert await (await dyn.get_or_start("x", SlowStart)).ask(1) == 1

    async def test_max_children(self) -> None:
        dyn = DynamicSupervisor(max_children=2)
        async with open_actor_system(ChildSpec("chats", lambda: dyn)):
            await dyn.get_or_start("a", RecordingActor)
            await dyn.get_or_start("b", RecordingActor)
            with pytest.raises(ActivationLimitError):
                await dyn.get_or_start("c", RecordingActor)
            await dyn.stop_child("a")
            assert dyn.get("a") is None
            await dyn.get_or_start("c", RecordingActor)
            assert sorted(dyn.keys()) == ["b", "c"]  # type: ignore[type-var]


class Gate(Actor[Any]):
    """Its `on_start` waits for `release` (forever if None); logs what ran."""

    def __init__(self, log: list[str], entered: anyio.Event, release: anyio.Event | None) -> None:
        self.log = log
        self.entered = entered
        self.release = release

    async def on_start(self) -> None:
        self.log.append("on_start")
        self.entered.set()
        if self.release is None:
            await anyio.sleep_forever()
        await self.release.wait()
        self.log.append("started")

    async def on_stop(self) -> None:
        self.log.append("on_stop")


class Quitter(Actor[Any]):
    async def handle(self, message: Any) -> Any:
        self.stop()
        return message


class TestStopChild:
    async def test_stopping_a_child_that_stopped_itself_is_harmless(self) -> None:
        dyn = DynamicSupervisor(restart=Restart.TEMPORARY)
        async with open_actor_system(ChildSpec("conns", lambda: dyn)):
            ref = await dyn.get_or_start("a", Quitter)
            # The actor stops itself right after replying; the supervisor has not yet
            # heard of its exit when the stop request arrives.
            assert await ref.ask("bye") == "bye"
            await anyio.lowlevel.checkpoint()
            await dyn.stop_child("a")
            assert dyn.get("a") is None
            assert not ref.is_alive

    async def test_a_stop_during_on_start_ends_the_start(self) -> None:
        log: list[str] = []
        entered, release = anyio.Event(), anyio.Event()
        dyn = DynamicSupervisor(shutdown=1.0)
        errors: list[Exception] = []

        async def start() -> None:
            try:
                await dyn.get_or_start("k", lambda: Gate(log, entered, release))
            except ActorDeadError as exc:
                errors.append(exc)

        async with open_actor_system(ChildSpec("dyn", lambda: dyn)):
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start)
                    await entered.wait()
                    tg.start_soon(dyn.stop_child, "k")
                    await anyio.wait_all_tasks_blocked()
                    release.set()
            assert log == ["on_start", "started", "on_stop"]
            assert len(errors) == 1
            assert "stopped while starting" in str(errors[0])
            assert dyn.get("k") is None
            assert dyn.keys() == []
            assert await (await dyn.get_or_start("k", RecordingActor)).ask(1) == 1

    async def test_a_start_that_hangs_is_stopped_at_the_shutdown_deadline(self) -> None:
        log: list[str] = []
        entered = anyio.Event()
        # No start limit: only the stop's own deadline ends the start.
        dyn = DynamicSupervisor(shutdown=0.05, start_timeout=None)
        errors: list[Exception] = []

        async def start() -> None:
            try:
                await dyn.get_or_start("k", lambda: Gate(log, entered, None))
            except ActorDeadError as exc:
                errors.append(exc)

        async with open_actor_system(ChildSpec("dyn", lambda: dyn)):
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start)
                    await entered.wait()
                    await dyn.stop_child("k")
            assert log == ["on_start"]  # on_start never finished: nothing to undo
            assert len(errors) == 1
            assert dyn.get("k") is None
            assert dyn.keys() == []


class TestPassivation:
    async def test_idle_child_stops_and_is_started_again(self) -> None:
        clock = FakeClock()
        dyn = DynamicSupervisor(idle_timeout=10.0)
        starts: list[RecordingActor] = []

        def factory() -> RecordingActor:
            starts.append(RecordingActor())
            return starts[-1]

        async with open_actor_system(ChildSpec("chats", lambda: dyn), clock=clock) as system:
            ref = await dyn.get_or_start("s", factory)
            await ref.tell("hello")
            await anyio.wait_all_tasks_blocked()
            clock.advance(9.0)
            await anyio.wait_all_tasks_blocked()
            assert dyn.get("s") is ref
            clock.advance(1.0)
            await wait_for(lambda: dyn.get("s") is None)
            assert not ref.is_alive
            assert system.snapshot().find("chats").children == ()  # type: ignore[union-attr]
            again = await dyn.get_or_start("s", factory)
            assert again is not ref
            assert len(starts) == 2
            assert await again.ask("ping") == "ping"

    async def test_messages_keep_the_child_alive(self) -> None:
        clock = FakeClock()
        dyn = DynamicSupervisor(idle_timeout=10.0)
        async with open_actor_system(ChildSpec("chats", lambda: dyn), clock=clock):
            ref = await dyn.get_or_start("s", RecordingActor)
            for _ in range(5):
                clock.advance(8.0)
                await anyio.wait_all_tasks_blocked()
                assert await ref.ask("still here") == "still here"
            assert dyn.get("s") is ref
            clock.advance(9.0)
            await anyio.wait_all_tasks_blocked()
            assert dyn.get("s") is ref
            clock.advance(1.0)
            await wait_for(lambda: dyn.get("s") is None)

    async def test_control_messages_do_not_keep_an_idle_child_alive(self) -> None:
        clock = FakeClock()
        dyn = DynamicSupervisor(idle_timeout=10.0)
        async with open_actor_system(ChildSpec("chats", lambda: dyn), clock=clock):
            gone = await dyn.get_or_start("gone", Quitter)
            await gone.ask("bye")
            await wait_for(lambda: not gone.is_alive)
            ref = await dyn.get_or_start("s", RecordingActor)
            # Watching a stopped actor delivers Down("noproc") on the control channel:
            # a steady stream of them must not count as activity.
            for _ in range(5):
                gone.watch(ref)
                clock.advance(1.0)
                await anyio.wait_all_tasks_blocked()
            assert dyn.get("s") is ref
            clock.advance(5.0)
            await wait_for(lambda: dyn.get("s") is None)
            assert not ref.is_alive
