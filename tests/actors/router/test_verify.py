"""Token checks are grouped: sockets connecting while a check runs share the next one."""

from __future__ import annotations

import anyio

from actors.router import VerifiedAgent
from actors.router._verify import TokenChecks


class _Verifier:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = anyio.Event()

    async def __call__(self, tokens: list[str]) -> list[VerifiedAgent | None]:
        self.calls.append(list(tokens))
        await self.release.wait()
        if "boom" in tokens:
            raise OSError("database gone")
        return [VerifiedAgent(t, "owner") if t.startswith("ok") else None for t in tokens]


class TestTokenChecks:
    async def test_tokens_arriving_during_a_check_share_the_next(self) -> None:
        verifier = _Verifier()
        checks = TokenChecks(verifier)
        results: dict[str, VerifiedAgent | None] = {}

        async def check(token: str) -> None:
            results[token] = await checks.verify(token)

        async with anyio.create_task_group() as tg:
            tg.start_soon(check, "ok-first")
            await anyio.wait_all_tasks_blocked()
            for n in range(50):
                tg.start_soon(check, f"ok-{n}" if n % 2 else f"bad-{n}")
            await anyio.wait_all_tasks_blocked()
            verifier.release.set()
        assert [len(call) for call in verifier.calls] == [1, 50]
        assert results["ok-first"] == VerifiedAgent("ok-first", "owner")
        assert results["ok-1"] == VerifiedAgent("ok-1", "owner")
        assert results["bad-0"] is None

    async def test_a_failed_check_fails_every_socket_of_its_batch(self) -> None:
        verifier = _Verifier()
        checks = TokenChecks(verifier)
        failures: list[str] = []

        async def check(token: str) -> None:
            try:
                await checks.verify(token)
            except OSError:
                failures.append(token)

        async with anyio.create_task_group() as tg:
            tg.start_soon(check, "ok-running")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(check, "boom")
            tg.start_soon(check, "ok-same-batch")
            await anyio.wait_all_tasks_blocked()
            verifier.release.set()
        assert sorted(failures) == ["boom", "ok-same-batch"]

    async def test_a_cancelled_leader_leaves_nobody_waiting(self) -> None:
        verifier = _Verifier()
        checks = TokenChecks(verifier)
        outcome: list[object] = []
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await checks.verify("ok-leader")

        async def follower() -> None:
            try:
                outcome.append(await checks.verify("ok-follower"))
            except RuntimeError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(checks.verify, "ok-running")  # holds the check
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(leader)  # waits to run the next batch...
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(follower)  # ...which the follower joins
            await anyio.wait_all_tasks_blocked()
            leader_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            verifier.release.set()
        assert len(outcome) == 1
        assert isinstance(outcome[0], RuntimeError)
        assert verifier.calls == [["ok-running"]]
