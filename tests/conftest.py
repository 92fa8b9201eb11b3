"""Test-wide configuration: both anyio backends are listed explicitly."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.pg"]


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Listed explicitly: anyio's default fixture silently drops a backend
    # that fails to import, which would hide a broken trio install.
    return str(request.param)
