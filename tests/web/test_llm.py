"""LLM providers, model configs and the default prompt."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import cryptocode
from quart.testing import QuartClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import ModelProvider
from web import Settings
from web.blueprints.llm import DEFAULT_SYSTEM_PROMPT, MASKED_API_KEY

from .conftest import LoggedIn, Users

TIMESTAMP_LEN = len("2026-11-25T12:00:20.524593")


async def add_provider(
    client: QuartClient, user: LoggedIn, name: str = "openai", api_key: str | None = "sk-1"
) -> Any:
    response = await client.post(
        "/api/llm/model/provider",
        json={"name": name, "api_key": api_key, "metadata": {"base_url": "http://x"}},
        headers=user.headers,
    )
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def add_config(
    client: QuartClient, user: LoggedIn, name: str = "gpt", provider: str = "openai", **extra: Any
) -> Any:
    response = await client.post(
        "/api/llm/model/config",
        json={"name": name, "model": "gpt-4o", "provider": provider, **extra},
        headers=user.headers,
    )
    assert response.status_code == 200, await response.get_data()
    [provider_dto] = await response.get_json()
    return next(config for config in provider_dto["configs"] if config["name"] == name)


async def stored_key(sessionmaker: async_sessionmaker[AsyncSession], provider_id: str) -> Any:
    async with sessionmaker() as session:
        return await session.scalar(
            select(ModelProvider.api_key).where(ModelProvider.id == UUID(provider_id))
        )


class TestProviders:
    async def test_post_success_and_encrypted_at_rest(
        self,
        client: QuartClient,
        users: Users,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        body = await add_provider(client, user, api_key="sk-very-secret")
        assert set(body) == {"id", "provider", "api_key", "metadata", "created_at", "updated_at"}
        assert body["provider"] == "openai"
        assert body["api_key"] == MASKED_API_KEY
        assert body["metadata"] == {"base_url": "http://x"}
        assert len(body["created_at"]) == TIMESTAMP_LEN
        raw = await stored_key(sessionmaker, body["id"])
        assert "sk-very-secret" not in raw
        assert raw.startswith("v1:dev:")
        assert settings.api_key_cipher().decrypt(raw) == "sk-very-secret"

    async def test_ollama_has_no_key_and_nulls_are_omitted(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        user = await users.login()
        body = await add_provider(client, user, name=" Ollama ", api_key="ignored")
        assert "api_key" not in body
        assert await stored_key(sessionmaker, body["id"]) is None

    async def test_api_key_required(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        for api_key in (None, ""):
            body = {"name": "openai", "api_key": api_key}
            response = await client.post("/api/llm/model/provider", json=body, headers=user.headers)
            assert response.status_code == 422
            assert await response.get_json() == {
                "detail": [
                    {
                        "type": "value_error",
                        "loc": ["body"],
                        "msg": "Value error, 'api_key' must be specified for this provider",
                        "input": body,
                        "ctx": {"error": {}},
                    }
                ]
            }

    async def test_missing_name(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.post(
            "/api/llm/model/provider", json={"api_key": "k"}, headers=user.headers
        )
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "name"],
                    "msg": "Field required",
                    "input": {"api_key": "k"},
                }
            ]
        }

    async def test_duplicate(self, client: QuartClient, users: Users) -> None:
        user, other = await users.login(), await users.login()
        await add_provider(client, user)
        await add_provider(client, other)  # names are per user
        response = await client.post(
            "/api/llm/model/provider",
            json={"name": "openai", "api_key": "k"},
            headers=user.headers,
        )
        assert response.status_code == 400
        assert await response.get_json() == {
            "detail": f"Creator_id, name - '{user.id}, openai' already exists"
        }

    async def test_patch_new_key_and_metadata_replaced(
        self,
        client: QuartClient,
        users: Users,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        created = await add_provider(client, user)
        response = await client.patch(
            "/api/llm/model/providers/openai", json={"api_key": "sk-2"}, headers=user.headers
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert set(body) == {"id", "provider", "api_key", "metadata", "created_at", "updated_at"}
        assert body["id"] == created["id"]
        assert body["api_key"] == MASKED_API_KEY
        assert body["metadata"] == {}
        raw = await stored_key(sessionmaker, created["id"])
        assert settings.api_key_cipher().decrypt(raw) == "sk-2"

    async def test_patch_mask_missing_or_null_keeps_key(
        self,
        client: QuartClient,
        users: Users,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        created = await add_provider(client, user, api_key="sk-keep")
        before = await stored_key(sessionmaker, created["id"])
        for body in ({"api_key": MASKED_API_KEY, "metadata": {"a": 1}}, {"api_key": None}, {}):
            response = await client.patch(
                "/api/llm/model/providers/openai", json=body, headers=user.headers
            )
            assert response.status_code == 200
            assert (await response.get_json())["metadata"] == body.get("metadata", {})
            assert await stored_key(sessionmaker, created["id"]) == before
        assert settings.api_key_cipher().decrypt(before) == "sk-keep"

    async def test_patch_ollama_nulls_key(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user, name="ollama", api_key=None)
        response = await client.patch(
            "/api/llm/model/providers/ollama",
            json={"api_key": "x", "metadata": {"base_url": "http://o"}},
            headers=user.headers,
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert body["api_key"] is None
        assert body["metadata"] == {"base_url": "http://o"}

    async def test_patch_unknown_or_foreign(self, client: QuartClient, users: Users) -> None:
        user, other = await users.login(), await users.login()
        await add_provider(client, other)
        for name in ("openai", "nothing", "a%00b"):
            response = await client.patch(
                f"/api/llm/model/providers/{name}", json={}, headers=user.headers
            )
            assert response.status_code == 400
            shown = name.replace("%00", "\x00")
            assert await response.get_json() == {
                "detail": f"Provider named '{shown}' does not exist"
            }

    async def test_auth(self, client: QuartClient) -> None:
        response = await client.post("/api/llm/model/provider", json={"name": "x"})
        assert response.status_code == 401
        assert await response.get_json() == {"detail": "Not authenticated"}


class TestConfigs:
    async def test_post_success_shape_and_defaults(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        response = await client.post(
            "/api/llm/model/config",
            json={
                "name": " gpt ",
                "model": "gpt-4o ",
                "provider": "openai",
                "temperature": "0.8",
                "credentials": {"endpoint": " e ", "n": 5},
            },
            headers=user.headers,
        )
        assert response.status_code == 200
        [provider] = await response.get_json()
        assert provider == {
            "provider": "openai",
            "api_key": MASKED_API_KEY,
            "metadata": {"base_url": "http://x"},
            "configs": [
                {
                    "id": provider["configs"][0]["id"],
                    "name": "gpt",
                    "model": "gpt-4o",
                    "system_prompt": DEFAULT_SYSTEM_PROMPT,
                    "user_prompt": "",
                    "temperature": 0.8,
                    "max_last_messages": 5,
                    "credentials": {"endpoint": "e"},
                }
            ],
        }

    async def test_post_errors(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        await add_config(client, user, name="gpt")
        base = {"name": "n", "model": "m", "provider": "openai"}
        response = await client.post(
            "/api/llm/model/config", json={**base, "provider": "nope"}, headers=user.headers
        )
        assert response.status_code == 400
        assert await response.get_json() == {"detail": "Provider named nope does not exist"}
        response = await client.post(
            "/api/llm/model/config", json={**base, "name": "gpt"}, headers=user.headers
        )
        assert response.status_code == 400
        assert await response.get_json() == {"detail": "Model config named 'gpt' already exists"}
        response = await client.post(
            "/api/llm/model/config", json={**base, "max_last_messages": 21}, headers=user.headers
        )
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "value_error",
                    "loc": ["body", "max_last_messages"],
                    "msg": "Value error, 'max_last_messages' value must be "
                    "0 ≤ max_last_messages ≤ 20",
                    "input": 21,
                    "ctx": {"error": {}},
                }
            ]
        }
        response = await client.post(
            "/api/llm/model/config", json={**base, "extra": 1}, headers=user.headers
        )
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "extra"],
                    "msg": "Extra inputs are not permitted",
                    "input": 1,
                }
            ]
        }

    async def test_same_name_in_another_provider_and_null_credentials(
        self, client: QuartClient, users: Users
    ) -> None:
        user = await users.login()
        await add_provider(client, user, name="openai")
        await add_provider(client, user, name="azure")
        await add_config(client, user, name="gpt", provider="openai")
        config = await add_config(
            client, user, name="gpt", provider="azure", credentials=None, system_prompt=None
        )
        assert config["credentials"] == {}
        assert config["system_prompt"] == DEFAULT_SYSTEM_PROMPT

    async def test_list_newest_provider_first_including_empty(
        self, client: QuartClient, users: Users
    ) -> None:
        user, other = await users.login(), await users.login()
        await add_provider(client, user, name="openai")
        await add_config(client, user, name="a")
        await add_config(client, user, name="b")
        await add_provider(client, user, name="ollama", api_key=None)
        await add_provider(client, other, name="mistral")
        response = await client.get("/api/llm/model/configs", headers=user.headers)
        assert response.status_code == 200
        body = await response.get_json()
        assert [p["provider"] for p in body] == ["ollama", "openai"]
        assert body[0] == {
            "provider": "ollama",
            "api_key": None,
            "metadata": {"base_url": "http://x"},
            "configs": [],
        }
        assert [c["name"] for c in body[1]["configs"]] == ["a", "b"]
        paged = await client.get("/api/llm/model/configs?offset=1&limit=1", headers=user.headers)
        assert [p["provider"] for p in await paged.get_json()] == ["openai"]
        bad = await client.get("/api/llm/model/configs?limit=-1", headers=user.headers)
        assert bad.status_code == 422

    async def test_get_one(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        config = await add_config(client, user, name="a")
        await add_config(client, user, name="b")
        response = await client.get(f"/api/llm/model/config/{config['id']}", headers=user.headers)
        assert response.status_code == 200
        assert await response.get_json() == {
            "provider": "openai",
            "api_key": MASKED_API_KEY,
            "metadata": {"base_url": "http://x"},
            "configs": [config],
        }

    async def test_patch_changes_only_what_is_sent(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        config = await add_config(
            client, user, system_prompt="be brief", user_prompt="u", credentials={"k": "v"}
        )
        response = await client.patch(
            f"/api/llm/model/config/{config['id']}",
            json={"temperature": "0.1", "name": " renamed "},
            headers=user.headers,
        )
        assert response.status_code == 200
        assert await response.get_json() == {
            **config,
            "name": "renamed",
            "temperature": 0.1,
        }

    async def test_patch_errors(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        config = await add_config(client, user, name="a")
        await add_config(client, user, name="b")
        url = f"/api/llm/model/config/{config['id']}"
        response = await client.patch(url, json={"provider": "openai"}, headers=user.headers)
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "extra_forbidden"
        assert error["loc"] == ["body", "provider"]
        response = await client.patch(url, json={"name": "b"}, headers=user.headers)
        assert response.status_code == 400
        assert await response.get_json() == {"detail": "Model config named 'b' already exists"}
        response = await client.patch(url, json={"max_last_messages": -1}, headers=user.headers)
        assert response.status_code == 422
        response = await client.patch("/api/llm/model/config/xyz", json={}, headers=user.headers)
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "uuid_parsing"
        assert error["loc"] == ["path", "model_config_id"]

    async def test_foreign_and_missing_configs(self, client: QuartClient, users: Users) -> None:
        user, other = await users.login(), await users.login()
        await add_provider(client, other)
        foreign = await add_config(client, other)
        for config_id in (foreign["id"], str(uuid4())):
            url = f"/api/llm/model/config/{config_id}"
            detail = {"detail": f"Config with id '{config_id}' was not found"}
            for response in (
                await client.get(url, headers=user.headers),
                await client.patch(url, json={"name": "x"}, headers=user.headers),
                await client.delete(url, headers=user.headers),
            ):
                assert response.status_code == 400
                assert await response.get_json() == detail
        listing = await client.get("/api/llm/model/configs", headers=user.headers)
        assert await listing.get_json() == []

    async def test_delete(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        config = await add_config(client, user)
        url = f"/api/llm/model/config/{config['id']}"
        response = await client.delete(url, headers=user.headers)
        assert response.status_code == 204
        assert await response.get_data() == b""
        assert (await client.get(url, headers=user.headers)).status_code == 400


class TestStoredKeys:
    async def test_original_format_key_is_read_masked(
        self,
        client: QuartClient,
        users: Users,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        created = await add_provider(client, user)
        config = await add_config(client, user)
        legacy = cryptocode.encrypt("sk-from-the-original", settings.SECRET_KEY)
        async with sessionmaker.begin() as session:
            await session.execute(
                update(ModelProvider)
                .where(ModelProvider.id == UUID(created["id"]))
                .values(api_key=legacy)
            )
        response = await client.get(f"/api/llm/model/config/{config['id']}", headers=user.headers)
        assert response.status_code == 200
        assert (await response.get_json())["api_key"] == MASKED_API_KEY
        listing = await client.get("/api/llm/model/configs", headers=user.headers)
        assert (await listing.get_json())[0]["api_key"] == MASKED_API_KEY
        assert "sk-from" not in (await listing.get_data()).decode()
        assert settings.api_key_cipher().decrypt(legacy) == "sk-from-the-original"
        # Echoing the mask keeps the original's ciphertext untouched.
        await client.patch(
            "/api/llm/model/providers/openai",
            json={"api_key": MASKED_API_KEY},
            headers=user.headers,
        )
        assert await stored_key(sessionmaker, created["id"]) == legacy


class TestPrompt:
    async def test_prompt(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.get(
            "/api/llm/model/prompt?provider=openai&model=x", headers=user.headers
        )
        assert response.status_code == 200
        assert await response.get_json() == {"system_prompt": DEFAULT_SYSTEM_PROMPT}
        assert DEFAULT_SYSTEM_PROMPT.strip() == DEFAULT_SYSTEM_PROMPT
        assert len(DEFAULT_SYSTEM_PROMPT) > 200

    async def test_prompt_needs_a_user(self, client: QuartClient) -> None:
        response = await client.get("/api/llm/model/prompt")
        assert response.status_code == 401
