"""A reply reaches every socket of its conversation, on every back-end process.

Two servers (`open_server`) share one database; the second uses the first's embedded
router. One user has one conversation open on both (a tab on each process, as a
round-robin balancer would place them). A message sent on either is answered on both
sockets, once each: the process that ran the turn answers its own socket, and the
other hears the turn's end (``genai_turns``) and reads the reply for its socket.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from ..faults.conftest import open_master, wait_ready
from .conftest import make_settings, open_backend

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Frontend


async def only_responses(ui: Frontend, seconds: float) -> list[dict[str, Any]]:
    return [f for f in await ui.silent_for(seconds) if f.get("type") == "agent_response"]


async def test_a_reply_reaches_the_conversations_sockets_on_both_processes(
    tmp_path: Path, database_url: str
) -> None:
    first_settings = make_settings(tmp_path)
    async with open_backend(first_settings, database_url) as first:
        await first.wait_session()
        second_settings = make_settings(tmp_path, ROUTER_WS_URL=first.router_url)
        async with (
            open_backend(second_settings, database_url) as second,
            open_master(first.router_url, first_settings.MASTER_AGENT_API_KEY) as master,
        ):
            await wait_ready(second.base)
            owner = await first.user()
            await first.add_model(owner)
            master.release("*")
            session_id = str(uuid.uuid4())
            async with (
                first.frontend(owner, session_id) as here,
                second.frontend(owner, session_id) as there,
            ):
                for sender, other in ((here, there), (there, here)):
                    await sender.say("to both")
                    mine = await sender.response(within=15)
                    theirs = await other.response(within=15)
                    assert theirs["response"]["request_id"] == mine["response"]["request_id"]
                    assert theirs["response"]["response"] == mine["response"]["response"]
                    assert mine["response"]["response"]["response"] == f"answer for {session_id}"
                    # Once each.
                    assert await only_responses(sender, 0.3) == []
                    assert await only_responses(other, 0.3) == []
            # Delivered: a new socket is not sent them again.
            async with second.frontend(owner, session_id) as later:
                assert await only_responses(later, 0.5) == []
            history = await first.history(owner, session_id)
            assert [
                json.loads(m["content"])["response"]
                for m in history
                if m["sender_type"] == "master_agent"
            ] == [f"answer for {session_id}"] * 2
