"""Clean-up of chat turns: `TurnJanitor` deletes turns and events past their retention."""

from __future__ import annotations

from ._janitor import GetJanitorStatistics as GetJanitorStatistics
from ._janitor import JanitorStatistics as JanitorStatistics
from ._janitor import SweepNow as SweepNow
from ._janitor import TurnJanitor as TurnJanitor
from ._janitor import TurnJanitorClient as TurnJanitorClient
from ._janitor import janitor_spec as janitor_spec

__all__ = [
    "GetJanitorStatistics",
    "JanitorStatistics",
    "SweepNow",
    "TurnJanitor",
    "TurnJanitorClient",
    "janitor_spec",
]
