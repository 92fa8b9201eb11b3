"""Registry names, child refs by name, and the frozen snapshot of the tree."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import anyio
import pytest

from runtime import (
    Actor,
    ActorDeadError,
    ActorInfo,
    ActorState,
    ChildSpec,
    DynamicSupervisor,
    NameTakenError,
    Restart,
    RestartIntensity,
    Strategy,
    Supervisor,
    SupervisorInfo,
    open_actor_system,
)
from runtime.testing import FakeClock, RecordingActor, wait_for, wait_for_state

from .conftest import Lifecycle


def router() -> Supervisor:
    return Supervisor(
        [
            ChildSpec("hub", RecordingActor),
            ChildSpec("session", lambda: RecordingActor(fail_on="crash")),
        ],
        strategy=Strategy.REST_FOR_ONE,
    )


class TestRegistry:
    async def test_children_are_registered_by_dotted_path(self) -> None:
        async with open_actor_system(ChildSpec("router", router)) as system:
            session = system.ref_of("router.session")
            assert session.name == "router.session"
            assert system.ref_of("router").child("session") is session
            assert system.registry.lookup("router.hub") is system.ref_of("router").child("hub")
            sup = system.supervisor("router")
            assert isinstance(sup, Supervisor)
            assert sup.child("session") is session
            assert system.registry.names() == ["router", "router.hub", "router.session"]
            with pytest.raises(KeyError):
                system.ref_of("router.nothing")

    async def test_register_clash_raises(self) -> None:
        async with open_actor_system(
            ChildSpec("a", RecordingActor), ChildSpec("b", RecordingActor)
        ) as system:
            system.registry.register("alias", system.ref_of("a"))
            system.registry.register("alias", system.ref_of("a"))  # same ref: fine
            with pytest.raises(NameTakenError):
                system.registry.register("alias", system.ref_of("b"))
            with pytest.raises(NameTakenError):
                await system.start(ChildSpec("a", RecordingActor))

    async def test_registries_are_per_system(self) -> None:
        async with (
            open_actor_system(ChildSpec("a", RecordingActor)) as first,
            open_actor_system() as second,
        ):
            assert "a" in first.registry
            assert "a" not in second.registry

    async def test_supervisor_refs_take_no_messages(self) -> None:
        async with open_actor_system(ChildSpec("router", router)) as system:
            ref = system.ref_of("router")
            await ref.tell("ignored")
            assert ref.statistics().dead_letters == 1


class TestSnapshot:
    async def test_tree_is_frozen_and_json_serialisable(self) -> None:
        dyn = DynamicSupervisor()
        async with open_actor_system(
            ChildSpec("router", router), ChildSpec("chats", lambda: dyn), name="sys"
        ) as system:
            await dyn.get_or_start("s1", RecordingActor)
            snapshot = system.snapshot()
            assert isinstance(snapshot, SupervisorInfo)
            assert (snapshot.name, snapshot.state, snapshot.strategy) == (
                "sys",
                ActorState.RUNNING,
                "one_for_one",
            )
            with pytest.raises(dataclasses.FrozenInstanceError):
                snapshot.name = "other"  # type: ignore[misc]
            data = json.loads(json.dumps(snapshot.to_dict()))
            assert [c["name"] for c in data["children"]] == ["router", "chats"]
            assert data["children"][0]["strategy"] == "rest_for_one"
            session = data["children"][0]["children"][1]
            assert session["path"] == "router.session"
            assert session["state"] == "running"
            assert session["mailbox"]["capacity"] == 1000
            assert data["children"][1]["kind"] == "dynamic_supervisor"
            assert data["children"][1]["children"][0]["path"] == "chats.s1"
            assert not snapshot.degraded

    async def test_failure_restart_and_stop_show_up(self) -> None:
        clock = FakeClock(wall_start=1000.0)
        async with open_actor_system(
            ChildSpec("router", router),
            ChildSpec("tmp", lambda: Lifecycle([], "tmp"), restart=Restart.TRANSIENT),
            clock=clock,
            intensity=RestartIntensity(5, 10.0),
        ) as system:
            session = system.ref_of("router.session")
            with pytest.raises(ActorDeadError):
                await session.ask("crash")
            await wait_for(
                lambda: system.snapshot().find("router.session").restarts == 1  # type: ignore[union-attr]
            )
            info = await wait_for_state(system, "router.session", ActorState.RUNNING)
            assert isinstance(info, ActorInfo)
            assert info.last_failure is not None
            assert info.last_failure.type == "builtins.RuntimeError"
            assert info.last_failure.time == 1000.0
            assert system.snapshot().find("router")
            await system.ref_of("tmp").tell("exit")
            await wait_for_state(system, "tmp", ActorState.STOPPED)
            assert system.snapshot().degraded
            assert not system.failed

    async def test_system_stops_everything_on_exit(self) -> None:
        async with open_actor_system(ChildSpec("router", router)) as system:
            refs = [system.ref_of(n) for n in ("router", "router.hub", "router.session")]
        assert not any(ref.is_alive for ref in refs)
        await wait_for(lambda: system.snapshot().state is ActorState.STOPPED)


class Gate(Actor[Any]):
    """Waits on `opened` in `on_start` and again in `on_stop`."""

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.closing = anyio.Event()

    async def on_start(self) -> None:
        await self.opened.wait()

    async def on_stop(self) -> None:
        await self.closing.wait()


class TestTransientStates:
    async def test_starting_and_stopping_show_up(self) -> None:
        gate = Gate()
        async with open_actor_system() as system, anyio.create_task_group() as tg:
            tg.start_soon(system.start, ChildSpec("gate", lambda: gate))
            await wait_for_state(system, "gate", ActorState.STARTING)
            assert not system.ready
            gate.opened.set()
            await wait_for_state(system, "gate", ActorState.RUNNING)
            assert system.ready
            tg.start_soon(system.stop, "gate")
            await wait_for_state(system, "gate", ActorState.STOPPING)
            gate.closing.set()
