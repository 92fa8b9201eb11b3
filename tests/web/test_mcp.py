"""MCP servers over the API, against a real MCP server (streamable HTTP) on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.tools import ToolRefresherClient, tool_refresher_spec
from persistence import CatalogueVersions, listen_for_catalogue_changes
from runtime import open_actor_system
from tests.actors.tools.servers import (
    ThreadServer,
    free_port,
    json_answer,
    mcp_app,
    plain_app,
    redirect_to,
)
from web import Settings, create_app
from web.blueprints.integrations import outbound_policy
from web.services import AppServices

from .conftest import Agents, LoggedIn, Users

UNREACHABLE = (
    "Could not access MCP server on: {url}. Make sure your MCP server supports "
    "'streamable-http' protocol and is remotely accesible."
)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
ALIAS = re.compile(r"^(add|echo)_[a-z]{6}$")


@pytest.fixture(name="settings")
def _settings(tmp_path: Any) -> Settings:
    return Settings(BCRYPT_ROUNDS=4, FILES_DIR=tmp_path / "files", OUTBOUND_DEADLINE=3.0)


@pytest.fixture(name="mcp_server")
def _mcp_server() -> Iterator[ThreadServer]:
    server = ThreadServer(mcp_app).start()
    yield server
    server.stop()


def _url(server: ThreadServer) -> str:
    return f"{server.url}/mcp"


async def _add(client: QuartClient, user: LoggedIn, url: str) -> Any:
    return await client.post("/api/mcp/servers", json={"server_url": url}, headers=user.headers)


def _tool_schemas(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {tool["title"].rsplit("_", 1)[0]: tool for tool in tools}


class TestAdd:
    async def test_lists_and_stores_the_tools(
        self, client: QuartClient, users: Users, mcp_server: ThreadServer
    ) -> None:
        user = await users.login()
        response = await _add(client, user, _url(mcp_server))
        assert response.status_code == 200, await response.get_data()
        body = await response.get_json()
        assert set(body) == {"server_url", "mcp_tools", "is_active", "created_at", "updated_at"}
        assert body["server_url"] == _url(mcp_server)
        assert body["is_active"] is True
        assert STAMP.match(body["created_at"]) and body["created_at"] == body["updated_at"]
        tools = _tool_schemas(body["mcp_tools"])
        assert ALIAS.match(tools["add"]["title"]) and ALIAS.match(tools["echo"]["title"])
        assert tools["add"] == {
            "description": "Add two numbers.",
            "properties": {
                "a": {"title": "A", "type": "integer"},
                "b": {"title": "B", "type": "integer"},
            },
            "required": ["a", "b"],
            "title": tools["add"]["title"],
            "type": "object",
        }
        assert tools["echo"]["required"] == ["text"]

        [listed] = await (await client.get("/api/mcp/servers", headers=user.headers)).get_json()
        assert set(listed) == {
            "id",
            "name",
            "description",
            "server_url",
            "created_at",
            "updated_at",
            "creator_id",
            "is_active",
            "mcp_tools",
        }
        assert listed["creator_id"] == str(user.id)
        assert (listed["name"], listed["description"], listed["is_active"]) == (None, None, True)
        rows = {tool["name"]: tool for tool in listed["mcp_tools"]}
        assert set(rows["add"]) == {
            "id",
            "name",
            "alias",
            "description",
            "inputSchema",
            "annotations",
            "mcp_server_id",
            "created_at",
            "updated_at",
        }
        assert rows["add"]["alias"] == tools["add"]["title"]
        assert rows["add"]["annotations"] == {"readOnlyHint": True}
        assert rows["echo"]["annotations"] is None
        assert rows["add"]["mcp_server_id"] == listed["id"]
        assert rows["add"]["inputSchema"]["properties"]["a"] == {"title": "A", "type": "integer"}

        one = await client.get(f"/api/mcp/servers/{listed['id']}", headers=user.headers)
        assert await one.get_json() == listed

    async def test_adding_again_answers_the_stored_server(
        self, client: QuartClient, users: Users, mcp_server: ThreadServer
    ) -> None:
        user = await users.login()
        first = await (await _add(client, user, _url(mcp_server))).get_json()
        again = await (await _add(client, user, _url(mcp_server))).get_json()
        assert again["mcp_tools"] == first["mcp_tools"]
        assert (
            len(await (await client.get("/api/mcp/servers", headers=user.headers)).get_json()) == 1
        )

    async def test_a_bare_host_gets_a_slash_and_a_bad_url_is_a_422(
        self, client: QuartClient, users: Users
    ) -> None:
        user = await users.login()
        port = free_port()
        response = await _add(client, user, f"http://127.0.0.1:{port}")
        assert response.status_code == 400
        url = f"http://127.0.0.1:{port}/"
        assert await response.get_json() == {"detail": UNREACHABLE.format(url=url)}
        bad = await _add(client, user, "not a url")
        assert bad.status_code == 422
        assert (await bad.get_json())["detail"][0]["loc"] == ["body", "server_url"]


class TestRefused:
    async def _refused(self, client: QuartClient, user: LoggedIn, url: str) -> None:
        response = await _add(client, user, url)
        assert response.status_code == 400, await response.get_data()
        assert await response.get_json() == {"detail": UNREACHABLE.format(url=url)}
        assert await (await client.get("/api/mcp/servers", headers=user.headers)).get_json() == []

    async def test_unreachable(self, client: QuartClient, users: Users) -> None:
        await self._refused(client, await users.login(), f"http://127.0.0.1:{free_port()}/mcp")

    async def test_not_mcp(self, client: QuartClient, users: Users) -> None:
        server = ThreadServer(lambda: plain_app({"/mcp": json_answer({"hello": "world"})})).start()
        try:
            await self._refused(client, await users.login(), f"{server.url}/mcp")
        finally:
            server.stop()

    async def test_redirect_to_another_host(
        self, client: QuartClient, users: Users, mcp_server: ThreadServer
    ) -> None:
        # "localhost" is another origin than 127.0.0.1, though the same machine.
        target = f"http://localhost:{mcp_server.port}/mcp"
        server = ThreadServer(lambda: plain_app({"/mcp": redirect_to(target)})).start()
        try:
            await self._refused(client, await users.login(), f"{server.url}/mcp")
        finally:
            server.stop()

    async def test_a_hanging_server_is_answered_within_the_deadline(
        self, client: QuartClient, users: Users
    ) -> None:
        async def hang(request: Any) -> Any:
            await anyio.sleep(60)

        server = ThreadServer(lambda: plain_app({"/mcp": hang})).start()
        try:
            started = time.monotonic()
            await self._refused(client, await users.login(), f"{server.url}/mcp")
            assert time.monotonic() - started < 3.0 + 5  # the deadline, generously
        finally:
            server.stop()

    async def test_production_refuses_loopback(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Any,
        mcp_server: ThreadServer,
    ) -> None:
        settings = Settings(BCRYPT_ROUNDS=4, FILES_DIR=tmp_path / "files", ENVIRONMENT="production")
        client = create_app(settings, sessionmaker).test_client()
        user = await Users(client).login()
        await self._refused(client, user, _url(mcp_server))


class TestDelete:
    async def test_removes_the_server_and_its_tools(
        self,
        client: QuartClient,
        users: Users,
        mcp_server: ThreadServer,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        await _add(client, user, _url(mcp_server))
        [server] = await (await client.get("/api/mcp/servers", headers=user.headers)).get_json()
        gone = await client.delete(f"/api/mcp/servers/{server['id']}", headers=user.headers)
        assert gone.status_code == 204 and await gone.get_data() == b""
        assert await (await client.get("/api/mcp/servers", headers=user.headers)).get_json() == []
        async with sessionmaker() as session:
            from sqlalchemy import text

            assert (await session.execute(text("SELECT count(*) FROM mcptools"))).scalar() == 0
        again = await client.delete(f"/api/mcp/servers/{server['id']}", headers=user.headers)
        assert await again.get_json() == {
            "detail": f"MCP server with ID {server['id']} was not found"
        }
        missing = await client.get(f"/api/mcp/servers/{server['id']}", headers=user.headers)
        assert await missing.get_json() == {
            "detail": f"MCP server with id: {server['id']} was not found"
        }


class TestOwnership:
    async def test_another_user_never_sees_them(
        self, client: QuartClient, users: Users, mcp_server: ThreadServer
    ) -> None:
        alice, bob = await users.login(), await users.login()
        await _add(client, alice, _url(mcp_server))
        [server] = await (await client.get("/api/mcp/servers", headers=alice.headers)).get_json()
        assert await (await client.get("/api/mcp/servers", headers=bob.headers)).get_json() == []
        one = await client.get(f"/api/mcp/servers/{server['id']}", headers=bob.headers)
        assert one.status_code == 400
        gone = await client.delete(f"/api/mcp/servers/{server['id']}", headers=bob.headers)
        assert gone.status_code == 400
        active = await client.get("/api/agents/active?agent_type=all", headers=bob.headers)
        assert (await active.get_json())["active_connections"] == []
        # Bob adds the same URL: a server of his own.
        assert (await _add(client, bob, _url(mcp_server))).status_code == 200
        assert (
            len(await (await client.get("/api/mcp/servers", headers=alice.headers)).get_json()) == 1
        )


async def _active(client: QuartClient, user: LoggedIn, kind: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/agents/active?agent_type={kind}", headers=user.headers)
    assert response.status_code == 200, await response.get_data()
    body = await response.get_json()
    assert body["count_active_connections"] == len(body["active_connections"])
    items: list[dict[str, Any]] = body["active_connections"]
    return items


class TestActiveList:
    async def test_tools_by_name_and_by_alias(
        self, client: QuartClient, users: Users, mcp_server: ThreadServer
    ) -> None:
        user = await users.login()
        await _add(client, user, _url(mcp_server))
        [server] = await (await client.get("/api/mcp/servers", headers=user.headers)).get_json()
        rows = {tool["name"]: tool for tool in server["mcp_tools"]}
        by_name = {item["name"]: item for item in await _active(client, user, "mcp")}
        assert set(by_name) == {"add", "echo"}
        assert by_name["add"] == {
            "id": rows["add"]["id"],
            "name": "add",
            "type": "mcp",
            "url": _url(mcp_server),
            "agent_schema": {
                "description": "Add two numbers.",
                "properties": {
                    "a": {"title": "A", "type": "integer"},
                    "b": {"title": "B", "type": "integer"},
                },
                "required": ["a", "b"],
                "title": rows["add"]["alias"],
                "type": "object",
            },
            "created_at": server["created_at"],
            "updated_at": server["updated_at"],
        }
        by_alias = {item["name"]: item for item in await _active(client, user, "all")}
        assert set(by_alias) == {rows["add"]["alias"], rows["echo"]["alias"]}
        assert by_alias[rows["add"]["alias"]] == {**by_name["add"], "name": rows["add"]["alias"]}

    async def test_all_is_one_newest_first_page(
        self, client: QuartClient, users: Users, agents: Agents, mcp_server: ThreadServer
    ) -> None:
        user = await users.login()
        older = await agents.register(user, active=True)
        await _add(client, user, _url(mcp_server))
        newer = await agents.register(user, active=True)
        items = await _active(client, user, "all")
        assert [item["type"] for item in items] == ["genai", "mcp", "mcp", "genai"]
        assert (items[0]["id"], items[3]["id"]) == (newer["id"], older["id"])
        page = await client.get(
            "/api/agents/active?agent_type=all&offset=1&limit=2", headers=user.headers
        )
        assert [item["type"] for item in (await page.get_json())["active_connections"]] == [
            "mcp",
            "mcp",
        ]


@pytest.fixture(name="versions")
async def _versions(database_url: str) -> AsyncIterator[CatalogueVersions]:
    versions = CatalogueVersions()
    async with listen_for_catalogue_changes(database_url, versions):
        yield versions


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (boundedly) until ``check()``: a cached list follows a change once its
    notification arrives."""
    with anyio.fail_after(10):
        while not await check():  # noqa: ASYNC110 - the list is read over HTTP
            await anyio.sleep(0.02)


