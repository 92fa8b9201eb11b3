"""The master agent's ``X-API-KEY``: a stock upstream master works in development, and
no published key is accepted once the key is set (production refuses defaults)."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from web import Settings
from web.app import create_app
from web.settings import DEFAULT_MASTER_BE_API_KEY, UPSTREAM_MASTER_BE_API_KEY

from .conftest import Users


async def _status(app: Quart, key: str) -> int:
    client = app.test_client()
    user = await Users(client).login()
    response = await client.get(
        f"/api/agents/active?agent_type=all&user_id={user.id}", headers={"X-API-KEY": key}
    )
    return response.status_code


@pytest.fixture(name="make_app")
def _make_app(tmp_path: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> Any:
    def make(**settings: Any) -> Quart:
        return create_app(
            Settings(BCRYPT_ROUNDS=4, FILES_DIR=tmp_path / "files", **settings), sessionmaker
        )

    return make


async def test_in_development_a_stock_master_is_accepted_with_its_own_default(
    make_app: Any,
) -> None:
    app = make_app()
    assert await _status(app, DEFAULT_MASTER_BE_API_KEY) == 200
    assert await _status(app, UPSTREAM_MASTER_BE_API_KEY) == 200
    assert await _status(app, "something-else::master_server_be") == 401


async def test_a_key_that_is_set_is_the_only_one_accepted(make_app: Any) -> None:
    app = make_app(MASTER_BE_API_KEY="0f6c3c2e-our-own::master_server_be")
    assert await _status(app, "0f6c3c2e-our-own::master_server_be") == 200
    assert await _status(app, UPSTREAM_MASTER_BE_API_KEY) == 401
    assert await _status(app, DEFAULT_MASTER_BE_API_KEY) == 401


def test_outside_development_no_published_key_counts_as_set() -> None:
    settings = Settings(ENVIRONMENT="production")
    assert {"MASTER_BE_API_KEY", "MASTER_AGENT_API_KEY"} <= set(settings.insecure_secrets())
    assert settings.master_api_keys() == (DEFAULT_MASTER_BE_API_KEY,)
