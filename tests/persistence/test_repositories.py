from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import persistence
from persistence import (
    AgentRepository,
    AlreadyExistsError,
    ChatRepository,
    ConfigRepository,
    FileRepository,
    FlowRepository,
    LogRepository,
    NewLog,
    NotFoundError,
    ProfileRepository,
    ProviderRepository,
    SenderType,
    User,
    UserRepository,
)


async def _agent(
    session: AsyncSession, owner: User, name: str = "agent", *, active: bool = False, **kw: object
) -> persistence.Agent:
    agent_id = uuid.uuid4()
    return await AgentRepository(session).add(
        id=agent_id,
        name=name,
        alias=f"{name}_{agent_id.hex[:6]}",
        description=str(kw.get("description", f"{name} does things")),
        jwt=f"jwt-{agent_id}",
        creator_id=owner.id,
        input_parameters={"function": {"name": name}},
        is_active=active,
    )


class TestUsers:
    async def test_add_creates_profile_and_default_project(
        self, db_session: AsyncSession, alice: User
    ) -> None:
        repo = UserRepository(db_session)
        assert (await repo.get(alice.id)) is alice
        assert (await repo.get_by_username("alice")) is alice
        assert await repo.get_by_username("nobody") is None
        profile = await ProfileRepository(db_session).get(alice.id)
        assert profile is not None and profile.first_name is None
        project = await db_session.scalar(select(persistence.Project.name))
        assert project == "Default"

    async def test_duplicate_username(self, db_session: AsyncSession, alice: User) -> None:
        with pytest.raises(AlreadyExistsError) as info:
            await UserRepository(db_session).add("alice", "x")
        assert info.value.constraint == "ix_users_username"
        # The savepoint keeps the transaction usable.
        assert await UserRepository(db_session).get_by_username("alice") is alice

    async def test_profile_patch_is_owner_scoped(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = ProfileRepository(db_session)
        profile = await repo.patch(alice.id, first_name="Alice")
        assert profile.first_name == "Alice" and profile.last_name is None
        assert (await repo.get(bob.id)).first_name is None  # type: ignore[union-attr]
        with pytest.raises(NotFoundError):
            await repo.patch(uuid.uuid4(), first_name="x")
        with pytest.raises(TypeError):
            await repo.patch(alice.id, user_id=bob.id)


class TestAgents:
    async def test_owner_scoping(self, db_session: AsyncSession, alice: User, bob: User) -> None:
        repo = AgentRepository(db_session)
        agent = await _agent(db_session, alice)
        assert await repo.get(agent.id, owner_id=alice.id) is agent
        assert await repo.get(agent.id, owner_id=bob.id) is None
        assert await repo.get_any_owner(agent.id) is agent
        assert await repo.list_for_user(bob.id) == []
        with pytest.raises(NotFoundError):
            await repo.patch(agent.id, owner_id=bob.id, name="x")
        with pytest.raises(NotFoundError):
            await repo.delete(agent.id, owner_id=bob.id)

    async def test_unique_id_alias_and_jwt(self, db_session: AsyncSession, alice: User) -> None:
        repo = AgentRepository(db_session)
        agent = await _agent(db_session, alice)
        base = {
            "id": uuid.uuid4(),
            "name": "n",
            "alias": "other",
            "description": "",
            "jwt": "other-jwt",
            "creator_id": alice.id,
            "input_parameters": {},
        }
        for field, value, constraint in (
            ("id", agent.id, "agents_pkey"),
            ("alias", agent.alias, "agents_alias_key"),
            ("jwt", agent.jwt, "agents_jwt_key"),
        ):
            with pytest.raises(AlreadyExistsError) as info:
                await repo.add(**{**base, field: value})  # type: ignore[arg-type]
            assert info.value.constraint == constraint

    async def test_list_filters_and_orders(self, db_session: AsyncSession, alice: User) -> None:
        repo = AgentRepository(db_session)
        first = await _agent(db_session, alice, "first", description="Weather Tool")
        second = await _agent(db_session, alice, "second", description="weather station")
        await _agent(db_session, alice, "", description="")
        assert [a.id for a in await repo.list_for_user(alice.id)] == [first.id, second.id]
        assert [a.id for a in await repo.list_for_user(alice.id, description="WEATHER")] == [
            second.id,
            first.id,
        ]
        assert [a.id for a in await repo.list_for_user(alice.id, name="first")] == [first.id]
        assert await repo.list_for_user(alice.id, name="first", description="station") == []
        assert len(await repo.list_for_user(alice.id, description="%")) == 0
        assert [a.id for a in await repo.list_for_user(alice.id, offset=1, limit=5)] == [second.id]

    async def test_patch_delete_and_activity(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = AgentRepository(db_session)
        agent = await _agent(db_session, alice)
        before = agent.updated_at
        patched = await repo.patch(agent.id, owner_id=alice.id, name="renamed")
        assert patched.name == "renamed" and patched.updated_at >= before

        old = await _agent(db_session, alice, "old", active=True)
        new = await _agent(db_session, alice, "new", active=True)
        await _agent(db_session, bob, "bobs", active=True)
        assert [a.id for a in await repo.list_active_for_user(alice.id)] == [new.id, old.id]
        assert await repo.active_ids(alice.id, [old.id, agent.id]) == {old.id}
        assert (await repo.set_active(agent.id, True)).is_active  # type: ignore[union-attr]
        assert await repo.set_active(uuid.uuid4(), True) is None
        assert await repo.mark_all_inactive() == 4
        assert await repo.list_active_for_user(alice.id) == []

        await repo.delete(agent.id, owner_id=alice.id)
        assert await repo.get_any_owner(agent.id) is None


class TestFlows:
    async def test_crud_scoping_and_eligibility(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = FlowRepository(db_session)
        a1 = await _agent(db_session, alice, "a1", active=True)
        a2 = await _agent(db_session, alice, "a2", active=True)
        items = [{"id": str(a1.id), "type": "genai"}, {"id": str(a2.id), "type": "genai"}]
        older = await repo.add(
            name="f", alias="f_abcdef", description="d", flow=items, creator_id=alice.id
        )
        newer = await repo.add(
            name="g",
            alias="g_abcdef",
            description="d",
            flow=[*items, {"id": str(uuid.uuid4()), "type": "mcp"}],
            creator_id=alice.id,
        )
        with pytest.raises(AlreadyExistsError):
            await repo.add(
                name="h", alias="f_abcdef", description="d", flow=items, creator_id=alice.id
            )
        assert [f.id for f in await repo.list_for_user(alice.id)] == [newer.id, older.id]
        assert await repo.list_for_user(bob.id) == []
        assert await repo.get(older.id, owner_id=bob.id) is None

        assert await repo.deactivate_containing(a1.id, owner_id=bob.id) == 0
        assert await repo.deactivate_containing(a1.id) == 2
        assert (await repo.get(older.id, owner_id=alice.id)).is_active is False  # type: ignore[union-attr]

        patched = await repo.patch(older.id, owner_id=alice.id, alias="f_zzzzzz", is_active=True)
        assert patched.alias == "f_zzzzzz"
        with pytest.raises(NotFoundError):
            await repo.patch(older.id, owner_id=bob.id, name="x")
        with pytest.raises(NotFoundError):
            await repo.delete(older.id, owner_id=bob.id)
        await repo.delete(older.id, owner_id=alice.id)
        assert await repo.get(older.id, owner_id=alice.id) is None

    def test_old_item_form_is_read(self) -> None:
        flow = persistence.AgentFlow(flow=[{"agent_id": "x"}, {"id": "y", "type": "a2a"}])
        assert persistence.repositories.flow_item_ids(flow.flow) == [
            ("x", "genai"),
            ("y", "a2a"),
        ]


class TestLogs:
    async def test_bulk_insert_and_owner_scoping(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = LogRepository(db_session)
        agent = await _agent(db_session, alice)
        chat_session, loose_session, request = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await ChatRepository(db_session).create_conversation(
            chat_session, owner_id=alice.id, title="t"
        )
        rows = [
            NewLog(chat_session, request, "master_server_ml", f"m{i}", "info") for i in range(3000)
        ]
        rows.append(NewLog(loose_session, request, str(agent.id), "agent line", "debug"))
        rows.append(NewLog(loose_session, request, "unknown", "nobody's", "debug"))
        stored = await repo.add_many(rows)
        assert [e.message for e in stored] == [r.message for r in rows]
        ids = [e.id for e in stored]
        assert ids == sorted(set(ids))
        assert [e.creator_id for e in stored[-3:]] == [alice.id, alice.id, None]
        assert {e.creator_id for e in stored[:3000]} == {alice.id}  # the chat's owner
        assert await repo.add_many([]) == []

        by_request = await repo.list_for_request(request, owner_id=alice.id)
        assert len(by_request) == 3001
        assert by_request[0].message == "m0" and by_request[-1].message == "agent line"
        assert {e.creator_id for e in by_request} == {alice.id}
        assert [e.id for e in by_request] == ids[:3001]
        assert await repo.list_for_request(request, owner_id=bob.id) == []
        by_session = await repo.list_for_session(loose_session, owner_id=alice.id)
        assert [e.message for e in by_session] == ["agent line"]
        assert await repo.list_for_session(chat_session, owner_id=bob.id) == []


class TestFiles:
    async def test_files(self, db_session: AsyncSession, alice: User, bob: User) -> None:
        repo = FileRepository(db_session)
        mine = await repo.add(
            creator_id=alice.id,
            mimetype="text/plain",
            original_name="a.TXT",
            internal_name="x.TXT",
            from_agent=False,
        )
        theirs = await repo.add(
            creator_id=bob.id,
            mimetype="text/plain",
            original_name="b",
            internal_name="y",
            from_agent=False,
        )
        assert mine.internal_id == mine.id
        assert await repo.get(mine.id, owner_id=alice.id) is mine
        assert await repo.get(mine.id, owner_id=bob.id) is None
        assert [f.id for f in await repo.list_for_user(alice.id)] == [mine.id]
        with pytest.raises(AlreadyExistsError):
            await repo.add(
                id=mine.id,
                creator_id=alice.id,
                mimetype="a",
                original_name="a",
                internal_name="a",
                from_agent=False,
            )

        session_id, request_id = uuid.uuid4(), uuid.uuid4()
        stamped = await repo.stamp(
            [mine.id, theirs.id, uuid.uuid4()],
            owner_id=alice.id,
            session_id=session_id,
            request_id=request_id,
        )
        assert stamped == [mine.id]
        assert (
            await repo.stamp([], owner_id=alice.id, session_id=session_id, request_id=request_id)
            == []
        )
        assert mine.session_id == session_id
        assert [f.id for f in await repo.list_for_session(session_id, owner_id=alice.id)] == [
            mine.id
        ]
        assert await repo.list_for_session(session_id, owner_id=bob.id) == []
        assert [f.id for f in await repo.list_for_request(request_id, owner_id=alice.id)] == [
            mine.id
        ]
        assert theirs.session_id is None


class TestProvidersAndConfigs:
    async def test_providers_and_configs(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        providers = ProviderRepository(db_session)
        configs = ConfigRepository(db_session)
        openai = await providers.add(
            creator_id=alice.id, name="openai", api_key="enc", provider_metadata={}
        )
        ollama = await providers.add(
            creator_id=alice.id,
            name="ollama",
            api_key=None,
            provider_metadata={"base_url": "http://x"},
        )
        await providers.add(creator_id=bob.id, name="openai", api_key="k", provider_metadata={})
        with pytest.raises(AlreadyExistsError) as info:
            await providers.add(
                creator_id=alice.id, name="openai", api_key="k", provider_metadata={}
            )
        assert info.value.constraint == "uq_user_item_name"

        gpt = await configs.add(
            creator_id=alice.id,
            provider_id=openai.id,
            name="gpt",
            model="gpt-4o",
            system_prompt="p",
        )
        assert gpt.provider is openai and gpt.temperature == 0.7 and gpt.max_last_messages == 5
        # Names are unique per provider, not globally (our third revision).
        same_name = await configs.add(
            creator_id=alice.id, provider_id=ollama.id, name="gpt", model="llama", system_prompt="p"
        )
        with pytest.raises(AlreadyExistsError):
            await configs.add(
                creator_id=alice.id, provider_id=openai.id, name="gpt", model="m", system_prompt="p"
            )
        with pytest.raises(NotFoundError):
            await configs.add(
                creator_id=alice.id,
                provider_id=uuid.uuid4(),
                name="z",
                model="m",
                system_prompt="p",
            )

        listed = await providers.list_for_user(alice.id)
        assert [p.name for p in listed] == ["ollama", "openai"]
        by_name = {p.name: [c.name for c in p.configs] for p in listed}
        assert by_name == {"ollama": ["gpt"], "openai": ["gpt"]}
        assert (await providers.get_by_name("openai", owner_id=bob.id)).id != openai.id  # type: ignore[union-attr]
        assert await providers.get(openai.id, owner_id=bob.id) is None

        found = await configs.get_by_name("gpt", provider_id=ollama.id, owner_id=alice.id)
        assert found is same_name
        assert await configs.get_by_name("gpt", provider_id=ollama.id, owner_id=bob.id) is None
        assert await configs.get(gpt.id, owner_id=bob.id) is None

        patched = await configs.patch(gpt.id, owner_id=alice.id, temperature=0.1, user_prompt="u")
        assert (patched.temperature, patched.user_prompt, patched.model) == (0.1, "u", "gpt-4o")
        with pytest.raises(NotFoundError):
            await configs.patch(gpt.id, owner_id=bob.id, model="x")
        patched_provider = await providers.patch(
            "openai", owner_id=alice.id, api_key="new", provider_metadata={"a": "b"}
        )
        assert patched_provider.api_key == "new"
        with pytest.raises(NotFoundError):
            await providers.patch("nope", owner_id=alice.id, api_key="x")

        with pytest.raises(NotFoundError):
            await configs.delete(gpt.id, owner_id=bob.id)
        await configs.delete(gpt.id, owner_id=alice.id)
        assert await configs.get(gpt.id, owner_id=alice.id) is None
        await providers.delete("ollama", owner_id=alice.id)
        assert await configs.get(same_name.id, owner_id=alice.id) is None


class TestChats:
    async def test_conversations_and_paging(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = ChatRepository(db_session)
        sid = uuid.uuid4()
        conv = await repo.create_conversation(sid, owner_id=alice.id, title="hello")
        with pytest.raises(AlreadyExistsError):
            await repo.create_conversation(sid, owner_id=bob.id, title="x")
        other = await repo.create_conversation(uuid.uuid4(), owner_id=alice.id, title="later")
        assert [c.session_id for c in await repo.list_conversations(alice.id)] == [
            other.session_id,
            sid,
        ]
        assert await repo.list_conversations(bob.id) == []
        assert await repo.get_conversation(sid, owner_id=bob.id) is None
        assert (await repo.rename_conversation(sid, owner_id=alice.id, title="t2")).title == "t2"
        with pytest.raises(NotFoundError):
            await repo.rename_conversation(sid, owner_id=bob.id, title="x")
        assert conv.title == "t2"

        for i in range(5):
            await repo.add_message(
                sid,
                sender_type=SenderType.USER if i % 2 == 0 else SenderType.MASTER_AGENT,
                content=f"c{i}",
                request_id=uuid.uuid4(),
            )
        page = await repo.page_messages(sid, owner_id=alice.id, page=2, per_page=2)
        assert page.total_count == 5
        assert [m.content for m in page.items] == ["c2", "c1"]
        assert page.items[0].sender_type is SenderType.USER
        last = await repo.page_messages(sid, owner_id=alice.id, page=3, per_page=2)
        assert [m.content for m in last.items] == ["c0"]
        foreign = await repo.page_messages(sid, owner_id=bob.id)
        assert (foreign.total_count, list(foreign.items)) == (0, [])
        with pytest.raises(NotFoundError):
            await repo.add_message(uuid.uuid4(), sender_type=SenderType.USER, content="x")

        with pytest.raises(NotFoundError):
            await repo.delete_conversation(sid, owner_id=bob.id)
        await repo.delete_conversation(sid, owner_id=alice.id)
        remaining = await db_session.scalar(
            select(func.count()).select_from(persistence.ChatMessage)
        )
        assert remaining == 0


class TestSessionmakerFixture:
    async def test_commits_are_visible_to_other_sessions(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            user = await UserRepository(session).add("carol", "h")
        async with sessionmaker() as session:
            assert (await UserRepository(session).get(user.id)) is not None

    async def test_tables_are_empty_again(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 0
