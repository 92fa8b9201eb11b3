"""Registration, login, token validation and profiles."""

from __future__ import annotations

from uuid import UUID, uuid4

import jwt
import pytest
from quart.testing import QuartClient

from web import Settings
from web.auth import KnownUsers

from .conftest import PASSWORD, Agents, Users


class TestRegister:
    async def test_success_shape(self, client: QuartClient) -> None:
        response = await client.post(
            "/api/register", json={"username": "alice", "password": PASSWORD, "extra": 1}
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert set(body) == {"id", "username", "created_at", "updated_at"}
        assert body["username"] == "alice"
        assert UUID(body["id"])
        assert len(body["created_at"].split(".")[1]) == 6

    async def test_duplicate(self, client: QuartClient, users: Users) -> None:
        await users.register("bob")
        response = await client.post(
            "/api/register", json={"username": "bob", "password": PASSWORD}
        )
        assert response.status_code == 400
        assert await response.get_json() == {"detail": "User 'bob' already exists"}

    @pytest.mark.parametrize(
        ("password", "message"),
        [
            ("Ab#1", "Password must be longer than 8 symbols"),
            ("Abcdefg12", "Password must contain a special character"),
            ("abcdefg#1", "Password must contain an uppercase character"),
            ("ABCDEFG#1", "Password must contain an lowercase character"),
            ("Abcdefg#h", "Password must contain an numeric character"),
        ],
    )
    async def test_password_policy(self, client: QuartClient, password: str, message: str) -> None:
        response = await client.post("/api/register", json={"username": "c", "password": password})
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "value_error",
                    "loc": ["body", "password"],
                    "msg": f"Value error, {message}",
                    "input": password,
                    "ctx": {"error": {}},
                }
            ]
        }

    async def test_exactly_eight_and_any_special(self, client: QuartClient) -> None:
        response = await client.post(
            "/api/register", json={"username": "d", "password": "Abcde.1x"}
        )
        assert response.status_code == 200

    async def test_missing_field(self, client: QuartClient) -> None:
        response = await client.post("/api/register", json={"username": "u"})
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "password"],
                    "msg": "Field required",
                    "input": {"username": "u"},
                }
            ]
        }


class TestLogin:
    async def test_success(self, client: QuartClient, users: Users, settings: Settings) -> None:
        user = await users.register("erin")
        response = await client.post(
            "/api/login/access-token",
            form={"grant_type": "password", "username": "erin", "password": PASSWORD},
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert body["refresh_token"] is None and body["token_type"] == "Bearer"
        claims = jwt.decode(body["access_token"], settings.JWT_SECRET_KEY, algorithms=["HS256"])
        assert set(claims) == {"sub", "exp"} and claims["sub"] == user["id"]
        header = jwt.get_unverified_header(body["access_token"])
        assert header == {"alg": "HS256", "typ": "JWT"}

    @pytest.mark.parametrize(
        ("username", "password"), [("frank", "Wrong#123"), ("nobody", PASSWORD)]
    )
    async def test_wrong_credentials(
        self, client: QuartClient, users: Users, username: str, password: str
    ) -> None:
        await users.register("frank")
        response = await client.post(
            "/api/login/access-token", form={"username": username, "password": password}
        )
        assert response.status_code == 400
        assert await response.get_json() == {"detail": "Incorrect username or password"}

    async def test_json_body_is_422(self, client: QuartClient) -> None:
        response = await client.post(
            "/api/login/access-token", json={"username": "u", "password": "p"}
        )
        assert response.status_code == 422
        detail = (await response.get_json())["detail"]
        assert [(e["type"], e["loc"], e["input"]) for e in detail] == [
            ("missing", ["body", "username"], None),
            ("missing", ["body", "password"], None),
        ]

    async def test_bad_grant_type(self, client: QuartClient) -> None:
        response = await client.post(
            "/api/login/access-token",
            form={"grant_type": "client", "username": "u", "password": "p"},
        )
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "string_pattern_mismatch"
        assert error["loc"] == ["body", "grant_type"]

    async def test_password_beyond_72_bytes_is_ignored(self, client: QuartClient) -> None:
        long = "Aa#1" + "x" * 80
        await client.post("/api/register", json={"username": "g", "password": long})
        response = await client.post(
            "/api/login/access-token", form={"username": "g", "password": long[:72] + "different"}
        )
        assert response.status_code == 200


class TestValidateToken:
    async def test_valid(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.post("/api/validate-token", json={"token": user.token})
        assert await response.get_json() == {"detail": "Token is valid"}

    async def test_invalid(self, client: QuartClient) -> None:
        response = await client.post("/api/validate-token", json={"token": "nope"})
        assert response.status_code == 400
        assert await response.get_json() == {
            "detail": "Token is invalid or expired. Please log in again"
        }


class TestAuth:
    async def test_missing_header(self, client: QuartClient) -> None:
        response = await client.get("/api/agents/")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.get_json() == {"detail": "Not authenticated"}

    async def test_bad_token(self, client: QuartClient) -> None:
        response = await client.get("/api/agents/", headers={"Authorization": "Bearer x.y.z"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.get_json() == {
            "detail": "Token is not valid or expired. Please log in again"
        }

    async def test_expired_token(
        self, client: QuartClient, users: Users, settings: Settings
    ) -> None:
        user = await users.login()
        token = jwt.encode({"sub": str(user.id), "exp": 1}, settings.JWT_SECRET_KEY)
        response = await client.get("/api/agents/", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401

    def test_known_users_expire_and_are_bounded(self) -> None:
        now = [0.0]
        known = KnownUsers(ttl=10, size=2, clock=lambda: now[0])
        first, second, third = uuid4(), uuid4(), uuid4()
        known.add(first)
        assert first in known and second not in known
        now[0] = 10.5
        assert first not in known
        for user_id in (first, second, third):
            known.add(user_id)
        # The least recently confirmed is forgotten first.
        assert first not in known and second in known and third in known

    async def test_an_agent_token_dies_with_its_agent(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        agent = await agents.register(user)
        as_agent = {"Authorization": f"Bearer {agent['jwt']}"}
        assert (await client.get("/api/agents/", headers=as_agent)).status_code == 200
        deleted = await client.delete(f"/api/agents/{agent['id']}", headers=user.headers)
        assert deleted.status_code == 204
        assert (await client.get("/api/agents/", headers=as_agent)).status_code == 401
        assert (await client.get("/api/agents/", headers=user.headers)).status_code == 200


class TestProfiles:
    async def test_get_and_patch_own(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.get(f"/api/profiles/{user.id}", headers=user.headers)
        body = await response.get_json()
        assert body["user_id"] == str(user.id)
        assert body["first_name"] is None and body["last_name"] is None
        response = await client.patch(
            f"/api/profiles/{user.id}", json={"first_name": "Ann"}, headers=user.headers
        )
        assert (await response.get_json())["first_name"] == "Ann"
        assert (await response.get_json())["last_name"] is None

    async def test_other_users_profile(self, client: QuartClient, users: Users) -> None:
        a, b = await users.login(), await users.login()
        for method in (client.get, client.patch):
            kwargs = {"json": {}} if method == client.patch else {}
            response = await method(f"/api/profiles/{a.id}", headers=b.headers, **kwargs)
            assert response.status_code == 400
            assert await response.get_json() == {
                "detail": f"Profile with of user with id '{a.id}' was not found"
            }

    async def test_bad_uuid(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.get("/api/profiles/xyz", headers=user.headers)
        assert response.status_code == 422
        assert (await response.get_json())["detail"][0]["type"] == "uuid_parsing"
