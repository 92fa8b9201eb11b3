"""Actors shared by the runtime tests."""

from __future__ import annotations

from typing import Any

import anyio

from runtime import Actor


class Lifecycle(Actor[Any]):
    """Logs its starts and stops; crashes on "crash", exits normally on "exit"."""

    def __init__(self, log: list[tuple[str, str]], label: str) -> None:
        self.log = log
        self.label = label

    async def on_start(self) -> None:
        self.log.append(("start", self.label))

    async def on_stop(self) -> None:
        self.log.append(("stop", self.label))

    async def handle(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.label} crashed on purpose")
        if message == "exit":
            self.stop()
        return message


class Blocker(Actor[Any]):
    """Records messages; blocks inside `handle` on "block" until `release` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.messages: list[Any] = []

    async def handle(self, message: Any) -> Any:
        if message == "block":
            await self.release.wait()
        else:
            self.messages.append(message)
        return message
