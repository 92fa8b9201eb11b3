"""One blueprint per resource; the app registers them in this order."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quart import Blueprint

__all__ = ["BLUEPRINTS"]

BLUEPRINTS: tuple[Blueprint, ...] = ()
