"""Background tasks owned by one actor instance (asyncio only, like the I/O they do).

An actor handles one message at a time; work that waits on the network (a socket
reader, an invocation, a batch write) runs in tasks it owns instead, so the actor stays
responsive. The tasks are plain asyncio tasks rather than an anyio task group: a task
group entered in ``on_start`` would wrap the actor's mailbox loop in its cancel scope,
and a forced cancellation of the actor would then leave that scope open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["OwnedTasks"]

logger = logging.getLogger(__name__)


class OwnedTasks:
    """The tasks of one actor instance: started while it runs, cancelled when it stops.

    A task that raises records the first failure and calls ``on_failure`` (the actor
    then stops itself and re-raises it from ``on_stop``, so its supervisor sees a
    crash). If the actor's own task ends without ``aclose`` (it was cancelled), the
    remaining tasks are cancelled too.

    Args:
        on_failure: Called once, with the first exception a task raised.
    """

    def __init__(self, on_failure: Callable[[BaseException], None]) -> None:
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self._host: asyncio.Task[Any] | None = None
        self.failure: BaseException | None = None

    def open(self) -> None:
        """Tie the tasks to the current task (the actor's); call from ``on_start``."""
        self._host = asyncio.current_task()
        if self._host is not None:
            self._host.add_done_callback(self._host_done)

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` in a new task (does not wait)."""
        task = asyncio.get_running_loop().create_task(self._guard(coro), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def fail(self, error: BaseException) -> None:
        """Record ``error`` as the failure (the first one wins) and report it (does not wait)."""
        if self.failure is None:
            self.failure = error
            self._on_failure(error)

    async def aclose(self) -> None:
        """Cancel every task and wait for them to finish."""
        if self._host is not None:
            self._host.remove_done_callback(self._host_done)
            self._host = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except Exception as exc:
            self.fail(exc)

    def _host_done(self, _: asyncio.Task[Any]) -> None:
        for task in list(self._tasks):
            task.cancel()
