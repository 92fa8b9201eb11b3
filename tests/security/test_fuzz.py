"""Fuzz every documented operation from the app's own OpenAPI schema.

schemathesis generates requests for each operation of ``/openapi.json`` and sends them,
with a logged-in user's bearer token, to a real server from ``open_server``. No answer
may be a 5xx, and every answer must match the schema documented for its status.

Generation is derandomized (the same requests every run) and bounded: ``MAX_EXAMPLES``
per operation keeps the file well under 90 s. The number of requests sent is printed.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import DatabaseSettings
from web import Settings
from web._server import open_server

from ..web.test_server import free_port

MAX_EXAMPLES = 25
# The only 5xx an operation may answer to a client's request: readiness says "not yet".
DOCUMENTED_5XX = {"GET /health/ready": {503}}
PASSWORD = "Secret#123"


@pytest.fixture(name="base_url")
async def _base_url(
    tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[str]:
    # ``sessionmaker`` empties the tables once the test is over.
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=free_port(),
        FILES_DIR=tmp_path / "files",
        BCRYPT_ROUNDS=4,
        SHUTDOWN_GRACE_SECONDS=1,
    )
    async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server:
        host, port = server.http_addresses[0]
        yield f"http://{host}:{port}"


async def _login(http: httpx.AsyncClient) -> str:
    username = f"fuzz_{uuid.uuid4().hex[:8]}"
    registered = await http.post("/api/register", json={"username": username, "password": PASSWORD})
    assert registered.status_code == 200, registered.text
    login = await http.post(
        "/api/login/access-token", data={"username": username, "password": PASSWORD}
    )
    token: str = login.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    # Something to find: an agent, a provider with a config, a chat.
    agent = await http.post(
        "/api/agents/register",
        json={"name": "fuzz", "description": "d", "input_parameters": {}},
        headers=headers,
    )
    assert agent.status_code == 200, agent.text
    provider = await http.post(
        "/api/llm/model/provider", json={"name": "openai", "api_key": "sk"}, headers=headers
    )
    assert provider.status_code == 200, provider.text
    config = await http.post(
        "/api/llm/model/config",
        json={"name": f"cfg_{username}", "model": "m", "provider": "openai"},
        headers=headers,
    )
    assert config.status_code == 200, config.text
    return token


def _fuzz(raw_schema: dict[str, Any], base_url: str, token: str) -> tuple[int, list[str]]:
    """Run every operation's examples (blocking, in a worker thread); return the count
    of requests sent and the failures found."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    failures: list[str] = []
    with requests.Session() as session:
        for result, mode in itertools.product(schema.get_all_operations(), GenerationMode):
            operation = result.ok()

            @hypothesis.given(case=operation.as_strategy(mode))
            @hypothesis.settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                nonlocal sent
                response = case.call(base_url=base_url, session=session, headers=headers)
                sent += 1
                checks = [response_schema_conformance]
                if response.status_code not in DOCUMENTED_5XX.get(case.operation.label, set()):
                    checks.append(not_a_server_error)
                case.validate_response(response, checks=checks)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing of this operation can be made invalid (no parameters, no body).
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {_describe(exc)}")
    return sent, failures


def _describe(exc: BaseException) -> str:
    # Hypothesis wraps what went wrong ("unreliable results") in groups: show it all.
    text = f"{type(exc).__name__}: {exc}"
    for inner in getattr(exc, "exceptions", ()):
        text += "\n  - " + _describe(inner).replace("\n", "\n    ")
    return text


async def test_no_operation_answers_5xx_or_breaks_its_schema(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        token = await _login(http)
        raw_schema = (await http.get("/openapi.json")).json()
    sent, failures = await anyio.to_thread.run_sync(_fuzz, raw_schema, base_url, token)
    print(f"schemathesis sent {sent} requests")
    assert failures == [], "\n\n".join(failures)
    assert sent >= MAX_EXAMPLES * 10
