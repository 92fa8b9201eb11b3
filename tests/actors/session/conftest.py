"""Fixtures of the session tests: the real-agent interpreters of the router tests."""

from __future__ import annotations

from tests.actors.router.conftest import _python_109 as _python_109
from tests.actors.router.conftest import _python_203 as _python_203
