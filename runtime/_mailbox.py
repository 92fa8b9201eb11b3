"""The bounded mailbox every actor reads from, with its overflow policies."""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from ._exceptions import ActorDeadError, MailboxFullError
from ._messages import Ask, Deadlines, native_event, running_loop

__all__ = ["EMPTY", "Mailbox", "MailboxStatistics", "OverflowPolicy"]

logger = logging.getLogger("runtime.deadletters")

# A sender that never has to wait still yields to the scheduler this often, so a
# tight `tell` loop under a dropping policy cannot starve the event loop.
_YIELD_EVERY = 128


class OverflowPolicy(enum.Enum):
    """What a full mailbox does with one more message."""

    WAIT = "wait"
    """`tell` waits for room (backpressure); `tell_nowait` raises `MailboxFullError`."""
    DROP_NEWEST = "drop_newest"
    """The new message becomes a dead letter; the sender is not told."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued message becomes a dead letter and the new one is queued."""
    FAIL = "fail"
    """The sender gets `MailboxFullError`."""


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A frozen view of one mailbox.

    Attributes:
        depth: Messages queued now.
        capacity: Maximum number of queued messages.
        overflow: The overflow policy.
        received: Messages accepted into the mailbox so far.
        processed: Messages taken out by the actor so far.
        dropped: Messages dropped by the overflow policy.
        rejected: Messages refused to their sender (`MailboxFullError`).
        dead_letters: Messages never delivered (dropped, sent while stopped,
            or still queued when the actor stopped).
        high_water: Largest depth seen.
        waiting_senders: Senders blocked on a full mailbox.
        soft_limit: Depth above which the actor reports itself degraded.
        dead_letter_reasons: Dead letters counted by reason, as (reason, count) pairs.
    """

    depth: int
    capacity: int
    overflow: OverflowPolicy
    received: int
    processed: int
    dropped: int
    rejected: int
    dead_letters: int
    high_water: int
    waiting_senders: int
    soft_limit: int
    dead_letter_reasons: tuple[tuple[str, int], ...] = ()

    @property
    def over_soft_limit(self) -> bool:
        return self.depth >= self.soft_limit


class _Empty:
    __slots__ = ()


EMPTY: Any = _Empty()

DeadLetterHook = Callable[[str, Any, str], None]


class Mailbox:
    """A bounded FIFO of user messages plus a small control channel served first.

    The mailbox outlives the actor instances reading it: a supervised actor keeps
    its mailbox across restarts.
    """

    __slots__ = (
        "_capacity",
        "_closed",
        "_control",
        "_getter",
        "_items",
        "_loop",
        "_putters",
        "_sends",
        "capacity",
        "dead_letter_reasons",
        "dead_letters",
        "deadlines",
        "dropped",
        "high_water",
        "name",
        "on_dead_letter",
        "overflow",
        "processed",
        "received",
        "rejected",
        "send_timeout",
        "soft_limit",
    )

    def __init__(
        self,
        capacity: int,
        overflow: OverflowPolicy = OverflowPolicy.WAIT,
        *,
        name: str = "",
        send_timeout: float | None = None,
        soft_limit: int | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        self.capacity = self._capacity = capacity
        self.overflow = overflow
        self.send_timeout = send_timeout
        self.soft_limit = soft_limit if soft_limit is not None else max(1, capacity * 8 // 10)
        self.on_dead_letter = on_dead_letter
        self._items: deque[Any] = deque()
        self._control: deque[Any] = deque()
        # The reading actor parks on a bare future under asyncio (cheap), else an anyio Event.
        self._loop = running_loop()
        self.deadlines = Deadlines(self._loop) if self._loop is not None else None
        self._getter: Any = None
        self._putters: deque[anyio.Event] = deque()
        self._closed = False
        self._sends = 0
        self.received = self.processed = self.dropped = self.rejected = 0
        self.dead_letters = self.high_water = 0
        self.dead_letter_reasons: dict[str, int] = {}

    # -- senders -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, item: Any) -> bool:
        """Queue `item` without waiting, applying the overflow policy.

        Returns:
            False only under the WAIT policy when the mailbox is full.

        Raises:
            ActorDeadError: The mailbox is closed (the message is a dead letter).
            MailboxFullError: FAIL policy and the mailbox is full.
        """
        if self._closed:
            self._drop(item, "stopped")
            raise ActorDeadError(f"actor {self.name!r} is not running")
        items = self._items
        depth = len(items)
        if depth < self._capacity:
            items.append(item)
            self.received += 1
            if depth >= self.high_water:
                self.high_water = depth + 1
            if self._getter is not None:
                self._wake_getter()
            return True
        policy = self.overflow
        if policy is OverflowPolicy.WAIT:
            return False
        if policy is OverflowPolicy.FAIL:
            self.rejected += 1
            raise MailboxFullError(f"mailbox of {self.name!r} is full ({self._capacity})")
        self.dropped += 1
        if policy is OverflowPolicy.DROP_NEWEST:
            self._drop(item, "dropped (newest)")
            return True
        self._drop(items.popleft(), "dropped (oldest)")
        items.append(item)
        self.received += 1
        return True

    # The WAIT policy's optional timeout is per mailbox, so it is a parameter here.
    async def put(self, item: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Queue `item`, waiting for room under the WAIT policy.

        Raises:
            ActorDeadError: The mailbox is (or becomes) closed.
            MailboxFullError: FAIL policy and full, or no room before `timeout`
                (default: the mailbox's `send_timeout`).
        """
        self._sends += 1
        if self._sends % _YIELD_EVERY == 0:
            await anyio.lowlevel.checkpoint()
        if self.offer(item):
            return
        if timeout is None:
            timeout = self.send_timeout
        with anyio.move_on_after(timeout):
            while True:
                event = anyio.Event()
                self._putters.append(event)
                woken = False
                try:
                    await event.wait()
                    woken = True
                finally:
                    if not woken:  # cancelled or timed out: give up the place in line
                        self._cancel_putter(event)
                if self.offer(item):
                    return
        self.rejected += 1
        raise MailboxFullError(f"mailbox of {self.name!r} stayed full for {timeout} s")

    def _cancel_putter(self, event: anyio.Event) -> None:
        if event.is_set():
            # We were woken but will not use the room: pass it on.
            self._wake_putter()
        else:
            with contextlib.suppress(ValueError):
                self._putters.remove(event)

    def _wake_putter(self) -> None:
        if self._putters:
            self._putters.popleft().set()

    def put_control(self, item: Any) -> bool:
        """Queue a control item ahead of all user messages; False if closed."""
        if self._closed:
            return False
        self._control.append(item)
        if self._getter is not None:
            self._wake_getter()
        return True

    # -- the reading actor -------------------------------------------------

    def get_nowait(self) -> Any:
        """Take the next control item, else the next message, else return `EMPTY`."""
        if self._control:
            return self._control.popleft()
        items = self._items
        if items:
            item = items.popleft()
            self.processed += 1
            if self._putters:
                self._putters.popleft().set()
            return item
        return EMPTY

    async def wait_readable(self) -> None:
        """Wait until there is something to get (or the mailbox is closed)."""
        if self._control or self._items or self._closed:
            await anyio.lowlevel.checkpoint()
            return
        loop = self._loop
        waiter: Any
        waiter = self._getter = loop.create_future() if loop is not None else native_event()
        try:
            if loop is None:
                await waiter.wait()
            else:
                await waiter
        finally:
            if self._getter is waiter:
                self._getter = None

    def _wake_getter(self) -> None:
        getter = self._getter
        self._getter = None
        if self._loop is None:
            getter.set()
        elif not getter.done():
            getter.set_result(None)

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Refuse further messages; queued ones become dead letters, queued asks fail."""
        self._closed = True
        self._control.clear()
        while self._items:
            self._drop(self._items.popleft(), "stopped")
        while self._putters:
            self._putters.popleft().set()
        if self._getter is not None:
            self._wake_getter()

    def prepend(self, items: deque[Any]) -> None:
        """Queue `items` ahead of the messages already queued (may exceed capacity)."""
        if self._closed:
            for item in items:
                self._drop(item, "stopped")
            return
        self._items.extendleft(reversed(items))
        self.processed -= len(items)
        if self._getter is not None:
            self._wake_getter()

    def is_empty(self) -> bool:
        """Whether no message and no control item is queued."""
        return not self._items and not self._control

    def refuse_all(self) -> None:
        """Turn every further message into a dead letter (for refs that take none)."""
        self._capacity = 0
        self.overflow = OverflowPolicy.DROP_NEWEST

    def reopen(self) -> None:
        """Accept messages again (the actor behind this mailbox is starting anew)."""
        self._closed = False

    def _drop(self, item: Any, reason: str) -> None:
        if type(item) is Ask:
            error: Exception = (
                ActorDeadError(f"actor {self.name!r} stopped before replying")
                if reason == "stopped"
                else MailboxFullError(f"mailbox of {self.name!r} is full: {reason}")
            )
            item.set_error(error)
            item = item.message
        self.dead_letter(item, reason)

    def dead_letter(self, message: Any, reason: str) -> None:
        """Count `message` as never delivered and log it at debug level."""
        self.dead_letters += 1
        self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + 1
        logger.debug("dead letter to %s (%s): %r", self.name, reason, message)
        if self.on_dead_letter is not None:
            self.on_dead_letter(self.name, message, reason)

    def statistics(self) -> MailboxStatistics:
        """Return a frozen snapshot of the counters (does not wait)."""
        return MailboxStatistics(
            depth=len(self._items),
            capacity=self._capacity,
            overflow=self.overflow,
            received=self.received,
            processed=self.processed,
            dropped=self.dropped,
            rejected=self.rejected,
            dead_letters=self.dead_letters,
            high_water=self.high_water,
            waiting_senders=len(self._putters),
            soft_limit=self.soft_limit,
            dead_letter_reasons=tuple(sorted(self.dead_letter_reasons.items())),
        )