class TestFlowsWithTools:
    @pytest.fixture(name="app")
    def _app(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        versions: CatalogueVersions,
    ) -> Quart:
        # Lists cached as a server caches them, so the refresh's writes must reach them.
        services = AppServices(settings, sessionmaker, catalogue=versions)
        return create_app(settings, sessionmaker, services=services)

    async def test_a_flow_follows_its_server(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        server = ThreadServer(mcp_app).start()
        try:
            user = await users.login()
            await _add(client, user, _url(server))
            [row] = await (await client.get("/api/mcp/servers", headers=user.headers)).get_json()
            tool = next(t for t in row["mcp_tools"] if t["name"] == "add")
            agent = await agents.register(user, active=True)
            body = {
                "name": "Sum Then Tell",
                "description": "adds, then tells",
                "flow": [{"id": tool["id"], "type": "mcp"}, {"id": agent["id"], "type": "genai"}],
            }
            created = await client.post("/api/agentflows/register", json=body, headers=user.headers)
            assert created.status_code == 200, await created.get_data()
            flow = await created.get_json()
            [item] = [i for i in await _active(client, user, "all") if i["type"] == "flow"]
            assert item["agent_schema"]["title"] == flow["alias"]
            assert item["agent_schema"]["description"] == "adds, then tells"
            assert item["agent_schema"]["properties"] == tool["inputSchema"]["properties"]
            assert item["flow"] == [tool["id"], agent["id"]] and item["is_active"] is True

            policy = outbound_policy(settings)
            spec = tool_refresher_spec(sessionmaker, policy, interval=3600)
            async with open_actor_system(spec) as system:
                refresher = ToolRefresherClient(system.ref_of("tools"))
                await refresher.refresh()  # the round the start began
                server.stop()
                with anyio.fail_after(30):
                    await refresher.refresh()
                await _eventually(lambda: _is(_flows(client, user), [False]))
                assert (
                    await (await client.get("/api/mcp/servers", headers=user.headers)).get_json()
                    == []
                )
                await _eventually(lambda: _is(_types(client, user), ["genai"]))

                server.start()
                with anyio.fail_after(30):
                    await refresher.refresh()
                await _eventually(lambda: _is(_flows(client, user), [True]))
                await _eventually(
                    lambda: _is(_types(client, user), ["flow", "genai", "mcp", "mcp"])
                )
                stats = await refresher.statistics()
                assert stats.outcomes["mcp_unreachable"] == 1 and stats.outcomes["mcp_ok"] >= 2
        finally:
            server.stop()

    async def test_a_flow_refuses_another_users_tool(
        self, client: QuartClient, users: Users, agents: Agents, mcp_server: ThreadServer
    ) -> None:
        alice, bob = await users.login(), await users.login()
        await _add(client, alice, _url(mcp_server))
        [row] = await (await client.get("/api/mcp/servers", headers=alice.headers)).get_json()
        tool_id = row["mcp_tools"][0]["id"]
        agent = await agents.register(bob, active=True)
        body = {
            "name": "borrowed",
            "description": "d",
            "flow": [{"id": tool_id, "type": "mcp"}, {"id": agent["id"], "type": "genai"}],
        }
        response = await client.post("/api/agentflows/register", json=body, headers=bob.headers)
        assert response.status_code == 400
        assert tool_id in (await response.get_json())["detail"]


async def _flows(client: QuartClient, user: LoggedIn) -> list[bool]:
    listed = await (await client.get("/api/agentflows/", headers=user.headers)).get_json()
    return [flow["is_active"] for flow in listed]


async def _types(client: QuartClient, user: LoggedIn) -> list[str]:
    return sorted(item["type"] for item in await _active(client, user, "all"))


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


class TestDocument:
    async def test_each_operation_once_under_its_own_tag(self, client: QuartClient) -> None:
        paths = (await (await client.get("/openapi.json")).get_json())["paths"]
        expected = {
            "/api/mcp/servers": ("mcp", {"get", "post"}),
            "/api/mcp/servers/{server_id}": ("mcp", {"get", "delete"}),
            "/api/a2a/agents": ("a2a", {"get", "post"}),
            "/api/a2a/agents/{agent_id}": ("a2a", {"get", "delete"}),
        }
        for path, (tag, methods) in expected.items():
            operations = {m: op for m, op in paths[path].items() if m in methods}
            assert set(operations) == methods, path
            for operation in operations.values():
                assert operation["tags"] == [tag], (path, operation["tags"])
