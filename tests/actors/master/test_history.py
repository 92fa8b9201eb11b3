"""What a turn shows the model, read from the real database: the last messages of the
conversation (the pages' rule, without their count) and the user's tools."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from actors.master import ToolCatalogue
from actors.master._history import model_messages, read_history
from persistence import (
    AgentRepository,
    CatalogueVersions,
    ChatRepository,
    ChatTurnStore,
    FlowRepository,
    SenderType,
    UserRepository,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "x",
        "description": "Echoes",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


async def conversation(
    sessionmaker: async_sessionmaker[AsyncSession], contents: list[tuple[SenderType, str]]
) -> tuple[uuid.UUID, uuid.UUID]:
    session_id = uuid.uuid4()
    async with sessionmaker.begin() as db:
        user = await UserRepository(db).add(f"u{uuid.uuid4().hex[:10]}", "x")
        chats = ChatRepository(db)
        await chats.create_conversation(session_id, owner_id=user.id, title="t")
        for sender, content in contents:
            await chats.add_message(session_id, sender_type=sender, content=content)
            await db.flush()
    return session_id, user.id


class TestHistory:
    async def test_the_last_messages_oldest_first_as_the_pages_give_them(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        answer = {"response": "four", "agents_trace": [{"name": "MasterAgent"}], "is_success": True}
        contents = [
            (SenderType.USER, "one"),
            (SenderType.MASTER_AGENT, "two"),
            (SenderType.USER, "three"),
            (SenderType.MASTER_AGENT, json.dumps(answer)),
            (SenderType.USER, "five"),
        ]
        session_id, user_id = await conversation(sessionmaker, contents)
        store = ChatTurnStore(sessionmaker)
        history = await read_history(store, session_id, user_id, 3)
        async with sessionmaker() as db:
            page = await ChatRepository(db).page_messages(session_id, owner_id=user_id, per_page=3)
        assert history == [(m.sender_type, m.content) for m in reversed(page.items)]
        assert [content for _, content in history] == ["three", json.dumps(answer), "five"]
        # 0: the current message alone; another user's conversation: nothing.
        assert await read_history(store, session_id, user_id, 0) == [(SenderType.USER, "five")]
        assert await read_history(store, session_id, uuid.uuid4(), 5) == []

        messages = model_messages(history, system_prompt="be kind", files=[{"id": "f1"}])
        assert messages == [
            {"role": "system", "content": "be kind"},
            {"role": "user", "content": "three"},
            {"role": "assistant", "content": "four"},
            {"role": "user", "content": 'five\n\nFILES:\n[{"id": "f1"}]'},
        ]


class TestTools:
    async def test_eligible_flows_then_active_agents_kept_while_the_catalogue_holds(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as db:
            user = await UserRepository(db).add(f"u{uuid.uuid4().hex[:10]}", "x")
            agents = AgentRepository(db)
            ids = [uuid.uuid4() for _ in range(3)]
            for n, agent_id in enumerate(ids):
                await agents.add(
                    id=agent_id,
                    name=f"echo{n}",
                    alias=f"echo{n}_abcdef",
                    description="",
                    jwt=f"jwt-{agent_id}",
                    creator_id=user.id,
                    input_parameters=SCHEMA,
                )
            await db.flush()
            await agents.set_active(ids[0], True)
            await agents.set_active(ids[1], True)
            flows = FlowRepository(db)
            both = [{"id": str(ids[0]), "type": "genai"}, {"id": str(ids[1]), "type": "genai"}]
            await flows.add(
                name="pair",
                alias="pair_qwerty",
                description="Both",
                flow=both,
                creator_id=user.id,
                is_active=True,
            )
            with_inactive = [{"id": str(ids[2]), "type": "genai"}]
            await flows.add(
                name="idle",
                alias="idle_qwerty",
                description="",
                flow=with_inactive,
                creator_id=user.id,
                is_active=False,
            )
        versions = CatalogueVersions()
        versions.listening()
        catalogue = ToolCatalogue(sessionmaker, versions)
        tools = await catalogue.tools_for(user.id)
        assert [(t.name, t.kind) for t in tools] == [
            ("pair_qwerty", "flow"),
            ("echo1_abcdef", "genai"),
            ("echo0_abcdef", "genai"),
        ]
        flow = tools[0]
        assert flow.function["function"]["name"] == "pair_qwerty"
        assert flow.function["function"]["description"] == "Both"
        assert flow.function["function"]["parameters"] == SCHEMA["function"]["parameters"]
        assert [m.id for m in flow.members] == [str(ids[0]), str(ids[1])]
        assert tools[1].display_name == "echo1"

        # Unchanged catalogue: the same list, without reading; a change reads again.
        async with sessionmaker.begin() as db:
            await AgentRepository(db).set_active(ids[0], False)
        assert await catalogue.tools_for(user.id) is tools
        versions.changed(user.id)
        assert [t.name for t in await catalogue.tools_for(user.id)] == ["echo1_abcdef"]
