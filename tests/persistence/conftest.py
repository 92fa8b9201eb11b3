"""This package's tests run on asyncio only (SQLAlchemy and Quart are asyncio-bound)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
