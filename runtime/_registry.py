"""Names to refs, owned by one actor system."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import NameTakenError

if TYPE_CHECKING:
    from ._actor import ActorRef

__all__ = ["Registry"]


class Registry:
    """Map names to refs; every supervised child is registered under its path.

    Paths are dotted from the root: a child ``session`` of the root child
    ``router`` is ``"router.session"``. Dynamic children are not registered.
    """

    def __init__(self) -> None:
        self._names: dict[str, ActorRef[Any]] = {}

    def register(self, name: str, ref: ActorRef[Any]) -> None:
        """Bind `name` to `ref` (does not wait).

        Raises:
            NameTakenError: `name` is bound to another ref that is alive.
        """
        existing = self._names.get(name)
        if existing is not None and existing is not ref and existing.is_alive:
            raise NameTakenError(f"name {name!r} is taken by {existing!r}")
        self._names[name] = ref

    def unregister(self, name: str) -> None:
        """Remove `name`, if bound."""
        self._names.pop(name, None)

    def lookup(self, name: str) -> ActorRef[Any]:
        """Return the ref bound to `name`.

        Raises:
            KeyError: Nothing is bound to `name`.
        """
        try:
            return self._names[name]
        except KeyError:
            raise KeyError(f"no actor named {name!r}") from None

    def get(self, name: str) -> ActorRef[Any] | None:
        """Return the ref bound to `name`, or None."""
        return self._names.get(name)

    def names(self) -> list[str]:
        """Return the bound names, sorted."""
        return sorted(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names
