"""File upload, download and metadata; names never become paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import File
from web import Settings, create_app
from web._files import safe_suffix

from .conftest import Agents, Users

MASTER = {"X-API-KEY": Settings().MASTER_BE_API_KEY}
DTO_KEYS = {
    "id",
    "session_id",
    "request_id",
    "original_name",
    "mimetype",
    "internal_id",
    "internal_name",
    "from_agent",
    "creator_id",
}


def upload(
    data: bytes = b"hello", name: str = "photo.test.JPG", content_type: str | None = "image/jpeg"
) -> dict[str, FileStorage]:
    from io import BytesIO

    return {"file": FileStorage(BytesIO(data), filename=name, content_type=content_type)}


async def post_file(
    client: QuartClient, headers: dict[str, str], form: dict[str, str] | None = None, **kw: Any
) -> Any:
    response = await client.post("/files", files=upload(**kw), form=form or {}, headers=headers)
    assert response.status_code == 201, await response.get_data()
    return await response.get_json()


def disk(settings: Settings) -> list[str]:
    root = Path(settings.FILES_DIR)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


class TestUpload:
    async def test_user_upload_and_metadata(
        self, client: QuartClient, users: Users, settings: Settings
    ) -> None:
        user = await users.login()
        body = await post_file(client, user.headers)
        assert set(body) == {"id"}
        file_id = body["id"]
        assert disk(settings) == [f"{file_id}.JPG"]
        response = await client.get(f"/files/{file_id}/metadata", headers=user.headers)
        assert response.status_code == 200
        assert await response.get_json() == {
            "id": file_id,
            "session_id": None,
            "request_id": None,
            "original_name": "photo.test.JPG",
            "mimetype": "image/jpeg",
            "internal_id": file_id,
            "internal_name": f"{file_id}.JPG",
            "from_agent": False,
            "creator_id": str(user.id),
        }

    async def test_agent_token_with_both_ids(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        agent = await agents.register(user)
        session_id, request_id = str(uuid4()), str(uuid4())
        body = await post_file(
            client,
            {"Authorization": f"Bearer {agent['jwt']}"},
            {"session_id": session_id, "request_id": request_id},
            content_type=None,
            name="notes",
        )
        response = await client.get(f"/files/{body['id']}/metadata", headers=user.headers)
        meta = await response.get_json()
        assert meta["from_agent"] is True
        assert meta["creator_id"] == str(user.id)
        assert meta["mimetype"] == "application/octet-stream"
        assert meta["internal_name"] == body["id"]
        assert (meta["session_id"], meta["request_id"]) == (session_id, request_id)
        # An agent token reads its creator's files; one id alone is not from an agent.
        one = await post_file(client, user.headers, {"session_id": session_id, "request_id": ""})
        response = await client.get(
            f"/files/{one['id']}/metadata", headers={"Authorization": f"Bearer {agent['jwt']}"}
        )
        assert (await response.get_json())["from_agent"] is False

    async def test_validation(
        self,
        client: QuartClient,
        users: Users,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        response = await client.post("/files", form={"session_id": "x"}, headers=user.headers)
        assert response.status_code == 422
        detail = (await response.get_json())["detail"]
        assert detail[0] == {
            "type": "missing",
            "loc": ["body", "file"],
            "msg": "Field required",
            "input": None,
        }
        assert detail[1]["type"] == "uuid_parsing"
        assert detail[1]["loc"] == ["body", "session_id"]
        response = await client.post(
            "/files", files=upload(), form={"request_id": "nope"}, headers=user.headers
        )
        assert response.status_code == 422
        assert disk(settings) == []
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(File)) == 0
        response = await client.post("/files", files=upload())
        assert response.status_code == 401

    @pytest.mark.parametrize(
        "name",
        [
            "../../etc/passwd",
            "/etc/passwd",
            "..\\..\\x.exe",
            "a\x00b.txt",
            "ünï/çødé.ïmg",
            "..",
            ".",
        ],
    )
    async def test_hostile_names_stay_inside(
        self, client: QuartClient, users: Users, settings: Settings, name: str
    ) -> None:
        user = await users.login()
        body = await post_file(client, user.headers, name=name)
        [stored] = disk(settings)
        assert stored.startswith(body["id"])
        response = await client.get(f"/files/{body['id']}/metadata", headers=user.headers)
        meta = await response.get_json()
        if "\\" not in name:  # the multipart encoding may escape backslashes
            assert meta["original_name"] == name.replace("\x00", "")
        assert "/" not in meta["internal_name"] and "\\" not in meta["internal_name"]

    def test_safe_suffix(self) -> None:
        assert safe_suffix("photo.test.JPG") == ".JPG"
        assert safe_suffix(".bashrc") == ""
        assert safe_suffix("a.") == ""
        assert safe_suffix("x.t/ar") == ""
        assert safe_suffix("x.tx\x00t") == ""
        assert safe_suffix("../a.b/../c.png") == ".png"

    async def test_too_large(
        self, sessionmaker: async_sessionmaker[AsyncSession], users: Users, tmp_path: Path
    ) -> None:
        settings = Settings(BCRYPT_ROUNDS=4, FILES_DIR=tmp_path / "small", MAX_UPLOAD_BYTES=1000)
        client = create_app(settings, sessionmaker).test_client()
        user = await Users(client).login()
        response = await client.post("/files", files=upload(b"x" * 5000), headers=user.headers)
        assert response.status_code == 413
        assert await response.get_json() == {
            "detail": "The upload is too large: the limit is 1000 bytes"
        }
        assert disk(settings) == []

    async def test_disk_failure_leaves_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        settings = Settings(BCRYPT_ROUNDS=4, FILES_DIR=blocker / "files")
        client = create_app(settings, sessionmaker).test_client()
        user = await Users(client).login()
        response = await client.post("/files", files=upload(), headers=user.headers)
        assert response.status_code == 500
        assert await response.get_json() == {"detail": "Failed to save file"}
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(File)) == 0

    async def test_database_failure_removes_the_file(
        self,
        app: Quart,
        client: QuartClient,
        users: Users,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from persistence import FileRepository

        user = await users.login()

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("database down")

        monkeypatch.setattr(FileRepository, "add", broken)
        response = await client.post("/files", files=upload(), headers=user.headers)
        assert response.status_code == 500
        assert disk(settings) == []


class TestDownload:
    async def test_bytes_and_headers(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        body = await post_file(
            client, user.headers, data=b"abc", name="a.txt", content_type="text/plain"
        )
        response = await client.get(f"/files/{body['id']}", headers=user.headers)
        assert response.status_code == 200
        assert await response.get_data() == b"abc"
        headers = response.headers
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["Content-Disposition"] == f'attachment; filename="{body["id"]}.txt"'
        assert headers["Content-Length"] == "3"
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["ETag"] and headers["Last-Modified"]
        again = await client.get(
            f"/files/{body['id']}", headers={**user.headers, "If-None-Match": headers["ETag"]}
        )
        assert again.status_code == 304
        image = await post_file(client, user.headers)
        response = await client.get(f"/files/{image['id']}", headers=user.headers)
        assert response.headers["Content-Type"] == "image/jpeg"

    async def test_unknown_foreign_and_bad_ids(self, client: QuartClient, users: Users) -> None:
        alice, bob = await users.login(), await users.login()
        body = await post_file(client, alice.headers)
        for file_id in (body["id"], str(uuid4()), "not-a-uuid"):
            response = await client.get(f"/files/{file_id}", headers=bob.headers)
            assert response.status_code == 400
            assert await response.get_json() == {"detail": f"File with id {file_id} does not exist"}
        for file_id in (body["id"], str(uuid4())):
            response = await client.get(f"/files/{file_id}/metadata", headers=bob.headers)
            assert response.status_code == 400
            assert await response.get_json() == {"detail": f"File with id {file_id} does not exist"}
        response = await client.get("/files/xyz/metadata", headers=bob.headers)
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "uuid_parsing" and error["loc"] == ["path", "file_id"]

    async def test_metadata_without_bytes(
        self, client: QuartClient, users: Users, settings: Settings
    ) -> None:
        user = await users.login()
        body = await post_file(client, user.headers)
        (Path(settings.FILES_DIR) / f"{body['id']}.JPG").unlink()
        response = await client.get(f"/files/{body['id']}", headers=user.headers)
        assert response.status_code == 500
        assert await response.get_json() == {
            "detail": f"Metadata of file {body['id']} exists, but file was not found"
        }


class TestLists:
    async def test_session_files(self, client: QuartClient, users: Users) -> None:
        alice, bob = await users.login(), await users.login()
        session_id, request_id = str(uuid4()), str(uuid4())
        mine = await post_file(
            client, alice.headers, {"session_id": session_id, "request_id": request_id}
        )
        await post_file(client, bob.headers, {"session_id": session_id})
        expected = [{"file_id": mine["id"], "session_id": session_id, "request_id": request_id}]
        response = await client.get(f"/files?session_id={session_id}", headers=alice.headers)
        assert response.status_code == 200
        assert await response.get_json() == expected
        response = await client.get(
            f"/files?session_id={session_id}&user_id={alice.id}", headers=MASTER
        )
        assert await response.get_json() == expected
        response = await client.get(f"/files?session_id={uuid4()}", headers=alice.headers)
        assert await response.get_json() == []
        response = await client.get(f"/files?session_id={session_id}&user_id={alice.id}")
        assert response.status_code == 401
        response = await client.get("/files?session_id=bad", headers=alice.headers)
        assert response.status_code == 422

    async def test_user_files(self, client: QuartClient, users: Users) -> None:
        alice, bob = await users.login(), await users.login()
        ids = {(await post_file(client, alice.headers))["id"] for _ in range(3)}
        await post_file(client, bob.headers)
        response = await client.get("/user/files/metadata", headers=alice.headers)
        assert response.status_code == 200
        body = await response.get_json()
        assert {item["id"] for item in body} == ids
        assert set(body[0]) == DTO_KEYS
        paged = await client.get("/user/files/metadata?offset=1&limit=1", headers=alice.headers)
        assert len(await paged.get_json()) == 1
