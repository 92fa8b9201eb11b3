"""Process-wide logging: human-readable lines or JSON lines, each naming its chat turn.

`configure_logging` is called once, by the command line, before anything logs. Every
record gets ``session_id`` and ``request_id`` from the chat turn running in the task
that logged it (``actors.chat.current_session_id`` / ``current_request_id``), or None
outside a turn.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any

from actors.chat import current_request_id, current_session_id

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "TurnFilter",
    "configure_logging",
]

LOG_FORMATS = ("text", "json")

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(turn)s"


class TurnFilter(logging.Filter):
    """Add the current chat turn's ``session_id`` and ``request_id`` to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A value given with ``extra=`` wins over the context.
        if getattr(record, "session_id", None) is None:
            record.session_id = current_session_id.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """One line per record for people: ``… message [session=… request=…]``."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        session_id = getattr(record, "session_id", None)
        request_id = getattr(record, "request_id", None)
        record.turn = (
            f" [session={session_id} request={request_id}]"
            if session_id is not None or request_id is not None
            else ""
        )
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the turn's ids, and the
    traceback (``exc_info``) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "session_id": getattr(record, "session_id", None),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    level: str | int = "INFO", log_format: str = "text", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``log_format``, from ``level`` up.

    Replaces the root logger's handlers, so calling it again reconfigures.

    Args:
        level: A level name (``DEBUG``, ``INFO``, …) or number.
        log_format: ``text`` (for people) or ``json`` (one object per line).
        stream: Where lines go; stderr by default.

    Returns:
        The installed handler.

    Raises:
        ValueError: Unknown level or format.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    if isinstance(level, str):
        resolved = logging.getLevelNamesMapping().get(level.upper())
        if resolved is None:
            raise ValueError(f"unknown LOG_LEVEL {level!r}")
        level = resolved
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(TurnFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The embedded database's helper narrates every pg_ctl call (with its output) at
    # INFO; operators need its warnings only, unless they ask for DEBUG.
    logging.getLogger("pgserver").setLevel(
        logging.NOTSET if level <= logging.DEBUG else max(level, logging.WARNING)
    )
    return handler
