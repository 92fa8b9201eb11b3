"""Actors and refs: tell, ask, timeouts, dead actors, start failures."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import (
    Actor,
    ActorDeadError,
    ActorState,
    ChildSpec,
    Restart,
    open_actor_system,
)
from runtime.testing import RecordingActor, wait_for, wait_for_state


class Doubler(Actor[int]):
    async def handle(self, message: int) -> int:
        if message < 0:
            raise ValueError(f"negative: {message}")
        return message * 2


class Slow(Actor[Any]):
    def __init__(self) -> None:
        self.release = anyio.Event()

    async def handle(self, message: Any) -> Any:
        if message == "slow":
            await self.release.wait()
        return message


class FailsToStart(Actor[Any]):
    async def on_start(self) -> None:
        raise LookupError("cannot start")


class TestTellAndAsk:
    async def test_ask_returns_the_handlers_value(self) -> None:
        async with open_actor_system(ChildSpec("doubler", Doubler)) as system:
            assert await system.ref_of("doubler").ask(21) == 42

    async def test_tell_is_delivered_in_order(self) -> None:
        recorder = RecordingActor()
        async with open_actor_system(ChildSpec("rec", lambda: recorder)) as system:
            ref = system.ref_of("rec")
            for i in range(5):
                await ref.tell(i)
            ref.tell_nowait(5)
            assert await recorder.wait_for_messages(6) == [0, 1, 2, 3, 4, 5]

    async def test_crash_fails_the_ask_chained_to_the_cause(self) -> None:
        async with open_actor_system(ChildSpec("doubler", Doubler)) as system:
            ref = system.ref_of("doubler")
            with pytest.raises(ActorDeadError) as info:
                await ref.ask(-1)
            assert isinstance(info.value.__cause__, ValueError)
            # The ref is stable: the restarted actor answers on the same ref.
            assert await ref.ask(1) == 2

    async def test_ask_timeout_discards_the_late_reply(self) -> None:
        slow = Slow()
        async with open_actor_system(ChildSpec("slow", lambda: slow)) as system:
            ref = system.ref_of("slow")
            with pytest.raises(TimeoutError):
                await ref.ask("slow", timeout=0.01)
            slow.release.set()
            assert await ref.ask("next") == "next"

    async def test_ask_to_a_stopped_actor_fails_at_once(self) -> None:
        async with open_actor_system(
            ChildSpec("doubler", Doubler, restart=Restart.TEMPORARY)
        ) as system:
            ref = system.ref_of("doubler")
            await system.stop("doubler")
            assert not ref.is_alive
            with anyio.fail_after(1):
                with pytest.raises(ActorDeadError):
                    await ref.ask(1)
            await ref.tell(1)  # a dead letter, not an error
            assert ref.statistics().dead_letters == 1

    async def test_pending_asks_fail_when_the_actor_stops(self) -> None:
        slow = Slow()
        async with open_actor_system(ChildSpec("slow", lambda: slow, shutdown=0.05)) as system:
            ref = system.ref_of("slow")
            errors: list[BaseException] = []

            async def ask(message: str) -> None:
                try:
                    await ref.ask(message)
                except ActorDeadError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "slow")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(ask, "queued")
                await anyio.wait_all_tasks_blocked()
                await system.stop("slow")
            assert len(errors) == 2


class TestStart:
    async def test_on_start_error_reaches_the_system_opener(self) -> None:
        with pytest.raises(LookupError):
            async with open_actor_system(ChildSpec("bad", FailsToStart)):
                pytest.fail("the body must not run")

    async def test_on_start_error_reaches_system_start(self) -> None:
        async with open_actor_system() as system:
            with pytest.raises(LookupError):
                await system.start(ChildSpec("bad", FailsToStart))
            assert system.snapshot().find("bad") is None
            ref = await system.start(ChildSpec("good", Doubler))
            info = await wait_for_state(ref, None, ActorState.RUNNING)
            assert info.state is ActorState.RUNNING


class TestAskDeadlines:
    async def test_shorter_deadline_after_a_longer_one(self) -> None:
        slow = Slow()
        async with open_actor_system(ChildSpec("slow", lambda: slow)) as system:
            ref = system.ref_of("slow")
            outcomes: list[str] = []

            async def ask(seconds: float) -> None:
                try:
                    await ref.ask("slow", timeout=seconds)
                except TimeoutError:
                    outcomes.append(f"timeout {seconds}")
                else:
                    outcomes.append(f"reply {seconds}")

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, 5.0)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(ask, 0.01)
                await wait_for(lambda: bool(outcomes), timeout=2)
                slow.release.set()
            assert outcomes == ["timeout 0.01", "reply 5.0"]

    async def test_many_asks_expire_in_order(self) -> None:
        slow = Slow()
        async with open_actor_system(ChildSpec("slow", lambda: slow)) as system:
            ref = system.ref_of("slow")
            timeouts = 0

            async def ask() -> None:
                nonlocal timeouts
                with pytest.raises(TimeoutError):
                    await ref.ask("slow", timeout=0.02)
                timeouts += 1

            with anyio.fail_after(2):
                async with anyio.create_task_group() as tg:
                    for _ in range(5):
                        tg.start_soon(ask)
            assert timeouts == 5
            slow.release.set()
            assert await ref.ask("after") == "after"

    async def test_ask_waits_for_room_within_its_deadline(self) -> None:
        slow = Slow()
        async with open_actor_system(ChildSpec("slow", lambda: slow, capacity=1)) as system:
            ref = system.ref_of("slow")
            await ref.tell("slow")
            await anyio.wait_all_tasks_blocked()
            await ref.tell("fills the mailbox")
            with pytest.raises(TimeoutError):
                await ref.ask("no room", timeout=0.02)
            async with anyio.create_task_group() as tg:
                replies: list[Any] = []

                async def ask() -> None:
                    replies.append(await ref.ask("waits for room", timeout=2))

                tg.start_soon(ask)
                await anyio.wait_all_tasks_blocked()
                slow.release.set()
            assert replies == ["waits for room"]
