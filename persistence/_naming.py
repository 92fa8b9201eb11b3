"""How agent and flow names are stored: normalised names and their aliases.

One rule for every writer (the REST API at registration and PATCH, the registry when
an agent connects, and migrations): spaces become ``_`` and the name is lowercased;
an alias is ``<normalised name>_<6 random lowercase letters>``.
"""

from __future__ import annotations

import secrets
import string

__all__ = ["ALIAS_LETTERS", "MAX_NAME_LENGTH", "alias_matches", "new_alias", "normalise_name"]

MAX_NAME_LENGTH = 55
"""Names longer than this are refused (the limit is on the name as given)."""

ALIAS_LETTERS = 6


def normalise_name(name: str) -> str:
    """Return ``name`` with spaces turned into ``_``, lowercased."""
    return name.replace(" ", "_").lower()


def new_alias(name: str) -> str:
    """Return ``<name>_<6 random lowercase letters>`` for a normalised ``name``."""
    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(ALIAS_LETTERS))
    return f"{name}_{letters}"


def alias_matches(alias: str, name: str) -> bool:
    """Whether ``alias`` was made from the normalised ``name``."""
    return bool(alias) and alias.rpartition("_")[0] == name
