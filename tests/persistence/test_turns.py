"""ChatTurnStore: a chat turn's statements follow the repositories' rules."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from persistence import (
    ChatRepository,
    ChatTurnStore,
    ConfigRepository,
    File,
    NotFoundError,
    ProviderRepository,
    SenderType,
    User,
)

from .conftest import add_user

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]


async def add_config(
    sessionmaker: Sessions, owner: User, provider: str, name: str, **fields: object
) -> None:
    async with sessionmaker.begin() as session:
        providers = ProviderRepository(session)
        found = await providers.get_by_name(provider, owner_id=owner.id)
        if found is None:
            found = await providers.add(
                creator_id=owner.id,
                name=provider,
                api_key=f"key-{provider}",
                provider_metadata={"region": provider},
            )
        await ConfigRepository(session).add(
            creator_id=owner.id,
            provider_id=found.id,
            name=name,
            model=str(fields.pop("model", "m")),
            system_prompt="sys",
            credentials={"org": "o"},
            **fields,
        )


class _Connected:
    """Runs each statement on a connection of its own, as separate steps of turns do."""

    def __init__(self, store: ChatTurnStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._store.connect() as db:
                return await getattr(db, name)(*args, **kwargs)

        return call


def _db(store: ChatTurnStore) -> Any:
    return _Connected(store)


@pytest.fixture(name="store")
def _store(sessionmaker: Sessions) -> ChatTurnStore:
    return ChatTurnStore(sessionmaker)


@pytest.fixture(name="alice")
async def _alice(sessionmaker: Sessions) -> User:
    return await add_user(sessionmaker, "alice")


@pytest.fixture(name="bob")
async def _bob(sessionmaker: Sessions) -> User:
    return await add_user(sessionmaker, "bob")


class TestLookUp:
    async def test_a_config_under_the_named_provider(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User
    ) -> None:
        await add_config(sessionmaker, alice, "openai", "gpt", model="gpt-4o", temperature=0.2)
        await add_config(sessionmaker, alice, "ollama", "gpt", model="llama")
        found = await _db(store).look_up(
            uuid.uuid4(), owner_id=alice.id, llm_name="gpt", provider_name="openai"
        )
        assert not found.conversation_exists and found.conversation_owner is None
        assert found.provider_exists
        choice = found.choice
        assert choice is not None
        assert (choice.provider_name, choice.name, choice.model) == ("openai", "gpt", "gpt-4o")
        assert (choice.temperature, choice.system_prompt, choice.user_prompt) == (0.2, "sys", "")
        assert choice.api_key == "key-openai"
        assert choice.provider_metadata == {"region": "openai"}
        assert choice.credentials == {"org": "o"}
        assert choice.max_last_messages == 5

    async def test_which_part_is_missing(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User, bob: User
    ) -> None:
        await add_config(sessionmaker, alice, "openai", "gpt")
        no_config = await _db(store).look_up(
            uuid.uuid4(), owner_id=alice.id, llm_name="other", provider_name="openai"
        )
        assert no_config.choice is None and no_config.provider_exists
        no_provider = await _db(store).look_up(
            uuid.uuid4(), owner_id=alice.id, llm_name="gpt", provider_name="azure"
        )
        assert no_provider.choice is None and not no_provider.provider_exists
        # Another user's provider and config of the same names are not alice's.
        foreign = await _db(store).look_up(
            uuid.uuid4(), owner_id=bob.id, llm_name="gpt", provider_name="openai"
        )
        assert foreign.choice is None and not foreign.provider_exists

    async def test_without_a_provider_the_newest_config_of_the_name(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User, bob: User
    ) -> None:
        await add_config(sessionmaker, alice, "openai", "gpt", model="older")
        await add_config(sessionmaker, alice, "ollama", "gpt", model="newer")
        await add_config(sessionmaker, bob, "azure", "gpt", model="bobs")
        found = await _db(store).look_up(
            uuid.uuid4(), owner_id=alice.id, llm_name="gpt", provider_name=None
        )
        assert found.choice is not None
        assert (found.choice.provider_name, found.choice.model) == ("ollama", "newer")
        assert not found.provider_exists
        missing = await _db(store).look_up(
            uuid.uuid4(), owner_id=alice.id, llm_name="nope", provider_name=None
        )
        assert missing.choice is None

    async def test_the_conversation_and_its_owner(
        self, store: ChatTurnStore, alice: User, bob: User
    ) -> None:
        sid = uuid.uuid4()
        assert await _db(store).create_conversation(sid, owner_id=alice.id, title="hi")
        # The id is taken, whoever asks next.
        assert not await _db(store).create_conversation(sid, owner_id=bob.id, title="x")
        found = await _db(store).look_up(
            sid, owner_id=bob.id, llm_name="gpt", provider_name="openai"
        )
        assert found.conversation_exists and found.conversation_owner == alice.id


class TestMessages:
    async def test_a_turn_is_stored_and_reads_back_in_order(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User, bob: User
    ) -> None:
        sid, request_id = uuid.uuid4(), uuid.uuid4()
        await _db(store).create_conversation(sid, owner_id=alice.id, title="hi")
        async with sessionmaker.begin() as session:
            mine = File(
                id=uuid.uuid4(),
                creator_id=alice.id,
                request_id=request_id,
                session_id=sid,
                mimetype="text/plain",
                original_name="a.txt",
                internal_name="x",
                internal_id=uuid.uuid4(),
                from_agent=True,
            )
            theirs = File(
                id=uuid.uuid4(),
                creator_id=bob.id,
                request_id=request_id,
                mimetype="text/plain",
                original_name="b.txt",
                internal_name="y",
                internal_id=uuid.uuid4(),
                from_agent=False,
            )
            session.add_all([mine, theirs])

        await _db(store).add_message(sid, content="question", request_id=request_id)
        files = await _db(store).add_reply(
            sid, content='"answer"', request_id=request_id, owner_id=alice.id
        )
        assert [(f.id, f.original_name, f.from_agent, f.session_id) for f in files] == [
            (mine.id, "a.txt", True, sid)
        ]
        assert [
            f.id
            for f in await _db(store).files_of_request(
                request_id, owner_id=alice.id, session_id=sid
            )
        ] == [mine.id]

        async with sessionmaker() as session:
            page = await ChatRepository(session).page_messages(sid, owner_id=alice.id)
        assert page.total_count == 2
        newest_first = [(m.sender_type, m.content, m.request_id) for m in page.items]
        assert newest_first == [
            (SenderType.MASTER_AGENT, '"answer"', request_id),
            (SenderType.USER, "question", request_id),
        ]

    async def test_a_conversation_that_is_gone_stores_nothing(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User
    ) -> None:
        sid = uuid.uuid4()
        with pytest.raises(NotFoundError):
            await _db(store).add_message(sid, content="q", request_id=uuid.uuid4())
        with pytest.raises(NotFoundError):
            await _db(store).add_reply(sid, content="a", request_id=uuid.uuid4(), owner_id=alice.id)
        async with sessionmaker() as session:
            page = await ChatRepository(session).page_messages(sid, owner_id=alice.id)
        assert page.total_count == 0


class TestRoundTrips:
    async def test_a_step_opens_no_transaction(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User
    ) -> None:
        await add_config(sessionmaker, alice, "openai", "gpt")
        sid = uuid.uuid4()
        queries: list[str] = []
        async with store.connect() as db:
            db._driver.add_query_logger(lambda record: queries.append(record.query))
            found = await db.look_up(sid, owner_id=alice.id, llm_name="gpt", provider_name="openai")
            assert await db.create_conversation(sid, owner_id=alice.id, title="t")
            await db.add_message(sid, content="q", request_id=uuid.uuid4())
            assert found.choice is not None
        # The logger sees our statements (and the driver's one-off type introspection),
        # each committing on its own: no BEGIN, COMMIT or ROLLBACK around them, not even
        # when the connection goes back to the pool.
        assert any("chatconversations" in q for q in queries), queries
        control = {q.strip().rstrip(";").upper() for q in queries} & {"BEGIN", "COMMIT", "ROLLBACK"}
        assert not control, queries


class TestLookUpAndStore:
    async def test_stores_only_with_the_key_that_worked(
        self, store: ChatTurnStore, sessionmaker: Sessions, alice: User, bob: User
    ) -> None:
        await add_config(sessionmaker, alice, "openai", "gpt")
        await add_config(sessionmaker, alice, "ollama", "llama")
        async with sessionmaker.begin() as session:
            ollama = await ProviderRepository(session).get_by_name("ollama", owner_id=alice.id)
            assert ollama is not None
            ollama.api_key = None
        sid = uuid.uuid4()
        await _db(store).create_conversation(sid, owner_id=alice.id, title="t")

        async def attempt(owner: User, llm: str, provider: str | None, key: str | None) -> bool:
            async with store.connect() as db:
                found = await db.look_up_and_store(
                    sid,
                    owner_id=owner.id,
                    llm_name=llm,
                    provider_name=provider,
                    content=f"{llm} {provider} {key}",
                    request_id=uuid.uuid4(),
                    api_key=key,
                )
            return found.stored

        assert await attempt(alice, "gpt", "openai", "key-openai")
        assert await attempt(alice, "gpt", None, "key-openai")  # the older message form
        assert await attempt(alice, "llama", "ollama", None)  # no key is a key too
        assert not await attempt(alice, "gpt", "openai", "an older key")
        assert not await attempt(alice, "gpt", "openai", None)
        assert not await attempt(alice, "nope", "openai", "key-openai")
        assert not await attempt(bob, "gpt", "openai", "key-openai")  # not bob's chat

        async with sessionmaker() as session:
            page = await ChatRepository(session).page_messages(sid, owner_id=alice.id)
        assert sorted(m.content for m in page.items) == [
            "gpt None key-openai",
            "gpt openai key-openai",
            "llama ollama None",
        ]
