"""Exceptions of the built-in master agent.

Class tree::

    TurnError
    ├── ProviderError      the model's provider refused, failed, or did not answer
    ├── ToolCallError      the model asked for a tool badly (unknown, bad arguments)
    ├── AgentCallError     an agent (or a flow's member) failed, is absent or is late
    └── StepLimitError     no final answer within the step limit

Each one ends a turn: its ``str()`` is the text the user reads, saying what to do.
"""

from __future__ import annotations

__all__ = ["AgentCallError", "ProviderError", "StepLimitError", "ToolCallError", "TurnError"]


class TurnError(Exception):
    """Base class: raised when a turn cannot go on; ``str()`` is the user's text."""


class ProviderError(TurnError):
    """Raised when the model's provider refuses the call, fails, or passes its deadline."""


class ToolCallError(TurnError):
    """Raised when the model calls a tool that does not exist, or with unreadable arguments."""


class AgentCallError(TurnError):
    """Raised when an agent answers an error, is not connected, or passes its deadline."""


class StepLimitError(TurnError):
    """Raised when the model still calls tools after the last step allowed."""
