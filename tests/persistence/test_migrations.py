from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import persistence

FIRST_RELEASE = "a2d715381000"


async def _schema_diff(engine: AsyncEngine) -> list[object]:
    def diff(conn: object) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(ctx, persistence.Base.metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


class TestMigrations:
    async def test_head_matches_the_models(self, engine: AsyncEngine, database_url: str) -> None:
        assert await persistence.current_revision(database_url) == persistence.head_revision()
        assert await persistence.is_up_to_date(database_url)
        assert await _schema_diff(engine) == []

    async def test_up_down_up(self, empty_database_url: str) -> None:
        url = empty_database_url
        assert await persistence.current_revision(url) is None
        assert not await persistence.is_up_to_date(url)
        await persistence.upgrade_to_head(url)
        assert await persistence.is_up_to_date(url)
        await persistence.downgrade_to(url, "base")
        assert await persistence.current_revision(url) is None
        engine = persistence.create_engine(url)
        try:
            async with engine.connect() as conn:
                tables = await conn.scalars(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
                assert set(tables) <= {"alembic_version"}
        finally:
            await engine.dispose()
        await persistence.upgrade_to_head(url)
        assert await persistence.is_up_to_date(url)

    async def test_unreachable_database_is_a_migration_error(self) -> None:
        with pytest.raises(persistence.MigrationError):
            await persistence.current_revision("postgresql+asyncpg://nobody@127.0.0.1:1/none")

    async def test_first_release_database_upgrades_with_data(self, empty_database_url: str) -> None:
        url = empty_database_url
        await persistence.upgrade_to(url, FIRST_RELEASE)
        user_id, agent_id, flow_id, config_id = (uuid.uuid4() for _ in range(4))
        other_agent = uuid.uuid4()
        engine = persistence.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO users (id, username, password) VALUES (:id, 'ann', 'h')"),
                    {"id": user_id},
                )
                for aid, name, jwt in ((agent_id, "My Agent", "j1"), (other_agent, "b", "j2")):
                    await conn.execute(
                        text(
                            "INSERT INTO agents (id, name, description, jwt, creator_id,"
                            " input_parameters, is_active)"
                            " VALUES (:id, :name, 'd', :jwt, :u, '{}', true)"
                        ),
                        {"id": aid, "name": name, "jwt": jwt, "u": user_id},
                    )
                await conn.execute(
                    text(
                        "INSERT INTO agentworkflows (id, name, description, flow, creator_id)"
                        " VALUES (:id, 'f', 'd', CAST(:flow AS json), :u)"
                    ),
                    {
                        "id": flow_id,
                        "u": user_id,
                        "flow": f'[{{"agent_id": "{agent_id}"}}, {{"agent_id": "{other_agent}"}}]',
                    },
                )
                await conn.execute(
                    text(
                        "INSERT INTO modelconfigs (id, name, model, provider, system_prompt,"
                        " temperature, credentials, creator_id) VALUES (:id, 'gpt', 'gpt-4o',"
                        ' \'openai\', \'p\', 0.5, \'{"api_key": "enc", "x": "y"}\', :u)'
                    ),
                    {"id": config_id, "u": user_id},
                )
                await conn.execute(
                    text(
                        "INSERT INTO logs (session_id, request_id, agent_id, message, log_level)"
                        " VALUES (:s, :r, 'master_server_ml', 'hello', 'info')"
                    ),
                    {"s": uuid.uuid4(), "r": uuid.uuid4()},
                )

            await persistence.upgrade_to_head(url)
            assert await persistence.is_up_to_date(url)

            async with engine.connect() as conn:
                alias = await conn.scalar(
                    text("SELECT alias FROM agents WHERE id = :id"), {"id": agent_id}
                )
                assert alias.startswith("my_agent_") and len(alias) == len("my_agent_") + 6
                assert alias[-6:].isalpha() and alias[-6:].islower()
                flow = (
                    await conn.execute(
                        text("SELECT flow, is_active FROM agentworkflows WHERE id = :id"),
                        {"id": flow_id},
                    )
                ).one()
                assert flow.flow == [
                    {"id": str(agent_id), "type": "genai"},
                    {"id": str(other_agent), "type": "genai"},
                ]
                assert flow.is_active is False
                config = (
                    await conn.execute(
                        text(
                            "SELECT c.name, c.credentials, c.max_last_messages, p.name AS pname,"
                            " p.api_key, p.creator_id FROM modelconfigs c"
                            " JOIN modelproviders p ON p.id = c.provider_id"
                        )
                    )
                ).one()
                assert config.credentials == {"x": "y"}
                assert config.max_last_messages == 5
                assert (config.pname, config.api_key, config.creator_id) == (
                    "openai",
                    "enc",
                    user_id,
                )
                assert await conn.scalar(text("SELECT count(*) FROM logs")) == 1
                assert await conn.scalar(text("SELECT count(*) FROM userprofiles")) == 1

            # The same rows, read back the way the server reads them.
            sessionmaker = persistence.create_sessionmaker(engine)
            async with sessionmaker() as session:
                user = await persistence.UserRepository(session).get_by_username("ann")
                assert user is not None and user.id == user_id
                assert await persistence.ProfileRepository(session).get(user_id) is not None
                agents = persistence.AgentRepository(session)
                agent = await agents.get(agent_id, owner_id=user_id)
                assert agent is not None
                assert (agent.name, agent.alias, agent.jwt) == ("My Agent", alias, "j1")
                flow_row = await persistence.FlowRepository(session).get(flow_id, owner_id=user_id)
                assert flow_row is not None and len(flow_row.flow) == 2
                provider = await persistence.ProviderRepository(session).get_by_name(
                    "openai", owner_id=user_id
                )
                assert provider is not None and provider.api_key == "enc"
                configs = persistence.ConfigRepository(session)
                stored = await configs.get(config_id, owner_id=user_id)
                assert stored is not None
                assert (stored.name, stored.model, stored.credentials) == (
                    "gpt",
                    "gpt-4o",
                    {"x": "y"},
                )
                assert stored.provider_id == provider.id

            # And back down to the first release: the key returns to the config.
            await persistence.downgrade_to(url, FIRST_RELEASE)
            async with engine.connect() as conn:
                row = (
                    await conn.execute(text("SELECT provider, credentials FROM modelconfigs"))
                ).one()
                assert row.provider == "openai"
                assert row.credentials == {"x": "y", "api_key": "enc"}
                flow_json = await conn.scalar(text("SELECT flow FROM agentworkflows"))
                assert flow_json[0] == {"agent_id": str(agent_id)}
        finally:
            await engine.dispose()


CURRENT_RELEASE = "2b7f3c1d9e40"


class TestOriginalCurrentRelease:
    async def _stamp(self, url: str, revision: str) -> None:
        engine = persistence.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
        finally:
            await engine.dispose()

    async def test_a_database_at_the_originals_head_is_adopted_and_upgraded(
        self, empty_database_url: str
    ) -> None:
        url = empty_database_url
        await persistence.upgrade_to(url, CURRENT_RELEASE)
        user_id = uuid.uuid4()
        engine = persistence.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO users (id, username, password) VALUES (:id, 'kim', 'h')"),
                    {"id": user_id},
                )
            # What the original's current release leaves in alembic_version.
            await self._stamp(url, "8403bb364491")
            assert await persistence.current_revision(url) == "8403bb364491"
            assert not await persistence.is_up_to_date(url)

            await persistence.upgrade_to_head(url)

            assert await persistence.is_up_to_date(url)
            async with persistence.create_sessionmaker(engine)() as session:
                user = await persistence.UserRepository(session).get_by_username("kim")
                assert user is not None and user.id == user_id
        finally:
            await engine.dispose()

    async def test_the_originals_intermediate_revision_is_refused_clearly(
        self, empty_database_url: str
    ) -> None:
        await persistence.upgrade_to(empty_database_url, CURRENT_RELEASE)
        await self._stamp(empty_database_url, "046a06a0b0a4")
        with pytest.raises(persistence.MigrationError, match="8403bb364491 first"):
            await persistence.upgrade_to_head(empty_database_url)
