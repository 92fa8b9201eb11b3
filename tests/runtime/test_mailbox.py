"""Bounded mailboxes: the overflow policies, statistics and dead letters."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import (
    ActorRef,
    ActorSystem,
    ChildSpec,
    MailboxFullError,
    OverflowPolicy,
    Restart,
    open_actor_system,
)
from runtime.testing import wait_for

from .conftest import Blocker


async def blocked(system: ActorSystem, name: str) -> ActorRef[Any]:
    """Return the ref of `name` with its actor stuck in `handle`, mailbox empty."""
    ref = system.ref_of(name)
    await ref.tell("block")
    await anyio.wait_all_tasks_blocked()
    assert ref.statistics().depth == 0
    return ref


def spec(blocker: Blocker, overflow: OverflowPolicy, **kwargs: Any) -> ChildSpec:
    return ChildSpec("b", lambda: blocker, capacity=2, overflow=overflow, **kwargs)


class TestOverflow:
    async def test_wait_applies_backpressure(self) -> None:
        blocker = Blocker()
        async with open_actor_system(spec(blocker, OverflowPolicy.WAIT)) as system:
            ref = await blocked(system, "b")
            await ref.tell(1)
            await ref.tell(2)
            with pytest.raises(MailboxFullError):
                ref.tell_nowait(3)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ref.tell, 3)
                await anyio.wait_all_tasks_blocked()
                assert ref.statistics().waiting_senders == 1
                blocker.release.set()
            await wait_for(lambda: len(blocker.messages) == 3)
            assert blocker.messages == [1, 2, 3]
            stats = ref.statistics()
            assert (stats.dropped, stats.rejected, stats.dead_letters) == (0, 1, 0)
            assert stats.high_water == 2

    async def test_wait_with_a_send_timeout_fails(self) -> None:
        blocker = Blocker()
        async with open_actor_system(
            spec(blocker, OverflowPolicy.WAIT, send_timeout=0.01)
        ) as system:
            ref = await blocked(system, "b")
            await ref.tell(1)
            await ref.tell(2)
            with pytest.raises(MailboxFullError):
                await ref.tell(3)
            assert ref.statistics().rejected == 1
            assert ref.statistics().waiting_senders == 0
            blocker.release.set()

    async def test_drop_newest(self) -> None:
        blocker = Blocker()
        async with open_actor_system(spec(blocker, OverflowPolicy.DROP_NEWEST)) as system:
            ref = await blocked(system, "b")
            for i in range(1, 5):
                await ref.tell(i)
            with pytest.raises(MailboxFullError):
                await ref.ask("dropped ask")
            stats = ref.statistics()
            assert (stats.depth, stats.dropped, stats.dead_letters) == (2, 3, 3)
            blocker.release.set()
            await wait_for(lambda: len(blocker.messages) == 2)
            assert blocker.messages == [1, 2]
            assert [d.reason for d in system.recent_dead_letters()] == ["dropped (newest)"] * 3
            assert stats.dead_letter_reasons == (("dropped (newest)", 3),)

    async def test_drop_oldest(self) -> None:
        blocker = Blocker()
        async with open_actor_system(spec(blocker, OverflowPolicy.DROP_OLDEST)) as system:
            ref = await blocked(system, "b")
            for i in range(1, 5):
                ref.tell_nowait(i)
            stats = ref.statistics()
            assert (stats.depth, stats.dropped, stats.dead_letters) == (2, 2, 2)
            blocker.release.set()
            await wait_for(lambda: len(blocker.messages) == 2)
            assert blocker.messages == [3, 4]

    async def test_fail(self) -> None:
        blocker = Blocker()
        async with open_actor_system(spec(blocker, OverflowPolicy.FAIL)) as system:
            ref = await blocked(system, "b")
            await ref.tell(1)
            ref.tell_nowait(2)
            with pytest.raises(MailboxFullError):
                await ref.tell(3)
            with pytest.raises(MailboxFullError):
                ref.tell_nowait(4)
            stats = ref.statistics()
            assert (stats.rejected, stats.dropped, stats.dead_letters) == (2, 0, 0)
            assert stats.over_soft_limit
            blocker.release.set()

    async def test_messages_to_a_stopped_actor_are_dead_letters(self) -> None:
        blocker = Blocker()
        async with open_actor_system(
            ChildSpec("b", lambda: blocker, restart=Restart.TEMPORARY)
        ) as system:
            ref = system.ref_of("b")
            await system.stop("b")
            await ref.tell("late")
            ref.tell_nowait("later")
            assert ref.statistics().dead_letters == 2
            assert [d.message for d in system.recent_dead_letters()] == ["'late'", "'later'"]

    async def test_control_messages_overtake_a_full_mailbox(self) -> None:
        blocker = Blocker()
        async with open_actor_system(
            ChildSpec("b", lambda: blocker, capacity=2, shutdown=1.0)
        ) as system:
            ref = await blocked(system, "b")
            await ref.tell(1)
            await ref.tell(2)
            with anyio.fail_after(2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(system.stop, "b")
                    await anyio.wait_all_tasks_blocked()
                    blocker.release.set()
            # The stop was served before the two queued messages.
            assert blocker.messages == []
            assert ref.statistics().dead_letters == 2

    async def test_a_cancelled_waiting_sender_gives_up_its_place(self) -> None:
        blocker = Blocker()
        async with open_actor_system(spec(blocker, OverflowPolicy.WAIT)) as system:
            ref = await blocked(system, "b")
            await ref.tell(1)
            await ref.tell(2)
            scope = anyio.CancelScope()

            async def cancellable() -> None:
                with scope:
                    await ref.tell("cancelled")

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancellable)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(ref.tell, 3)
                await anyio.wait_all_tasks_blocked()
                assert ref.statistics().waiting_senders == 2
                scope.cancel()
                await anyio.wait_all_tasks_blocked()
                assert ref.statistics().waiting_senders == 1
                blocker.release.set()
            await wait_for(lambda: len(blocker.messages) == 3)
            assert blocker.messages == [1, 2, 3]
            assert ref.statistics().waiting_senders == 0
