"""The public surface of actors.session and actors.registry, pinned."""

from __future__ import annotations

import actors
import actors.registry
import actors.session


def test_session_exports() -> None:
    assert set(actors.session.__all__) == {
        name for name in dir(actors.session) if not name.startswith("_") and name != "annotations"
    }
    for name in actors.session.__all__:
        assert getattr(actors.session, name) is not None


def test_registry_exports() -> None:
    assert set(actors.registry.__all__) == {
        name for name in dir(actors.registry) if not name.startswith("_") and name != "annotations"
    }


def test_reexported_from_actors() -> None:
    for name in (
        "MasterAgentError",
        "MasterFailedError",
        "MasterNotActiveError",
        "MasterReply",
        "MasterTimeoutError",
        "RouterUnavailableError",
        "RouterSessionClient",
        "router_session_spec",
        "registry_spec",
        "RegistryConfig",
    ):
        assert name in actors.__all__
        assert getattr(actors, name) is getattr(
            actors.session if hasattr(actors.session, name) else actors.registry, name
        )


def test_master_errors_are_one_family() -> None:
    assert issubclass(actors.session.MasterAgentError, Exception)
    for error in (
        actors.session.MasterNotActiveError,
        actors.session.MasterFailedError,
        actors.session.MasterTimeoutError,
        actors.session.RouterUnavailableError,
    ):
        assert issubclass(error, actors.session.MasterAgentError)
    assert str(actors.session.MasterTimeoutError(300.0)) == (
        "Master agent did not answer within 300 s"
    )
    assert str(actors.session.MasterTimeoutError(0.5)) == "Master agent did not answer within 0.5 s"
    assert str(actors.session.RouterUnavailableError()) == (
        "Cannot connect to router service. Try again later"
    )
