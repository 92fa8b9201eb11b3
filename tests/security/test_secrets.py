"""Provider API keys never leave the back-end: not in a response, not in a log line."""

from __future__ import annotations

import logging

import pytest
from quart.testing import QuartClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import ModelProvider

from ..web.conftest import Users

API_KEY = "sk-live-0123456789abcdefSECRET"
NEW_KEY = "sk-live-rotated-9876543210SECRET"


async def test_api_keys_appear_in_no_response_and_no_log(
    client: QuartClient,
    users: Users,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = await users.login()
    h = user.headers
    caplog.set_level(logging.DEBUG)
    bodies: list[bytes] = []

    async def call(method: str, path: str, **kwargs: object) -> None:
        response = await client.open(path, method=method, headers=h, **kwargs)
        assert response.status_code < 300, await response.get_data()
        bodies.append(await response.get_data())
        bodies.append(str(response.headers).encode())

    await call("POST", "/api/llm/model/provider", json={"name": "openai", "api_key": API_KEY})
    await call(
        "POST", "/api/llm/model/config", json={"name": "c", "model": "m", "provider": "openai"}
    )
    await call("GET", "/api/llm/model/configs")
    config_id = (await (await client.get("/api/llm/model/configs", headers=h)).get_json())[0][
        "configs"
    ][0]["id"]
    await call("GET", f"/api/llm/model/config/{config_id}")
    await call("PATCH", f"/api/llm/model/config/{config_id}", json={"temperature": 0.2})
    await call("PATCH", "/api/llm/model/providers/openai", json={"api_key": NEW_KEY})
    await call("GET", "/api/llm/model/configs")
    async with sessionmaker() as session:
        stored = (await session.execute(select(ModelProvider.api_key))).scalar_one()
    assert stored and API_KEY not in stored and NEW_KEY not in stored

    secrets = [API_KEY, NEW_KEY, stored]
    for body in bodies:
        for secret in secrets:
            assert secret.encode() not in body
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    for secret in secrets:
        assert secret not in logged
