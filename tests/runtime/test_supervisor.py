"""Supervisors: strategies, restart types, intensity, backoff, shutdown order."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import (
    Actor,
    ActorDeadError,
    ActorState,
    Backoff,
    ChildSpec,
    Directive,
    Restart,
    RestartIntensity,
    Strategy,
    Supervisor,
    SupervisorInfo,
    open_actor_system,
)
from runtime.testing import FakeClock, wait_for, wait_for_state

from .conftest import Lifecycle

Log = list[tuple[str, str]]


def specs(log: Log, *labels: str, restart: Restart = Restart.PERMANENT) -> list[ChildSpec]:
    return [
        ChildSpec(label, lambda label=label: Lifecycle(log, label), restart=restart)  # type: ignore[misc]
        for label in labels
    ]


async def crash(ref: Any) -> None:
    with pytest.raises(ActorDeadError):
        await ref.ask("crash")


class TestStrategies:
    async def test_one_for_one_restarts_only_the_crashed_child(self) -> None:
        log: Log = []
        async with open_actor_system(
            *specs(log, "a", "b", "c"), intensity=RestartIntensity(5)
        ) as system:
            assert log == [("start", "a"), ("start", "b"), ("start", "c")]
            log.clear()
            await crash(system.ref_of("b"))
            assert await system.ref_of("b").ask("ping") == "ping"
            assert log == [("stop", "b"), ("start", "b")]
            assert system.snapshot().find("b").restarts == 1  # type: ignore[union-attr]

    async def test_one_for_all_restarts_every_child_in_order(self) -> None:
        log: Log = []
        sup = ChildSpec(
            "sup",
            lambda: Supervisor(specs(log, "a", "b", "c"), strategy=Strategy.ONE_FOR_ALL),
        )
        async with open_actor_system(sup) as system:
            log.clear()
            await crash(system.ref_of("sup.b"))
            await wait_for(lambda: len(log) == 6)
            assert log == [
                ("stop", "b"),
                ("stop", "c"),
                ("stop", "a"),
                ("start", "a"),
                ("start", "b"),
                ("start", "c"),
            ]

    async def test_rest_for_one_restarts_the_child_and_later_ones(self) -> None:
        log: Log = []
        sup = ChildSpec(
            "sup",
            lambda: Supervisor(specs(log, "a", "b", "c"), strategy=Strategy.REST_FOR_ONE),
        )
        async with open_actor_system(sup) as system:
            log.clear()
            await crash(system.ref_of("sup.b"))
            await wait_for(lambda: len(log) == 4)
            assert log == [("stop", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]


class TestRestartTypes:
    async def test_permanent_restarts_after_a_normal_exit(self) -> None:
        log: Log = []
        async with open_actor_system(*specs(log, "p")) as system:
            ref = system.ref_of("p")
            await ref.tell("exit")
            assert await ref.ask("ping") == "ping"
            assert log == [("start", "p"), ("stop", "p"), ("start", "p")]

    async def test_transient_stays_down_after_a_normal_exit(self) -> None:
        log: Log = []
        async with open_actor_system(*specs(log, "t", restart=Restart.TRANSIENT)) as system:
            ref = system.ref_of("t")
            await crash(ref)
            assert await ref.ask("ping") == "ping"  # restarted after the crash
            await ref.tell("exit")
            await wait_for_state(system, "t", ActorState.STOPPED)
            assert not ref.is_alive

    async def test_temporary_is_never_restarted(self) -> None:
        log: Log = []
        async with open_actor_system(*specs(log, "tmp", restart=Restart.TEMPORARY)) as system:
            ref = system.ref_of("tmp")
            await crash(ref)
            await wait_for(lambda: not ref.is_alive)
            with pytest.raises(ActorDeadError):
                await ref.ask("ping")
            assert system.snapshot().find("tmp") is None  # removed, as OTP does


class TestIntensity:
    async def test_exceeding_it_escalates_to_the_parent(self) -> None:
        log: Log = []
        inner = ChildSpec(
            "inner",
            lambda: Supervisor(specs(log, "w"), intensity=RestartIntensity(1, 60.0)),
        )
        clock = FakeClock()
        async with open_actor_system(
            inner, intensity=RestartIntensity(5, 60.0), clock=clock
        ) as system:
            worker = system.ref_of("inner.w")
            await crash(worker)
            await crash(worker)  # second restart in the window: inner gives up
            await wait_for(
                lambda: system.snapshot().find("inner").restarts == 1  # type: ignore[union-attr]
            )
            await wait_for_state(system, "inner.w", ActorState.RUNNING)
            info = system.snapshot().find("inner")
            assert isinstance(info, SupervisorInfo)
            assert info.last_failure is not None
            assert info.last_failure.type.endswith("RestartIntensityError")
            # The worker's ref survives its parent's restart.
            assert await worker.ask("ping") == "ping"
            assert not system.failed

    async def test_root_exhaustion_marks_the_system_failed_but_keeps_it_up(self) -> None:
        log: Log = []
        async with open_actor_system(
            *specs(log, "a", "b"), intensity=RestartIntensity(0, 5.0), clock=FakeClock()
        ) as system:
            assert system.ready
            await crash(system.ref_of("a"))
            await wait_for(lambda: system.failed)
            assert not system.ready
            assert system.degraded
            snapshot = system.snapshot()
            assert snapshot.over_intensity
            failed = snapshot.find("a")
            assert failed is not None
            assert failed.state is ActorState.FAILED
            assert await system.ref_of("b").ask("still up") == "still up"

    async def test_old_restarts_leave_the_window(self) -> None:
        log: Log = []
        clock = FakeClock()
        async with open_actor_system(
            *specs(log, "a"), intensity=RestartIntensity(1, 5.0), clock=clock
        ) as system:
            ref = system.ref_of("a")
            await crash(ref)
            assert await ref.ask("ping") == "ping"
            clock.advance(6.0)
            await crash(ref)
            assert await ref.ask("ping") == "ping"
            assert not system.failed


class TestBackoff:
    def test_delay_grows_caps_and_jitters(self) -> None:
        backoff = Backoff(initial=1.0, maximum=5.0, multiplier=2.0, jitter=0.5)
        assert backoff.delay(0, rng=lambda lo, hi: 0.0) == 1.0
        assert backoff.delay(2, rng=lambda lo, hi: 0.0) == 4.0
        assert backoff.delay(10, rng=lambda lo, hi: hi) == 5.0
        assert backoff.delay(1, rng=lambda lo, hi: lo) == 1.0
        for attempt in range(6):
            assert 0.0 <= backoff.delay(attempt) <= 5.0

    async def test_restart_waits_for_the_delay(self) -> None:
        log: Log = []
        clock = FakeClock()
        backoff = Backoff(initial=10.0, maximum=100.0, jitter=0.0)
        async with open_actor_system(
            *specs(log, "s"), intensity=RestartIntensity(10, 60.0), backoff=backoff, clock=clock
        ) as system:
            ref = system.ref_of("s")
            await crash(ref)
            await wait_for(lambda: clock.sleepers == 1)
            info = system.snapshot().find("s")
            assert info is not None
            assert info.state is ActorState.RESTARTING
            assert info.backoff_until is not None
            assert info.backoff_until == pytest.approx(clock.wall() + 10.0)
            await ref.tell("queued while restarting")
            clock.advance(9.0)
            await anyio.wait_all_tasks_blocked()
            assert system.snapshot().find("s").state is ActorState.RESTARTING  # type: ignore[union-attr]
            clock.advance(1.0)
            await wait_for_state(system, "s", ActorState.RUNNING)
            assert system.snapshot().find("s").backoff_until is None  # type: ignore[union-attr]
            assert ref.statistics().dead_letters == 0
            # The second consecutive crash waits twice as long.
            await crash(ref)
            await wait_for(lambda: clock.sleepers == 1)
            clock.advance(19.0)
            await anyio.wait_all_tasks_blocked()
            assert system.snapshot().find("s").state is ActorState.RESTARTING  # type: ignore[union-attr]
            clock.advance(1.0)
            await wait_for_state(system, "s", ActorState.RUNNING)

    async def test_delay_resets_after_a_stable_period(self) -> None:
        log: Log = []
        clock = FakeClock()
        backoff = Backoff(initial=10.0, maximum=100.0, jitter=0.0, reset_after=30.0)
        async with open_actor_system(
            *specs(log, "s"), intensity=RestartIntensity(10, 5.0), backoff=backoff, clock=clock
        ) as system:
            ref = system.ref_of("s")
            for expected in (10.0, 20.0):
                await crash(ref)
                await wait_for(lambda: clock.sleepers == 1)
                until = system.snapshot().find("s").backoff_until  # type: ignore[union-attr]
                assert until == pytest.approx(clock.wall() + expected)
                clock.advance(expected)
                await wait_for_state(system, "s", ActorState.RUNNING)
            clock.advance(30.0)  # ran long enough: the next delay starts over
            await crash(ref)
            await wait_for(lambda: clock.sleepers == 1)
            until = system.snapshot().find("s").backoff_until  # type: ignore[union-attr]
            assert until == pytest.approx(clock.wall() + 10.0)
            clock.advance(10.0)
            await wait_for_state(system, "s", ActorState.RUNNING)


class Stubborn(Actor[Any]):
    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_stop(self) -> None:
        self.log.append(("stopping", "stubborn"))
        await anyio.sleep_forever()


class TestShutdown:
    async def test_children_stop_in_reverse_order(self) -> None:
        log: Log = []
        async with open_actor_system(*specs(log, "a", "b", "c")):
            log.clear()
        assert log == [("stop", "c"), ("stop", "b"), ("stop", "a")]

    async def test_a_child_past_its_deadline_is_cancelled(self) -> None:
        log: Log = []
        children = [
            *specs(log, "a"),
            ChildSpec("stubborn", lambda: Stubborn(log), shutdown=0.05),
            *specs(log, "c"),
        ]
        with anyio.fail_after(3):
            async with open_actor_system(*children) as system:
                log.clear()
                refs = [system.ref_of(name) for name in ("a", "stubborn", "c")]
        assert log == [("stop", "c"), ("stopping", "stubborn"), ("stop", "a")]
        assert not any(ref.is_alive for ref in refs)

    async def test_cancelling_from_outside_stops_everything(self) -> None:
        log: Log = []
        before = len(anyio.get_running_tasks())
        with anyio.CancelScope() as scope:
            async with open_actor_system(
                *specs(log, "a"),
                ChildSpec("sup", lambda: Supervisor(specs(log, "b", "c"))),
            ) as system:
                await system.ref_of("sup.c").ask("ping")
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == before

    async def test_refs_are_dead_after_cancellation(self) -> None:
        log: Log = []
        with anyio.CancelScope() as scope:
            async with open_actor_system(
                ChildSpec("sup", lambda: Supervisor(specs(log, "b"))),
            ) as system:
                ref = system.ref_of("sup.b")
                scope.cancel()
        assert not ref.is_alive
        with pytest.raises(ActorDeadError):
            await ref.ask("anyone?")
        snapshot = system.snapshot()
        assert snapshot.state is ActorState.STOPPED
        assert snapshot.find("sup.b").state is ActorState.STOPPED  # type: ignore[union-attr]


def decide(error: Exception) -> Directive:
    if isinstance(error, PermissionError):
        return Directive.STOP
    if isinstance(error, SystemError):
        return Directive.ESCALATE
    return Directive.RESTART


class Picky(Actor[Any]):
    async def handle(self, message: Any) -> Any:
        if isinstance(message, Exception):
            raise message
        return message


class TestDecider:
    async def test_stop_leaves_the_child_failed(self) -> None:
        async with open_actor_system(
            ChildSpec("p", Picky, decider=decide), intensity=RestartIntensity(5)
        ) as system:
            ref = system.ref_of("p")
            with pytest.raises(ActorDeadError):
                await ref.ask(ValueError("restart me"))
            assert await ref.ask("back") == "back"
            with pytest.raises(ActorDeadError):
                await ref.ask(PermissionError("bad credential"))
            info = await wait_for_state(system, "p", ActorState.FAILED)
            assert info.restarts == 1
            assert not ref.is_alive
            assert not system.failed

    async def test_escalate_fails_the_parent_with_the_same_error(self) -> None:
        inner = ChildSpec("inner", lambda: Supervisor([ChildSpec("p", Picky, decider=decide)]))
        async with open_actor_system(inner, intensity=RestartIntensity(5)) as system:
            with pytest.raises(ActorDeadError):
                await system.ref_of("inner.p").ask(SystemError("corrupt state"))
            await wait_for(
                lambda: system.snapshot().find("inner").restarts == 1  # type: ignore[union-attr]
            )
            info = system.snapshot().find("inner")
            assert info is not None
            assert info.last_failure is not None
            assert info.last_failure.type == "builtins.SystemError"
            await wait_for_state(system, "inner.p", ActorState.RUNNING)

    async def test_escalate_at_the_root_fails_the_system(self) -> None:
        async with open_actor_system(ChildSpec("p", Picky, decider=decide)) as system:
            with pytest.raises(ActorDeadError):
                await system.ref_of("p").ask(SystemError("corrupt state"))
            await wait_for(lambda: system.failed)
            assert not system.ready


class HangsOnStart(Lifecycle):
    """A `Lifecycle` whose `on_start` hangs on the starts numbered in `hang_on` (1-based)."""

    def __init__(self, log: Log, label: str, starts: list[int], hang_on: set[int]) -> None:
        super().__init__(log, label)
        starts.append(len(starts) + 1)
        self.number = starts[-1]
        self.hang = self.number in hang_on

    async def on_start(self) -> None:
        if self.hang:
            self.log.append(("hang", self.label))
            await anyio.sleep_forever()
        await super().on_start()


class TestStartTimeout:
    async def test_a_hung_restart_fails_and_siblings_are_still_supervised(self) -> None:
        log: Log = []
        starts: list[int] = []
        hanging = ChildSpec("a", lambda: HangsOnStart(log, "a", starts, {2}), start_timeout=0.2)
        with anyio.fail_after(10):
            async with open_actor_system(
                hanging, *specs(log, "b"), intensity=RestartIntensity(5, 60.0)
            ) as system:
                await crash(system.ref_of("a"))
                await wait_for(lambda: ("hang", "a") in log)
                # The supervisor waits on a's restart; b's crash is handled once it ends.
                await crash(system.ref_of("b"))
                assert await system.ref_of("b").ask("ping") == "ping"
                assert await system.ref_of("a").ask("ping") == "ping"
                info = system.snapshot().find("a")
                assert info is not None
                assert info.last_failure is not None
                assert info.last_failure.type == "builtins.TimeoutError"
                assert info.restarts == 2  # the hung start, then the one that worked
                assert not system.failed
        assert starts == [1, 2, 3]

    async def test_a_hung_first_start_fails_the_starter(self) -> None:
        log: Log = []
        hanging = ChildSpec("a", lambda: HangsOnStart(log, "a", [], {1}), start_timeout=0.1)
        with anyio.fail_after(5), pytest.raises(TimeoutError, match="on_start of 'a'"):
            async with open_actor_system(hanging):
                pass

    async def test_leaving_during_a_restart_without_a_limit_does_not_wait_for_it(self) -> None:
        log: Log = []
        starts: list[int] = []
        hanging = ChildSpec("a", lambda: HangsOnStart(log, "a", starts, {2}), start_timeout=None)
        with anyio.fail_after(5):
            async with open_actor_system(hanging, *specs(log, "b")) as system:
                ref = system.ref_of("a")
                await crash(ref)
                await wait_for(lambda: ("hang", "a") in log)
        assert not ref.is_alive
        assert system.snapshot().find("a").state is ActorState.STOPPED  # type: ignore[union-attr]
        assert log[-1] == ("stop", "b")


class TestStopWhileStarting:
    async def test_the_start_ends_once_on_start_returns(self) -> None:
        log: Log = []
        entered = anyio.Event()
        release = anyio.Event()

        class Slow(Lifecycle):
            async def on_start(self) -> None:
                entered.set()
                await release.wait()
                await super().on_start()

        spec = ChildSpec("slow", lambda: Slow(log, "slow"))
        outcomes: list[BaseException | None] = []

        async def start() -> None:
            try:
                await system.start(spec)
            except ActorDeadError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        with anyio.fail_after(5):
            async with open_actor_system(*specs(log, "a")) as system:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start)
                    await entered.wait()
                    tg.start_soon(system.stop, "slow")
                    await anyio.wait_all_tasks_blocked()
                    release.set()
                assert len(outcomes) == 1
                assert isinstance(outcomes[0], ActorDeadError)
                assert ("start", "slow") in log
                assert log[-1] == ("stop", "slow")  # on_stop released what on_start took
                assert system.snapshot().find("slow") is None
                info = system._cells["slow"]
                assert info.state is ActorState.STOPPED
                assert info.last_failure is None  # stopped on purpose, not failed
                # The name is free again, and the next instance is not stopped at once.
                release = anyio.Event()
                release.set()
                ref = await system.start(spec)
                assert await ref.ask("ping") == "ping"

    async def test_a_hung_on_start_is_cancelled_past_the_shutdown_deadline(self) -> None:
        log: Log = []
        spec = ChildSpec("h", lambda: HangsOnStart(log, "h", [], {1}), shutdown=0.1)
        with anyio.fail_after(5):
            async with open_actor_system(*specs(log, "a")) as system:
                async with anyio.create_task_group() as tg:

                    async def start() -> None:
                        with pytest.raises(ActorDeadError, match="stopped while starting"):
                            await system.start(spec)

                    tg.start_soon(start)
                    await wait_for(lambda: ("hang", "h") in log)
                    await system.stop("h")
                assert system.snapshot().find("h") is None
                assert await system.ref_of("a").ask("ping") == "ping"

    async def test_a_supervisor_stopped_while_starting_stops_what_it_started(self) -> None:
        log: Log = []
        entered = anyio.Event()
        release = anyio.Event()

        class Slow(Lifecycle):
            async def on_start(self) -> None:
                entered.set()
                await release.wait()
                await super().on_start()

        inner = [*specs(log, "a"), ChildSpec("slow", lambda: Slow(log, "slow")), *specs(log, "c")]
        spec = ChildSpec("sup", lambda: Supervisor(inner))
        outcomes: list[BaseException | None] = []

        async def start() -> None:
            try:
                await system.start(spec)
            except ActorDeadError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        with anyio.fail_after(5):
            async with open_actor_system() as system:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start)
                    await entered.wait()
                    tg.start_soon(system.stop, "sup")
                    await anyio.wait_all_tasks_blocked()
                    release.set()
                assert len(outcomes) == 1
                assert isinstance(outcomes[0], ActorDeadError)
                assert "stopped while starting" in str(outcomes[0])
                # The child being started finishes its start; none after it starts, and
                # those started stop gracefully in reverse order.
                assert log == [("start", "a"), ("start", "slow"), ("stop", "slow"), ("stop", "a")]
                assert system.snapshot().find("sup") is None
                assert system.ready


class FailsOnce(Lifecycle):
    """A `Lifecycle` whose `on_start` fails once for each label put in `fail_next`."""

    def __init__(self, log: Log, label: str, fail_next: set[str]) -> None:
        super().__init__(log, label)
        self.fail_next = fail_next

    async def on_start(self) -> None:
        if self.label in self.fail_next:
            self.fail_next.discard(self.label)
            self.log.append(("fail", self.label))
            raise ConnectionError(f"{self.label} cannot start")
        await super().on_start()


class TestFailedRestart:
    @pytest.mark.parametrize(
        ("strategy", "expected"),
        [
            pytest.param(
                Strategy.REST_FOR_ONE,
                [("stop", "b"), ("stop", "c"), ("fail", "b"), ("start", "b"), ("start", "c")],
                id="rest_for_one",
            ),
            pytest.param(
                Strategy.ONE_FOR_ALL,
                [
                    ("stop", "b"),
                    ("stop", "c"),
                    ("stop", "a"),
                    ("start", "a"),
                    ("fail", "b"),
                    ("stop", "a"),
                    ("start", "a"),
                    ("start", "b"),
                    ("start", "c"),
                ],
                id="one_for_all",
            ),
        ],
    )
    async def test_later_children_wait_until_the_failed_one_is_up(
        self, strategy: Strategy, expected: Log
    ) -> None:
        log: Log = []
        fail_next: set[str] = set()
        children = [
            ChildSpec(label, lambda label=label: FailsOnce(log, label, fail_next))  # type: ignore[misc]
            for label in ("a", "b", "c")
        ]
        sup = ChildSpec(
            "sup",
            lambda: Supervisor(children, strategy=strategy, intensity=RestartIntensity(5, 60.0)),
        )
        async with open_actor_system(sup) as system:
            log.clear()
            fail_next.add("b")
            await crash(system.ref_of("sup.b"))
            await wait_for(lambda: len(log) >= len(expected))
            for name in ("a", "b", "c"):
                await wait_for_state(system, f"sup.{name}", ActorState.RUNNING)
            assert log == expected
            info = system.snapshot().find("sup")
            assert isinstance(info, SupervisorInfo)
            assert info.recent_restarts == 2  # the crash and the failed restart


class BadStop(Actor[Any]):
    async def handle(self, message: Any) -> Any:
        raise PermissionError("bad credential")

    async def on_stop(self) -> None:
        raise RuntimeError("cleanup failed too")


class TestOnStopAfterACrash:
    async def test_the_decider_sees_the_crash_not_the_on_stop_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with open_actor_system(
            ChildSpec("p", BadStop, decider=decide), intensity=RestartIntensity(5)
        ) as system:
            with pytest.raises(ActorDeadError) as caught:
                await system.ref_of("p").ask("go")
            crash_error = caught.value.__cause__
            assert isinstance(crash_error, PermissionError)
            info = await wait_for_state(system, "p", ActorState.FAILED)  # STOP, no restart
            assert info.restarts == 0
            assert info.last_failure is not None
            assert info.last_failure.type == "builtins.PermissionError"
            assert any("cleanup failed too" in note for note in crash_error.__notes__)
            logged = [r for r in caplog.records if "on_stop failed after a crash" in r.message]
            assert len(logged) == 1
            assert logged[0].exc_info is not None
            assert isinstance(logged[0].exc_info[1], RuntimeError)
            assert not system.failed


class TestWaitFailed:
    async def test_returns_once_the_root_is_past_its_intensity(self) -> None:
        log: Log = []
        returned: list[bool] = []

        async def waiter() -> None:
            await system.wait_failed()
            returned.append(system.failed)

        with anyio.fail_after(5):
            async with open_actor_system(
                *specs(log, "a"), intensity=RestartIntensity(0, 5.0), clock=FakeClock()
            ) as system:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    await anyio.wait_all_tasks_blocked()
                    assert returned == []
                    await crash(system.ref_of("a"))
                assert returned == [True]
                await system.wait_failed()  # already failed: returns at once

    async def test_returns_once_a_crash_escalates_to_the_root(self) -> None:
        with anyio.fail_after(5):
            async with open_actor_system(ChildSpec("p", Picky, decider=decide)) as system:
                with pytest.raises(ActorDeadError):
                    await system.ref_of("p").ask(SystemError("corrupt state"))
                await system.wait_failed()
                assert system.failed
