"""The stash: messages set aside while an actor is not ready."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import (
    Actor,
    ActorDeadError,
    ChildSpec,
    MailboxFullError,
    Restart,
    open_actor_system,
)
from runtime.testing import wait_for


class Session(Actor[Any]):
    """Serves requests only once "connected"; crashes on "crash"."""

    def __init__(self, connected: bool = False) -> None:
        self.connected = connected
        self.served: list[Any] = []

    async def handle(self, message: Any) -> Any:
        if message == "connected":
            self.connected = True
            self.unstash_all()
            return None
        if message == "crash":
            raise RuntimeError("connection lost")
        if not self.connected:
            self.stash()
            return None
        self.served.append(message)
        return f"served {message}"


class TestStash:
    async def test_stashed_asks_are_answered_after_unstash(self) -> None:
        session = Session()
        async with open_actor_system(ChildSpec("s", lambda: session)) as system:
            ref = system.ref_of("s")
            replies: list[Any] = []

            async def ask(message: str) -> None:
                replies.append(await ref.ask(message))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "a")
                await anyio.wait_all_tasks_blocked()
                await ref.tell("b")
                tg.start_soon(ask, "c")
                await anyio.wait_all_tasks_blocked()
                assert replies == []
                await ref.tell("connected")
            assert session.served == ["a", "b", "c"]
            assert sorted(replies) == ["served a", "served c"]

    async def test_a_full_stash_fails_loudly(self) -> None:
        async with open_actor_system(
            ChildSpec("s", Session, stash_capacity=1, restart=Restart.TEMPORARY)
        ) as system:
            ref = system.ref_of("s")
            await ref.tell("first")
            with pytest.raises(ActorDeadError) as info:
                await ref.ask("second")
            assert isinstance(info.value.__cause__, MailboxFullError)

    async def test_stashed_messages_survive_a_restart(self) -> None:
        made: list[Session] = []

        def make() -> Session:
            made.append(Session(connected=len(made) > 0))
            return made[-1]

        async with open_actor_system(ChildSpec("s", make)) as system:
            ref = system.ref_of("s")
            await ref.tell("kept")
            with pytest.raises(ActorDeadError):
                await ref.ask("crash")
            await wait_for(lambda: len(made) == 2 and made[1].served == ["kept"])
