"""A stop sent to the whole process group, as process managers and terminals send it,
drains like one sent to the process, also through ``uv run`` (which forwards it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import anyio
from websockets.asyncio.client import connect

from actors.chat import SHUTTING_DOWN
from web import Settings

from .conftest import make_world, open_master, open_sessionmaker, receive, wait_ready

ROOT = Path(__file__).resolve().parents[2]
# The README's commands run the suite under uv, which names itself in UV; run.py keeps its
# own uv in .uv/ when none is on the PATH.
UV = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".uv" / "bin" / "uv")


async def test_a_stop_sent_to_the_group_through_uv_run_drains(
    server_settings: Settings, database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(server_settings.HTTP_PORT),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(server_settings.ROUTER_PORT),
        "FILES_DIR": str(tmp_path / "files"),
        "SHUTDOWN_GRACE_SECONDS": "2",
        "BCRYPT_ROUNDS": "4",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        # Its own process group, as a service manager or a terminal would start it.
        proc = await anyio.open_process(
            [UV, "run", "--project", str(ROOT), "genai-backend", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{server_settings.HTTP_PORT}"
        router = f"ws://127.0.0.1:{server_settings.ROUTER_PORT}/ws"
        await wait_ready(base, within=90)
        session_id = uuid.uuid4()
        async with (
            open_sessionmaker(database_url) as sessionmaker,
            open_master(router, server_settings.MASTER_AGENT_API_KEY) as master,
        ):
            world = await make_world(base, server_settings, sessionmaker)
            async with connect(world.ws_url(session_id)) as ws:
                await ws.send(world.message("still waiting at the deadline"))
                await master.wait_seen(session_id)
                stopped_at = time.monotonic()
                os.killpg(proc.pid, signal.SIGTERM)
                cut = await receive(ws, within=20)
                waited = time.monotonic() - stopped_at
        assert cut["type"] == "agent_response"
        assert cut["response"]["response"]["response"] == SHUTTING_DOWN
        # The turn had its grace: the doubled signal did not stop the server at once.
        assert waited > 1.5, waited
        with anyio.fail_after(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await proc.aclose()
    output = log.read_text()
    assert "stopping at once" not in output, output
    assert "Traceback" not in output, output
