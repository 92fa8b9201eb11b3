"""Client file names never become paths: every stored name is ``<uuid><safe suffix>``."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

from quart.datastructures import FileStorage
from quart.testing import QuartClient

from web import Settings

from ..web.conftest import Users

HOSTILE_NAMES = [
    "../../../../../../tmp/escape.txt",
    "../escape.txt",
    "/etc/passwd",
    "/tmp/absolute.png",
    "..\\..\\windows\\win.ini",
    "C:\\Windows\\system32\\x.dll",
    "a\x00b.txt",
    "evil.txt\x00.png",
    "ünïcödé ☃ 名前.tXt",
    "..",
    ".",
    "",
    "....",
    ".hidden",
    "name.with.many.dots.tar.gz",
    "x." + "a" * 300,
    "trailing/",
    "\u202egnp.exe",
    "%2e%2e%2fescape.txt",
]
STORED = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}(\.[A-Za-z0-9]{1,16})?$"
)


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _listing(directory: Path) -> list[str]:
    assert all(path.is_file() for path in directory.iterdir())
    return sorted(path.name for path in directory.iterdir())


def _escaped() -> bool:
    return Path("/tmp/escape.txt").exists() or Path("/tmp/absolute.png").exists()


async def test_hostile_names_stay_inside_the_storage_directory(
    client: QuartClient, users: Users, settings: Settings, tmp_path: Path
) -> None:
    user = await users.login()
    outside_before = _tree(tmp_path) - {"files"}
    stored: dict[str, str] = {}
    for name in HOSTILE_NAMES:
        response = await client.post(
            "/files",
            files={"file": FileStorage(BytesIO(name.encode()), filename=name)},
            headers=user.headers,
        )
        assert response.status_code == 201, (name, await response.get_data())
        stored[(await response.get_json())["id"]] = name

    listing = _listing(Path(settings.FILES_DIR))
    assert len(listing) == len(HOSTILE_NAMES)
    assert all(STORED.match(entry) for entry in listing), listing
    assert {entry[:36] for entry in listing} == set(stored)
    # Nothing appeared anywhere else under the test's directory.
    outside_after = {p for p in _tree(tmp_path) if not p.startswith("files")}
    assert outside_after == {p for p in outside_before if not p.startswith("files")}
    assert not _escaped()

    for file_id, name in stored.items():
        meta = await client.get(f"/files/{file_id}/metadata", headers=user.headers)
        body = await meta.get_json()
        # The client's name is metadata only (and never holds a NUL PostgreSQL refuses).
        assert "\x00" not in body["original_name"]
        assert STORED.match(body["internal_name"])
        download = await client.get(f"/files/{file_id}", headers=user.headers)
        assert await download.get_data() == name.encode()
        disposition = download.headers["Content-Disposition"]
        assert disposition == f'attachment; filename="{body["internal_name"]}"'


async def test_path_like_file_ids_are_not_found(client: QuartClient, users: Users) -> None:
    user = await users.login()
    for file_id in ["..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "%00", "a%5cb", "%2fetc%2fpasswd"]:
        response = await client.get(f"/files/{file_id}", headers=user.headers)
        assert response.status_code in {400, 404}, file_id
        assert "root:" not in (await response.get_data()).decode("utf-8", "replace")


async def test_the_upload_body_is_documented(client: QuartClient) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    body = document["paths"]["/files"]["post"]["requestBody"]["content"]
    schema = body["multipart/form-data"]["schema"]
    assert set(schema["properties"]) == {"file", "request_id", "session_id"}
    assert schema["properties"]["file"] == {"type": "string", "format": "binary", "title": "File"}
    assert schema["required"] == ["file"]
