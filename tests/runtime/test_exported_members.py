"""The public surface of `runtime` is pinned here."""

from __future__ import annotations

import runtime

EXPECTED = {
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
}


class TestExportedMembers:
    def test_all_is_pinned(self) -> None:
        assert set(runtime.__all__) == EXPECTED

    def test_every_name_resolves_and_is_public(self) -> None:
        for name in runtime.__all__:
            member = getattr(runtime, name)
            assert member.__module__.startswith("runtime")

    def test_errors_share_one_base(self) -> None:
        for name in (
            "ActorDeadError",
            "MailboxFullError",
            "NameTakenError",
            "RestartIntensityError",
            "ActivationLimitError",
        ):
            assert issubclass(getattr(runtime, name), runtime.ActorError)
