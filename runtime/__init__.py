"""A supervised actor runtime on anyio: actors, mailboxes, OTP supervisors, registry.

Runs on asyncio and trio::

    class Greeter(Actor[str]):
        async def handle(self, message: str) -> str:
            return f"hello {message}"

    async with open_actor_system(ChildSpec("greeter", Greeter)) as system:
        ref = system.ref_of("greeter")
        await ref.tell("fire and forget")
        assert await ref.ask("you", timeout=2.0) == "hello you"

Names and refs:
    Every supervised child is in ``system.registry`` under its dotted path from
    the root: child ``session`` of root child ``router`` is ``"router.session"``.
    Reach it with ``system.ref_of("router.session")``,
    ``system.ref_of("router").child("session")`` or, holding the supervisor
    instance, ``supervisor.child("session")``. ``system.supervisor("chats")``
    returns a running `Supervisor` / `DynamicSupervisor` instance. Children of a
    `DynamicSupervisor` are not registered: use its ``get`` / ``get_or_start``.

Stable refs:
    A supervised child's ref stays valid across its restarts: messages sent
    meanwhile wait in its mailbox, which survives the restart (only the message
    being handled at the crash is lost, and its ask fails with `ActorDeadError`).
    If the child's supervisor itself restarts, the child's mailbox is closed
    while it is down (messages become dead letters, asks fail) and the same ref
    works again once the child is back. A dynamic child's ref dies with the
    child (stopped or passivated); ``get_or_start`` then makes a new one.

Monitors:
    ``target.watch(watcher_ref)`` (or ``self.watch(target)`` inside an actor)
    delivers `Down` (``ref``, ``reason``: "restarting", "stopped", "failed" or
    "noproc", ``error``) to the watcher's `handle`, ahead of its queued
    messages. The watch survives restarts on either side until ``unwatch``.

Failures:
    An exception in `Actor.on_start` reaches whoever started the actor
    (`open_actor_system`, ``system.start``, ``get_or_start``). An exception in
    `Actor.handle` crashes the actor: its supervisor logs the traceback and
    restarts it by its `Restart` type, `Strategy` and `RestartIntensity`, or, per
    the child's ``decider``, stops it or escalates. Past its intensity a
    supervisor stops its children and fails to its parent with
    `RestartIntensityError`. At the root the system stays up with
    ``system.failed`` set (not ready), and ``await system.wait_failed()``
    returns: nothing recovers by itself past that point, so do what OTP does
    when the node stops, and stop (exit non-zero) for the process manager to
    start afresh.

Starts and stops:
    An actor's `on_start` is bounded by its spec's ``start_timeout`` (30 s by
    default): a hung start fails with `TimeoutError`, as if `on_start` had
    raised it. A failed restart counts against the intensity, and under
    ``rest_for_one`` / ``one_for_all`` the children after it are not started
    until it is up. A stop requested while a child starts ends the start (its
    `on_start` finishes, then `on_stop` runs; a supervisor starts no further
    child and stops those it started; the starter gets `ActorDeadError`), and
    a supervisor asked to stop gives up a restart in progress. If `on_stop`
    fails after a crash, the crash is what the supervisor sees; the `on_stop`
    error is logged and noted on it.
"""

from __future__ import annotations

from ._actor import Actor as Actor
from ._actor import ActorRef as ActorRef
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._dynamic import DynamicSupervisor as DynamicSupervisor
from ._exceptions import ActivationLimitError as ActivationLimitError
from ._exceptions import ActorDeadError as ActorDeadError
from ._exceptions import ActorError as ActorError
from ._exceptions import MailboxFullError as MailboxFullError
from ._exceptions import NameTakenError as NameTakenError
from ._exceptions import RestartIntensityError as RestartIntensityError
from ._introspection import ActorInfo as ActorInfo
from ._introspection import FailureInfo as FailureInfo
from ._introspection import SupervisorInfo as SupervisorInfo
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._mailbox import OverflowPolicy as OverflowPolicy
from ._messages import Down as Down
from ._registry import Registry as Registry
from ._spec import Backoff as Backoff
from ._spec import ChildSpec as ChildSpec
from ._spec import Directive as Directive
from ._spec import Restart as Restart
from ._spec import RestartIntensity as RestartIntensity
from ._spec import Strategy as Strategy
from ._state import ActorState as ActorState
from ._supervisor import Supervisor as Supervisor
from ._system import ActorSystem as ActorSystem
from ._system import DeadLetter as DeadLetter
from ._system import open_actor_system as open_actor_system

__all__ = [
    "ActivationLimitError",
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorInfo",
    "ActorRef",
    "ActorState",
    "ActorSystem",
    "Backoff",
    "ChildSpec",
    "Clock",
    "DeadLetter",
    "Directive",
    "Down",
    "DynamicSupervisor",
    "FailureInfo",
    "MailboxFullError",
    "MailboxStatistics",
    "NameTakenError",
    "OverflowPolicy",
    "Registry",
    "Restart",
    "RestartIntensity",
    "RestartIntensityError",
    "Strategy",
    "Supervisor",
    "SupervisorInfo",
    "SystemClock",
    "open_actor_system",
]
