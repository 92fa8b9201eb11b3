"""Secrets out of agent logs, before they are stored or pushed to a socket.

Agents log what they receive: the upstream master agent (``genai-protocol`` 1.0.9) logs
its whole request payload, decrypted provider key (``configs.api_key``) included, as
JSON. Whoever sends a log, a value under a secret-looking key is replaced by the mask
the API uses for stored keys, at any depth of a message that parses as JSON, and in
``"key": "value"`` / ``key=value`` pairs and ``Bearer`` credentials of any other text.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MASK", "redact"]

MASK = "********"

# Key names that hold secrets, whole or as the last part of a snake/kebab/camel name:
# ``api_key``, ``OPENAI_API_KEY``, ``x-api-key``, ``apiKey``, ``client_secret``,
# ``access_token``, ``password``, ``agent_jwt``... but not ``max_tokens``.
_NAME = (
    r"(?:[a-z0-9]*[_-])*"
    r"(?:api[_-]?key|secret(?:[_-]?key)?|password|passwd|pwd|token|jwt"
    r"|authorization|private[_-]?key|credentials?)"
)
_WHOLE_NAME = re.compile(rf"{_NAME}\Z", re.IGNORECASE)
# Cheap first look: most log lines name no secret and are stored as they came.
_MENTION = re.compile(
    r"api[_-]?key|secret|passw|pwd|token|jwt|authorization|private[_-]?key|credential|bearer",
    re.IGNORECASE,
)
_QUOTED_PAIR = re.compile(
    rf"""(?P<q>["']?)(?P<name>(?<![A-Za-z0-9_-]){_NAME})(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<vq>["'])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)""",
    re.IGNORECASE,
)
_BARE_PAIR = re.compile(
    rf"(?P<name>(?<![A-Za-z0-9_-]){_NAME})(?P<sep>=)(?P<value>[^\s&,;\"']+)", re.IGNORECASE
)
_BEARER = re.compile(r"(?P<scheme>\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Return ``text`` with the values of secret-looking keys replaced by `MASK`.

    A message that parses as a JSON object or array is walked and written back as
    JSON; any other text has its quoted and bare ``key: value`` pairs and ``Bearer``
    credentials masked. Text that mentions no secret comes back unchanged (the same
    object).
    """
    if not _MENTION.search(text):
        return text
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            masked, changed = _walk(parsed)
            # Unchanged JSON keeps its exact text; a secret inside a string value (a
            # nested serialised payload) is found by the text pass below.
            if changed:
                return json.dumps(masked, ensure_ascii=False)
    text = _QUOTED_PAIR.sub(_mask_quoted, text)
    text = _BARE_PAIR.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['scheme']}{MASK}", text)


def _mask_quoted(match: re.Match[str]) -> str:
    q, vq = match["q"], match["vq"]
    return f"{q}{match['name']}{q}{match['sep']}{vq}{MASK}{vq}"


def _walk(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and _WHOLE_NAME.match(key) and item not in (None, "", MASK):
                if isinstance(item, dict | list):
                    item, _ = _walk(item)  # a structure under a secret name: mask inside
                    out[key] = _mask_all(item)
                else:
                    out[key] = MASK
                changed = True
                continue
            out[key], inner = _walk(item)
            changed = changed or inner
        return out, changed
    if isinstance(value, list):
        items = [_walk(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    if isinstance(value, str) and _MENTION.search(value):
        masked = redact(value)
        return masked, masked != value
    return value, False


def _mask_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _mask_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    return MASK if value not in (None, "") else value
