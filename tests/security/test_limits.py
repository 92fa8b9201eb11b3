"""Sizes and bounds: too large or out of range is a clear 413 or 422, never a 500."""

from __future__ import annotations

import contextlib
import json
import uuid
from io import BytesIO
from pathlib import Path

import anyio
import pytest
from quart.datastructures import FileStorage
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from web import Settings, create_app

from ..web.conftest import Users
from .live import Live, open_live

UPLOAD_LIMIT = 4096
JSON_LIMIT = 1024
FRAME_LIMIT = 4096


@pytest.fixture(name="small")
def _small(tmp_path: Path, sessionmaker: async_sessionmaker[AsyncSession]) -> QuartClient:
    settings = Settings(
        BCRYPT_ROUNDS=4,
        FILES_DIR=tmp_path / "files",
        MAX_UPLOAD_BYTES=UPLOAD_LIMIT,
        MAX_JSON_BYTES=JSON_LIMIT,
    )
    return create_app(settings, sessionmaker).test_client()


class TestSizes:
    async def test_an_upload_past_the_limit_is_413_and_leaves_nothing(
        self, small: QuartClient, tmp_path: Path
    ) -> None:
        user = await Users(small).login()
        data = b"x" * (UPLOAD_LIMIT + 1)
        response = await small.post(
            "/files",
            files={"file": FileStorage(BytesIO(data), filename="big.bin")},
            headers=user.headers,
        )
        assert response.status_code == 413
        body = await response.get_json()
        assert "too large" in body["detail"].lower()
        files = tmp_path / "files"
        assert not files.exists() or list(files.iterdir()) == []

    async def test_a_json_body_past_the_limit_is_413(self, small: QuartClient) -> None:
        user = await Users(small).login()
        response = await small.post(
            "/api/agents/register",
            json={"name": "a", "description": "x" * JSON_LIMIT, "input_parameters": {}},
            headers=user.headers,
        )
        assert response.status_code == 413
        assert set(await response.get_json()) == {"detail"}
        listed = await small.get("/api/agents/", headers=user.headers)
        assert await listed.get_json() == []

    async def test_a_form_past_the_json_limit_is_413(self, small: QuartClient) -> None:
        body = f"username={'u' * JSON_LIMIT}&password=p".encode()
        response = await small.post(
            "/api/login/access-token",
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(body)),
            },
        )
        assert response.status_code == 413, await response.get_data()

    @pytest.mark.parametrize(
        "content_type",
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b"],
    )
    async def test_a_form_without_content_length_is_counted_as_read(
        self, small: QuartClient, content_type: str
    ) -> None:
        # Sent chunked: no Content-Length to check up front.
        if content_type.startswith("multipart"):
            fields = {"username": "u" * JSON_LIMIT, "password": "p"}
            body = (
                "".join(
                    f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    for k, v in fields.items()
                ).encode()
                + b"--b--\r\n"
            )
        else:
            body = f"username={'u' * JSON_LIMIT}&password=p".encode()
        response = await small.post(
            "/api/login/access-token", data=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 413, await response.get_data()

    async def test_a_json_body_without_content_length_is_counted_as_read(
        self, small: QuartClient
    ) -> None:
        user = await Users(small).login()
        body = b'{"name": "a", "input_parameters": {}, "description": "' + b"x" * JSON_LIMIT + b'"}'
        response = await small.post(
            "/api/agents/register",
            data=body,
            headers={**user.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413, await response.get_data()


PAGED = [
    "/api/agents/",
    "/api/agentflows/",
    "/api/llm/model/configs",
    "/api/chats",
    "/user/files/metadata",
    "/api/mcp/servers",
    "/api/a2a/agents",
]


class TestPages:
    @pytest.mark.parametrize("path", PAGED)
    @pytest.mark.parametrize(
        "query",
        [
            {"limit": "1001"},
            {"limit": "-1"},
            {"offset": "-1"},
            {"limit": "x"},
            {"offset": str(2**63)},
            {"limit": "1e9"},
        ],
    )
    async def test_out_of_range_paging_is_422(
        self, client: QuartClient, users: Users, path: str, query: dict[str, str]
    ) -> None:
        user = await users.login()
        response = await client.get(path, query_string=query, headers=user.headers)
        assert response.status_code == 422, await response.get_data()
        (error,) = (await response.get_json())["detail"]
        assert error["loc"] == ["query", next(iter(query))]

    @pytest.mark.parametrize("path", PAGED)
    async def test_the_bounds_themselves_are_accepted(
        self, client: QuartClient, users: Users, path: str
    ) -> None:
        user = await users.login()
        for query in ({"limit": "0"}, {"limit": "1000"}, {"offset": str(2**63 - 1)}):
            response = await client.get(path, query_string=query, headers=user.headers)
            assert response.status_code == 200, (query, await response.get_data())

    @pytest.mark.parametrize("per_page", ["0", "101", "-1"])
    async def test_chat_history_per_page_bounds(
        self, client: QuartClient, users: Users, per_page: str
    ) -> None:
        user = await users.login()
        response = await client.get(
            "/api/chat",
            query_string={"session_id": str(user.id), "per_page": per_page},
            headers=user.headers,
        )
        assert response.status_code == 422


class TestSockets:
    async def test_a_frontend_frame_past_the_limit_closes_1009(
        self,
        tmp_path: Path,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async with open_live(tmp_path, database_url, MAX_WS_FRAME_BYTES=FRAME_LIMIT) as live:
            _, token = await live.login()
            async with live.chat(token, max_size=None) as ws:
                await ws.send(json.dumps({"message": "x" * (FRAME_LIMIT - 100)}))
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error"  # under the limit: read and answered
                await ws.send("x" * (FRAME_LIMIT + 1))
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1009
            async with live.chat(token) as ws:  # the server is still there
                await ws.send("{}")
                assert json.loads(await ws.recv())["type"] == "error"

    async def test_sockets_past_the_per_user_limit_close_1013_and_free_their_place(
        self,
        tmp_path: Path,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async with open_live(
            tmp_path, database_url, MAX_SOCKETS_PER_USER=2, MAX_WS_FRAME_BYTES=FRAME_LIMIT
        ) as live:
            _, token = await live.login()
            _, other = await live.login()
            async with live.chat(token) as first, live.chat(token, str(uuid.uuid4())):
                async with live.chat(token) as third:
                    assert json.loads(await third.recv()) == {
                        "type": "error",
                        "error": "Too many open sockets",
                    }
                    with pytest.raises(ConnectionClosed) as closed:
                        await third.recv()
                    assert closed.value.rcvd is not None
                    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                        1013,
                        "Too many open sockets",
                    )
                async with live.chat(other) as bystander:  # counted per user
                    await _still_answers(bystander)
                await _still_answers(first)
            # Places are given back: on a clean close, on a 1009 and on a dropped transport.
            async with live.chat(token) as ws:
                await ws.send("x" * (FRAME_LIMIT + 1))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            dropped = await live.chat(token)
            dropped.transport.abort()
            await _wait_places(live, token, 2)


async def _still_answers(ws: ClientConnection) -> None:
    await ws.send("{}")
    assert json.loads(await ws.recv())["error"] == "Message validation failed"


async def _wait_places(live: Live, token: str, places: int) -> None:
    """Wait until the user can hold ``places`` sockets at once (releases are async)."""
    with anyio.fail_after(10):
        while True:
            replies = []
            async with contextlib.AsyncExitStack() as stack:
                sockets = [await stack.enter_async_context(live.chat(token)) for _ in range(places)]
                for ws in sockets:
                    try:
                        await ws.send("{}")
                        replies.append(json.loads(await ws.recv())["error"])
                    except ConnectionClosed:  # refused: a place is not given back yet
                        replies.append("closed")
            if set(replies) == {"Message validation failed"}:
                return
            await anyio.sleep(0.05)
