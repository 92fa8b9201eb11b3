"""bcrypt runs off the event loop, and a missing user costs the same check as a wrong password.

Through a real server from ``open_server`` with the production cost (12 rounds), so the
event loop that serves the GET is the one the logins would block.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import bcrypt
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import DatabaseSettings
from web import Settings
from web._server import open_server

from ..web.test_server import free_port

PASSWORD = "Secret#123"


@pytest.fixture(name="http")
async def _http(
    tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=free_port(),
        FILES_DIR=tmp_path / "files",
        BCRYPT_ROUNDS=12,
        SHUTDOWN_GRACE_SECONDS=1,
    )
    async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server:
        host, port = server.http_addresses[0]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60) as client:
            yield client


async def _user(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    username = f"pw_{uuid.uuid4().hex[:8]}"
    registered = await http.post("/api/register", json={"username": username, "password": PASSWORD})
    assert registered.status_code == 200
    login = await http.post(
        "/api/login/access-token", data={"username": username, "password": PASSWORD}
    )
    return username, {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _timed_get(http: httpx.AsyncClient, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = await http.get("/api/agents/", headers=headers)
    assert response.status_code == 200
    return time.perf_counter() - started


async def test_logins_do_not_block_other_requests(http: httpx.AsyncClient) -> None:
    username, headers = await _user(http)
    baseline = min([await _timed_get(http, headers) for _ in range(5)])
    during: list[float] = []

    async def login() -> None:
        response = await http.post(
            "/api/login/access-token", data={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 200

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(login)
        await anyio.sleep(0.05)  # the logins are hashing now
        during.append(await _timed_get(http, headers))
        during.append(await _timed_get(http, headers))
    logins = time.perf_counter() - started
    print(
        f"baseline GET {baseline * 1000:.1f} ms, during logins {max(during) * 1000:.1f} ms, "
        f"8 logins {logins * 1000:.0f} ms"
    )
    assert max(during) < 1.0
    assert max(during) < logins / 2


async def test_a_missing_user_costs_one_bcrypt_check_like_a_wrong_password(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counted, not timed: the same number of checks at the same cost is what makes the
    # two answers take the same time, and a count does not flake on a busy machine.
    username, _ = await _user(http)
    checked: list[int] = []
    checkpw = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        checked.append(int(hashed.split(b"$")[2]))  # $2b$<cost>$...
        return checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)

    async def costs(name: str) -> list[int]:
        checked.clear()
        response = await http.post(
            "/api/login/access-token", data={"username": name, "password": "Wrong#1234"}
        )
        assert response.status_code == 400
        assert response.json() == {"detail": "Incorrect username or password"}
        return list(checked)

    assert await costs(username) == [12]
    assert await costs(f"nobody_{uuid.uuid4().hex[:8]}") == [12]
    assert await costs("nobody-else") == [12]
