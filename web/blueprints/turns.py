"""Placeholder: filled in by the next commits."""

from __future__ import annotations

from quart import Blueprint

__all__ = ["blueprint"]

blueprint = Blueprint("turns", __name__)
