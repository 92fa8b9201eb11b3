"""Outbox bounds: a peer that stops reading is closed (1013), except the back-end, whose
connection carries every agent's logs and may queue far more."""

from __future__ import annotations

import uuid

import anyio
from websockets.exceptions import ConnectionClosed

from actors.router import CLOSE_OUTBOX_OVERFLOW, open_router

from .conftest import BACKEND_KEY, mint_jwt, open_peer

FRAMES = 400
PAYLOAD = "x" * 20_000  # 8 MB in all: more than the socket buffers hold


def log_frame(n: int) -> dict[str, str]:
    return {
        "message_type": "agent_log",
        "log_message": f"{n} {PAYLOAD}",
        "log_level": "info",
        "request_id": "r",
        "session_id": "s",
    }


class TestOutboxes:
    async def test_a_log_flood_never_closes_the_backend_and_loses_nothing(self) -> None:
        async with (
            open_router("127.0.0.1", 0, outbox_capacity=5, ping_interval=None) as router,
            open_peer(router.url, **{"API-KEY": BACKEND_KEY}) as backend,
        ):
            agent = {"X-Custom-Authorization": mint_jwt(str(uuid.uuid4()))}
            async with open_peer(router.url, **agent) as flooder:
                for n in range(FRAMES):
                    await flooder.send(log_frame(n))
                # The router routes the flood while the back-end is not reading.
                await anyio.sleep(0.5)
            seen = [
                int((await backend.next())["request_payload"]["log_message"].split()[0])
                for _ in range(FRAMES)
            ]
            assert seen == list(range(FRAMES))
            assert router.hub.switchboard.dropped_frames == 0

    async def test_an_agent_that_does_not_read_is_closed_with_1013(self) -> None:
        async with (
            open_router("127.0.0.1", 0, outbox_capacity=5, ping_interval=None) as router,
            open_peer(router.url, **{"API-KEY": BACKEND_KEY}),
        ):
            target = str(uuid.uuid4())
            agent = {"X-Custom-Authorization": mint_jwt(target)}
            caller = {"x-custom-invoke-key": f"c:{target}"}
            async with (
                open_peer(router.url, **agent) as slow,
                open_peer(router.url, **caller) as peer,
            ):
                invoke = {
                    "message_type": "agent_invoke",
                    "agent_uuid": target,
                    "request_payload": {"blob": PAYLOAD},
                }
                for _ in range(FRAMES):
                    await peer.send(invoke)
                with anyio.fail_after(10):
                    try:
                        while True:
                            await slow.ws.recv()
                            await anyio.sleep(0.05)  # reads far slower than it is sent to
                    except ConnectionClosed as closed:
                        assert closed.rcvd is not None
                        assert closed.rcvd.code == CLOSE_OUTBOX_OVERFLOW
