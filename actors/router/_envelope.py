"""The JSON envelope of router frames: message and error types, parsing, error frames.

Every frame is one JSON object in a text frame. The keys a frame carries depend on its
direction (spec PROTOCOL.md §1.3); these helpers build the exact frames the upstream
router sends, so unmodified ``genai-protocol`` clients understand them.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from ._exceptions import FrameTooLargeError, InvalidFrameError

__all__ = [
    "AGENT_NOT_ACTIVE",
    "AGENT_UNREGISTERED",
    "ErrorType",
    "Frame",
    "MessageType",
    "agent_error",
    "dump_frame",
    "parse_frame",
    "router_error",
]

Frame = dict[str, Any]

AGENT_NOT_ACTIVE = "Agent is NOT active"
AGENT_UNREGISTERED = "Agent has been unregistered"


class MessageType(enum.StrEnum):
    """The ``message_type`` values of the protocol."""

    AGENT_REGISTER = "agent_register"
    AGENT_UNREGISTER = "agent_unregister"
    AGENT_INVOKE = "agent_invoke"
    AGENT_RESPONSE = "agent_response"
    AGENT_ERROR = "agent_error"
    AGENT_LOG = "agent_log"
    ML_INVOKE = "ml_invoke"


class ErrorType(enum.StrEnum):
    """The ``error.error_type`` values; the library maps each to an exception."""

    AGENT_UUID_ERROR = "AgentUUIDError"
    AGENT_GENERAL_ERROR = "AgentGeneralError"
    AGENT_NOT_ACTIVE = "AgentNotActive"
    INVALID_JSON_REQUEST_FORMAT = "InvalidJSONRequestFormat"
    NO_REQUEST_PAYLOAD = "NoRequestPayload"


def parse_frame(data: str | bytes, *, limit: int) -> Frame:
    """Parse one received frame into a JSON object.

    Args:
        data: The frame as received (text, or its UTF-8 bytes).
        limit: The largest accepted frame, in bytes.

    Returns:
        The decoded JSON object.

    Raises:
        FrameTooLargeError: The frame is longer than ``limit`` bytes.
        InvalidFrameError: The frame is not JSON, or not a JSON object.
    """
    size = len(data) if isinstance(data, bytes) else _utf8_length(data, limit)
    if size > limit:
        raise FrameTooLargeError(size, limit)
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError, UnicodeDecodeError, and nesting deeper than the stack.
        raise InvalidFrameError("Invalid JSON format") from exc
    if not isinstance(frame, dict):
        raise InvalidFrameError("Invalid JSON format")
    return frame


def _utf8_length(text: str, limit: int) -> int:
    # A character takes at most 4 bytes: skip the encoding when it cannot matter.
    return len(text) if len(text) * 4 <= limit else len(text.encode())


def dump_frame(frame: Frame) -> str:
    """Serialise a frame to the text sent on the wire."""
    return json.dumps(frame)


def router_error(message: str, error_type: ErrorType) -> Frame:
    """Build the router's own error frame, which carries no ``message_type``.

    A ``send()`` waiting on such a frame keeps waiting (the library only returns on
    frames with a ``message_type``); an agent's main socket raises the mapped exception.
    """
    return {"error": {"error_message": message, "error_type": str(error_type)}}


def agent_error(message: str, **error: Any) -> Frame:
    """Build an ``agent_error`` frame, which ends a waiting ``send()`` with a failure."""
    return {
        "message_type": str(MessageType.AGENT_ERROR),
        "error": {"error_message": message, **error},
    }
