"""A server whose ports are taken refuses to start before it touches anything shared: a
second ``serve`` on the same data must not mark the first one's agents inactive."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import Agent, AgentRepository, DatabaseSettings, UserRepository
from web import Settings
from web._server import PortTakenError, open_server

from .test_server import free_port


@pytest.fixture(name="taken")
def _taken() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


async def _active_agent(sessionmaker: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    agent_id = uuid.uuid4()
    async with sessionmaker.begin() as db:
        user = await UserRepository(db).add(f"ports_{agent_id.hex[:8]}", "x")
        await AgentRepository(db).add(
            id=agent_id,
            name=f"agent_{agent_id.hex[:8]}",
            alias=f"agent_{agent_id.hex[:8]}",
            description="connected to the first server",
            jwt="jwt",
            creator_id=user.id,
            input_parameters={},
            is_active=True,
        )
    return agent_id


@pytest.mark.parametrize("setting", ["HTTP_PORT", "ROUTER_PORT"])
async def test_a_taken_port_is_refused_before_the_database_is_touched(
    setting: str,
    taken: int,
    tmp_path: Path,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    agent_id = await _active_agent(sessionmaker)
    ports = {"HTTP_PORT": free_port(), "ROUTER_PORT": free_port(), setting: taken}
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        ROUTER_HOST="127.0.0.1",
        FILES_DIR=tmp_path / "files",
        **ports,  # type: ignore[arg-type]
    )
    with pytest.raises(PortTakenError, match=f"127.0.0.1:{taken} .*set {setting} to a free port"):
        async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)):
            pass
    async with sessionmaker() as db:
        active = await db.scalar(select(Agent.is_active).where(Agent.id == agent_id))
    assert active is True


def test_the_command_names_the_setting_in_one_line(taken: int, tmp_path: Path) -> None:
    env = {
        **os.environ,
        # Nothing answers here: the ports are checked before the database is reached.
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(taken),
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
    assert last.startswith(f"genai-backend: cannot listen on 127.0.0.1:{taken} ")
    assert last.endswith("set HTTP_PORT to a free port")
