"""The whole server in one process: database, tree, router and HTTP face together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from persistence import DatabaseSettings
from web import Settings
from web._server import DatabaseBehindError, InsecureSettingsError, open_database, open_server
from web.settings import UPSTREAM_MASTER_BE_API_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="server_settings")
def _server_settings(tmp_path: Path) -> Settings:
    return Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=free_port(),
        FILES_DIR=tmp_path / "files",
        BCRYPT_ROUNDS=4,
        SHUTDOWN_GRACE_SECONDS=1,
    )


class TestOpenServer:
    async def test_every_face_answers_and_the_tree_stops_in_order(
        self, server_settings: Settings, database_url: str
    ) -> None:
        db = DatabaseSettings(DATABASE_URL=database_url)
        async with open_server(server_settings, db) as server:
            assert server.database.embedded is False
            (host, port) = server.http_addresses[0]
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
                live = await http.get("/health/live")
                assert live.status_code == 200
                docs = await http.get("/openapi.json")
                assert docs.status_code == 200
                health = (await http.get("/health")).json()
            names = [child["name"] for child in health["tree"]["children"]]
            assert names == [
                "heartbeat",
                "fanout",
                "catalogue",
                "logrelay",
                "registry",
                "router",
                "chats",
                "turnrelay",
                "janitor",
                "tools",
                "http",
            ]
            assert health["database"]["ok"] is True
            async with connect(
                server.router_url,
                additional_headers={"API-KEY": server_settings.MASTER_AGENT_API_KEY},
            ) as ws:
                await ws.ping()
            system = server.system
        assert system.snapshot().state.value in {"stopped", "stopping"}

    async def test_a_schema_behind_is_refused_unless_told_to_migrate(
        self, empty_database_url: str
    ) -> None:
        db = DatabaseSettings(DATABASE_URL=empty_database_url)
        with pytest.raises(DatabaseBehindError, match="genai-backend migrate"):
            async with open_database(db):
                pass
        async with open_database(db, migrate=True) as database:
            assert database.url
        async with open_database(db) as database:
            assert database.embedded is False


class TestServeCommand:
    def test_serve_prints_its_faces_and_stops_cleanly_on_sigterm(
        self, server_settings: Settings, database_url: str, tmp_path: Path
    ) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(server_settings.HTTP_PORT),
            "ROUTER_HOST": "127.0.0.1",
            "ROUTER_PORT": str(server_settings.ROUTER_PORT),
            "FILES_DIR": str(tmp_path / "files"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines: list[str] = []
            deadline = time.monotonic() + 60
            assert proc.stdout is not None
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if line.startswith("Ready."):
                    break
            output = "".join(lines)
            assert "Ready." in output, output
            assert f"http://127.0.0.1:{server_settings.HTTP_PORT}/docs" in output
            assert f"ws://127.0.0.1:{server_settings.ROUTER_PORT}/ws" in output
            assert "Database: external PostgreSQL" in output
            response = httpx.get(f"http://127.0.0.1:{server_settings.HTTP_PORT}/health/live")
            assert response.status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


class TestSecrets:
    async def test_production_refuses_default_secrets(
        self, server_settings: Settings, database_url: str
    ) -> None:
        server_settings.ENVIRONMENT = "production"
        db = DatabaseSettings(DATABASE_URL=database_url)
        every = "JWT_SECRET_KEY, ENCRYPTION_KEYS, MASTER_BE_API_KEY and MASTER_AGENT_API_KEY"
        with pytest.raises(InsecureSettingsError, match=f"needs its own {every} "):
            async with open_server(server_settings, db):
                pass
        server_settings.JWT_SECRET_KEY = "a-real-signing-key"
        server_settings.ENCRYPTION_KEYS = ""
        server_settings.MASTER_BE_API_KEY = f"{uuid.uuid4()}::master_server_be"
        server_settings.MASTER_AGENT_API_KEY = f"{uuid.uuid4()}::master_server_ml"
        with pytest.raises(InsecureSettingsError, match="needs its own ENCRYPTION_KEYS "):
            async with open_server(server_settings, db):
                pass
        server_settings.ENCRYPTION_KEYS = "k1:a-real-encryption-key"
        # The upstream master's published default is no secret either.
        server_settings.MASTER_BE_API_KEY = UPSTREAM_MASTER_BE_API_KEY
        with pytest.raises(InsecureSettingsError, match="needs its own MASTER_BE_API_KEY "):
            async with open_server(server_settings, db):
                pass

    async def test_production_starts_with_its_own_secrets(
        self, server_settings: Settings, database_url: str
    ) -> None:
        server_settings.ENVIRONMENT = "production"
        server_settings.JWT_SECRET_KEY = "a-real-signing-key"
        server_settings.ENCRYPTION_KEYS = "k1:a-real-encryption-key"
        server_settings.MASTER_BE_API_KEY = f"{uuid.uuid4()}::master_server_be"
        server_settings.MASTER_AGENT_API_KEY = f"{uuid.uuid4()}::master_server_ml"
        async with open_server(server_settings, DatabaseSettings(DATABASE_URL=database_url)):
            pass

    def test_the_command_says_why_in_one_line(self, tmp_path: Path) -> None:
        env = {
            **os.environ,
            "ENVIRONMENT": "production",
            "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        }
        result = subprocess.run(
            [sys.executable, "-m", "web.cli", "serve"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("genai-backend: ENVIRONMENT=production needs its own JWT_SECRET_KEY")
