"""Bad tokens are refused with the contract's status on every authenticated route.

Expired, wrongly signed, ``alg: none``, another algorithm, malformed, missing, of a user
who does not exist, of the wrong type (an agent token where a user token is required,
a user token where an agent token is), and the token of a deleted agent (Q21). REST
routes come from the table in :mod:`tests.security.endpoints`; the front-end socket
closes 1008 before accepting; the router's agent check refuses them too.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import jwt.warnings
import pytest
from quart.testing import QuartClient
from quart.testing.connections import WebsocketDisconnectError

from actors.registry import decode_agent_jwt
from web import Settings
from web.auth import AGENT_TOKEN_EXP, issue_agent_token, issue_user_token

from .endpoints import AUTHENTICATED, Auth, Endpoint, Probe, send
from .world import Owned, World

NOT_AUTHENTICATED = "Not authenticated"
INVALID = "Token is not valid or expired. Please log in again"
SERVICE_NOTHING = "You must provide either 'user_id' or your jwt token to continue."
SERVICE_BAD = "JWT token is invalid or expired"

OTHER_KEY = "a-signing-key-that-is-not-ours-at-all"
Forge = Callable[[Settings, Owned], str]


def _sign(claims: dict[str, Any], key: str, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        # Short keys for HS512 are the point of one case, not a mistake.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


def _user_claims(owner: Owned, **changes: Any) -> dict[str, Any]:
    return {"sub": str(owner.user.id), "exp": datetime.now(UTC) + timedelta(hours=1), **changes}


# Every one of these is a bearer token that must not authenticate anyone.
BAD_TOKENS: dict[str, Forge] = {
    "expired": lambda s, o: _sign(
        _user_claims(o, exp=datetime.now(UTC) - timedelta(seconds=5)), s.JWT_SECRET_KEY
    ),
    "wrong signature": lambda s, o: _sign(_user_claims(o), OTHER_KEY),
    "alg none": lambda s, o: _sign(_user_claims(o), "", "none"),
    # Alice's own claims with the header swapped for {"alg":"none"} and no signature.
    "alg none, by hand": lambda s, o: "eyJhbGciOiJub25lIn0." + o.user.token.split(".")[1] + ".",
    "another algorithm": lambda s, o: _sign(_user_claims(o), s.JWT_SECRET_KEY, "HS512"),
    "signed with the API-key secret": lambda s, o: _sign(_user_claims(o), s.SECRET_KEY),
    "malformed": lambda s, o: "not.a.jwt",
    "garbage": lambda s, o: "\u00e9\u00e9\u00e9",
    "truncated": lambda s, o: o.user.token[:-5],
    "no subject": lambda s, o: _sign({"exp": AGENT_TOKEN_EXP}, s.JWT_SECRET_KEY),
    "subject not a uuid": lambda s, o: _sign(_user_claims(o, sub="admin"), s.JWT_SECRET_KEY),
    "unknown user": lambda s, o: issue_user_token(uuid.uuid4(), s),
    "agent of an unknown user": lambda s, o: issue_agent_token(uuid.uuid4(), uuid.uuid4(), s),
    "agent claiming another creator": lambda s, o: issue_agent_token(
        uuid.UUID(o.agents[0]["id"]), uuid.uuid4(), s
    ),
}


def _expected(endpoint: Endpoint, header: str | None) -> tuple[int, str]:
    """What a route answers to ``Authorization: header`` that names nobody."""
    if endpoint.auth is Auth.SERVICE:
        return (400, SERVICE_NOTHING) if header is None else (400, SERVICE_BAD)
    if header is None or header.partition(" ")[0].lower() != "bearer":
        return 401, NOT_AUTHENTICATED
    return 401, INVALID


async def _refused(
    client: QuartClient, endpoint: Endpoint, header: str | None, subtests: Any, label: str
) -> None:
    with subtests.test(msg=f"{endpoint.id}: {label}"):
        headers = {} if header is None else {"Authorization": header}
        response = await send(client, endpoint.method, Probe(endpoint.example_path()), headers)
        status, detail = _expected(endpoint, header)
        assert response.status_code == status, await response.get_data()
        assert await response.get_json() == {"detail": detail}
        if status == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"


class TestRest:
    async def test_bad_tokens_are_refused_everywhere(
        self, client: QuartClient, world: World, settings: Settings, subtests: Any
    ) -> None:
        for name, forge in BAD_TOKENS.items():
            token = forge(settings, world.alice)
            for endpoint in AUTHENTICATED:
                await _refused(client, endpoint, f"Bearer {token}", subtests, name)

    async def test_missing_and_other_schemes_are_refused_everywhere(
        self, client: QuartClient, world: World, subtests: Any
    ) -> None:
        token = world.alice.user.token
        for label, header in {
            "missing": None,
            "empty": "",
            "no scheme": token,
            "basic": f"Basic {token}",
            "bearer without token": "Bearer",
        }.items():
            for endpoint in AUTHENTICATED:
                if endpoint.auth is Auth.SERVICE and header is not None and token in header:
                    # Service mode reads the last word of any header (case 4).
                    continue
                if endpoint.auth is Auth.SERVICE and header == "":
                    continue  # an empty header counts as present: checked below
                await _refused(client, endpoint, header, subtests, label)

    async def test_agent_token_where_a_user_token_is_required(
        self, client: QuartClient, world: World, subtests: Any
    ) -> None:
        for endpoint in AUTHENTICATED:
            if endpoint.auth is Auth.USER:
                await _refused(
                    client, endpoint, f"Bearer {world.alice.agent_token}", subtests, "agent token"
                )

    async def test_a_deleted_agents_token_is_refused(
        self, client: QuartClient, world: World, subtests: Any
    ) -> None:
        alice = world.alice
        token = alice.agents[1]["jwt"]
        ok = await client.get("/api/agents/", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        gone = await client.delete(
            f"/api/agents/{alice.agents[1]['id']}", headers=alice.user.headers
        )
        assert gone.status_code == 204
        for endpoint in AUTHENTICATED:
            await _refused(client, endpoint, f"Bearer {token}", subtests, "deleted agent")

    async def test_validate_token_accepts_only_live_user_tokens(
        self, client: QuartClient, world: World, settings: Settings
    ) -> None:
        alice = world.alice
        bad = [forge(settings, alice) for forge in BAD_TOKENS.values()] + [alice.agent_token]
        for token in bad:
            response = await client.post("/api/validate-token", json={"token": token})
            assert response.status_code == 400, token
        good = await client.post("/api/validate-token", json={"token": alice.user.token})
        assert await good.get_json() == {"detail": "Token is valid"}


class TestFrontendSocket:
    async def test_bad_tokens_close_1008_before_accepting(
        self, client: QuartClient, world: World, settings: Settings, subtests: Any
    ) -> None:
        tokens = {name: forge(settings, world.alice) for name, forge in BAD_TOKENS.items()}
        tokens |= {"agent token": world.alice.agent_token, "empty": ""}
        for name, token in tokens.items():
            with subtests.test(msg=name):
                async with client.websocket("/frontend/ws", query_string={"token": token}) as ws:
                    with pytest.raises(WebsocketDisconnectError) as info:
                        await ws.receive()
                assert info.value.args[0] == 1008
                assert not ws.accepted  # type: ignore[attr-defined]


class TestRouterAgentCheck:
    async def test_only_agent_tokens_pass(self, world: World, settings: Settings) -> None:
        alice = world.alice
        key = settings.JWT_SECRET_KEY
        claims = decode_agent_jwt(alice.agent_token, key)
        assert claims is not None and str(claims.agent_id) == alice.agents[0]["id"]
        assert decode_agent_jwt(alice.user.token, key) is None  # a user token is not an agent's
        for name, forge in BAD_TOKENS.items():
            if name.startswith("agent"):
                continue  # well-formed agent tokens: their ids are checked against the database
            assert decode_agent_jwt(forge(settings, alice), key) is None, name
        forged = _sign(
            {"sub": alice.agents[0]["id"], "exp": AGENT_TOKEN_EXP, "user_id": str(alice.user.id)},
            OTHER_KEY,
        )
        assert decode_agent_jwt(forged, key) is None
