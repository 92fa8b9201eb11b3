"""Owner scoping on every route: a stranger gets the contract's not-found, never the data.

Driven by the table in :mod:`tests.security.endpoints`: for every route and every
object of Alice's, Bob (with his user token, and with his agent token where agents are
allowed) gets the contract's answer; nothing of Alice's shows in the body; Alice's rows
in the database are unchanged afterwards. Lists only ever hold the caller's own objects,
and agent tokens reach only the U/A and S routes.
"""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .endpoints import AUTHENTICATED, ENDPOINTS, PROBED, Auth, Endpoint, Probe, routes, send
from .world import Owned, World, dump, rows_of

INVALID_TOKEN = "Token is not valid or expired. Please log in again"


async def _text(response: Any) -> str:
    return (await response.get_data()).decode("utf-8", "replace")


def _leaks(text: str, owner: Owned, probe: Probe) -> list[str]:
    """The owner's strings in ``text`` that the request itself did not carry."""
    sent = probe.sent()
    return sorted(mark for mark in owner.marks() if mark and mark not in sent and mark in text)


class TestTable:
    async def test_every_route_is_in_the_table(self, app: Quart) -> None:
        table = {(endpoint.method, endpoint.rule) for endpoint in ENDPOINTS}
        assert len(table) == len(ENDPOINTS), "a route is listed twice"
        assert routes(app) - table == set(), "add these routes to tests/security/endpoints.py"
        assert table - routes(app) == set(), "these rows name routes the app does not serve"

    async def test_unprobed_routes_say_why(self) -> None:
        for endpoint in ENDPOINTS:
            assert (endpoint.probe is None) == bool(endpoint.exempt), endpoint.id


class TestStrangers:
    async def test_another_users_objects_are_not_found_and_stay_unchanged(
        self,
        client: QuartClient,
        world: World,
        sessionmaker: async_sessionmaker[AsyncSession],
        subtests: pytest.Subtests,
    ) -> None:
        # One world for the whole table: building it per route costs a second each.
        alice, bob = world.alice, world.bob
        for endpoint, credential in CASES:
            with subtests.test(msg=f"{endpoint.id} as {credential}"):
                await _probe_as_stranger(client, sessionmaker, endpoint, credential, alice, bob)


CASES = [
    (endpoint, credential)
    for endpoint in PROBED
    for credential in ("user", "agent")
    if credential == "user" or endpoint.auth in {Auth.USER_OR_AGENT, Auth.SERVICE}
]


async def _probe_as_stranger(
    client: QuartClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    endpoint: Endpoint,
    credential: str,
    alice: Owned,
    bob: Owned,
) -> None:
    assert endpoint.probe is not None
    probe = endpoint.probe(alice, bob)
    headers = bob.agent_headers if credential == "agent" else bob.user.headers
    before = await dump(sessionmaker)

    response = await send(client, endpoint.method, probe, headers)

    text = await _text(response)
    assert response.status_code == endpoint.status, text
    if endpoint.body is not None:
        assert await response.get_json() == endpoint.body(alice)
    assert _leaks(text, alice, probe) == []
    after = await dump(sessionmaker)
    alices_rows = rows_of(before, alice)
    assert {key: rows_of(after, alice).get(key) for key in alices_rows} == alices_rows
    for key, row in rows_of(after, alice).items():
        if key not in alices_rows:
            # A new row that mentions Alice's ids (Bob's upload into her session id)
            # must be Bob's own.
            assert str(bob.user.id) in row, (key, row)


LISTS: list[tuple[str, dict[str, str] | None, Any]] = [
    ("/api/agents/", None, lambda o: o.agents[0]["id"]),
    ("/api/agents/active", {"agent_type": "all"}, lambda o: o.agents[0]["id"]),
    ("/api/agentflows/", None, lambda o: str(o.flow["id"])),
    ("/api/llm/model/configs", None, lambda o: o.config_id),
    ("/api/chats", None, lambda o: o.session_id),
    ("/user/files/metadata", None, lambda o: o.file_id),
    ("/files", {"session_id": "own"}, lambda o: o.file_id),
    ("/api/logs/list", {"session_id": "own"}, lambda o: o.log_message),
    ("/api/chat", {"session_id": "own"}, lambda o: o.message),
]


class TestLists:
    async def test_lists_hold_only_the_callers_objects(
        self, client: QuartClient, world: World, subtests: pytest.Subtests
    ) -> None:
        for path, query, own_mark in LISTS:
            for me, other in ((world.alice, world.bob), (world.bob, world.alice)):
                with subtests.test(msg=f"{path} as {me.user.username}"):
                    args = {k: me.session_id if v == "own" else v for k, v in (query or {}).items()}
                    response = await client.get(path, query_string=args, headers=me.user.headers)
                    text = await _text(response)
                    assert response.status_code == 200, text
                    assert own_mark(me) in text
                    assert _leaks(text, other, Probe(path, args)) == []


class TestAgentTokens:
    async def test_agent_tokens_reach_only_agent_routes(
        self, client: QuartClient, world: World, subtests: pytest.Subtests
    ) -> None:
        for endpoint in AUTHENTICATED:
            with subtests.test(msg=endpoint.id):
                await _probe_as_agent(client, endpoint, world.alice)


async def _probe_as_agent(client: QuartClient, endpoint: Endpoint, alice: Owned) -> None:
    if endpoint.auth is Auth.USER:
        response = await send(
            client, endpoint.method, Probe(endpoint.example_path()), alice.agent_headers
        )
        assert response.status_code == 401
        assert await response.get_json() == {"detail": INVALID_TOKEN}
        assert response.headers["WWW-Authenticate"] == "Bearer"
        return
    # U/A and S: the agent acts as its creator, exactly as her user token would.
    assert endpoint.own is not None, f"{endpoint.id} needs an own= probe"
    as_agent = await send(client, endpoint.method, endpoint.own(alice), alice.agent_headers)
    as_user = await send(client, endpoint.method, endpoint.own(alice), alice.user.headers)
    assert as_agent.status_code == as_user.status_code == endpoint.own_status
    if endpoint.method == "GET":
        assert await as_agent.get_data() == await as_user.get_data()
