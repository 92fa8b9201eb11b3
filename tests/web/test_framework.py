"""The app's framework: validation bodies, errors, CORS, slashes and documentation."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from quart import Blueprint, Quart

from persistence import create_engine, create_sessionmaker
from web import APIError, Settings, create_app
from web.auth import issue_user_token
from web.common import PageQuery, Timestamp, json_response
from web.validation import responds, validate_body, validate_form, validate_path, validate_query

probe = Blueprint("probe", __name__)


class Credentials(BaseModel):
    username: str
    password: str


class Stamp(BaseModel):
    at: Timestamp


@probe.post("/probe/body")
@validate_body(Credentials)
@responds(Credentials)
async def body_route(data: Credentials) -> Any:
    return json_response(data)


@probe.post("/probe/form")
@validate_form(Credentials)
async def form_route(data: Credentials) -> Any:
    return json_response(data)


@probe.get("/probe/items/<item_id>")
@validate_path(item_id=UUID)
@validate_query(PageQuery)
async def item_route(item_id: UUID, query: PageQuery) -> Any:
    return json_response({"id": str(item_id), "offset": query.offset, "limit": query.limit})


@probe.get("/probe/list/")
async def list_route() -> Any:
    return json_response([1, 2])


@probe.get("/probe/fail")
async def fail_route() -> Any:
    raise APIError.unauthorized("Not authenticated")


@probe.get("/probe/boom")
async def boom_route() -> Any:
    raise RuntimeError("a genuine fault")


@probe.get("/probe/stamp")
async def stamp_route() -> Any:
    from datetime import datetime

    return json_response(Stamp(at=datetime(2026, 11, 25, 12, 0, 20)))


@pytest.fixture(name="probe_app")
def _probe_app() -> Quart:
    app = create_app(Settings(), None)  # type: ignore[arg-type]
    app.register_blueprint(probe)
    return app


JSON = {"Content-Type": "application/json"}


class TestBodyValidation:
    async def test_missing_field(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/body", data=b'{"username":"u"}', headers=JSON
        )
        assert response.status_code == 422
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

    @pytest.mark.parametrize("raw", [b"", b"null"])
    async def test_missing_body(self, probe_app: Quart, raw: bytes) -> None:
        response = await probe_app.test_client().post("/probe/body", data=raw, headers=JSON)
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
        }

    async def test_malformed_json(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/body", data=b'{"username":', headers=JSON
        )
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "json_invalid",
                    "loc": ["body", 12],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": "Expecting value"},
                }
            ]
        }

    @pytest.mark.parametrize(
        "raw",
        [b"1" + b"0" * 5000, b"[" * 100_000, b"\xff\xfe\x00", b'{"username": 1e999999}'],
    )
    async def test_hostile_json_is_never_a_500(self, probe_app: Quart, raw: bytes) -> None:
        response = await probe_app.test_client().post("/probe/body", data=raw, headers=JSON)
        assert response.status_code == 422

    async def test_not_an_object(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post("/probe/body", data=b"[1]", headers=JSON)
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "model_attributes_type"
        assert error["loc"] == ["body"]

    async def test_wrong_type_has_no_url(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/body", json={"username": 5, "password": "p"}
        )
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "string_type",
                    "loc": ["body", "username"],
                    "msg": "Input should be a valid string",
                    "input": 5,
                }
            ]
        }

    async def test_nul_characters_are_refused(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/body", json={"username": "a\x00", "password": "p"}
        )
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "value_error",
                    "loc": ["body", "username"],
                    "msg": "Value error, Input must not contain NUL characters",
                    "input": "a\x00",
                    "ctx": {"error": {}},
                }
            ]
        }

    async def test_too_large(self, probe_app: Quart) -> None:
        big = b'{"username":"' + b"a" * (2 * 1024 * 1024) + b'","password":"p"}'
        response = await probe_app.test_client().post("/probe/body", data=big, headers=JSON)
        assert response.status_code == 413
        assert await response.get_json() == {"detail": "Request Entity Too Large"}

    async def test_valid(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/body", json={"username": "u", "password": "p", "extra": 1}
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Content-Length"] == str(len(await response.get_data()))
        assert await response.get_json() == {"username": "u", "password": "p"}


class TestFormValidation:
    async def test_json_body_reports_both_fields_missing(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/form", json={"username": "u", "password": "p"}
        )
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "username"],
                    "msg": "Field required",
                    "input": None,
                },
                {
                    "type": "missing",
                    "loc": ["body", "password"],
                    "msg": "Field required",
                    "input": None,
                },
            ]
        }

    async def test_urlencoded(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().post(
            "/probe/form", form={"username": "u", "password": "p"}
        )
        assert await response.get_json() == {"username": "u", "password": "p"}


class TestPathAndQuery:
    async def test_bad_uuid(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get("/probe/items/xyz")
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "uuid_parsing"
        assert error["loc"] == ["path", "item_id"]
        assert error["input"] == "xyz"
        assert error["msg"].startswith("Input should be a valid UUID, invalid character: ")
        assert set(error["ctx"]) == {"error"}

    async def test_bad_integers(self, probe_app: Quart) -> None:
        uid = "2b1c8f5e-0000-4000-8000-000000000000"
        response = await probe_app.test_client().get(f"/probe/items/{uid}?offset=abc&limit=1001")
        assert response.status_code == 422
        detail = (await response.get_json())["detail"]
        assert [(e["type"], e["loc"]) for e in detail] == [
            ("int_parsing", ["query", "offset"]),
            ("less_than_equal", ["query", "limit"]),
        ]
        assert detail[1]["ctx"] == {"le": 1000}

    async def test_huge_offset(self, probe_app: Quart) -> None:
        uid = "2b1c8f5e-0000-4000-8000-000000000000"
        response = await probe_app.test_client().get(f"/probe/items/{uid}?offset={10**30}")
        assert response.status_code == 422

    async def test_uppercase_uuid_is_normalised(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get(
            "/probe/items/2B1C8F5E-0000-4000-8000-000000000000?offset=3"
        )
        assert await response.get_json() == {
            "id": "2b1c8f5e-0000-4000-8000-000000000000",
            "offset": 3,
            "limit": 100,
        }


class TestErrors:
    async def test_not_found(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get("/nowhere")
        assert response.status_code == 404
        assert await response.get_json() == {"detail": "Not Found"}

    async def test_method_not_allowed(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().delete("/probe/body")
        assert response.status_code == 405
        assert await response.get_json() == {"detail": "Method Not Allowed"}

    async def test_api_error_with_bearer_challenge(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get("/probe/fail")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.get_json() == {"detail": "Not authenticated"}

    async def test_genuine_500_is_json_with_cors(self, probe_app: Quart) -> None:
        probe_app.testing = False
        response = await probe_app.test_client().get(
            "/probe/boom", headers={"Origin": "http://ui.example"}
        )
        assert response.status_code == 500
        assert await response.get_json() == {"detail": "Internal Server Error"}
        assert response.headers["Access-Control-Allow-Origin"] == "*"

    async def test_timestamps_have_six_fraction_digits(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get("/probe/stamp")
        assert await response.get_json() == {"at": "2026-11-25T12:00:20.000000"}


class TestCors:
    async def test_preflight_echoes_origin(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().options(
            "/probe/body",
            headers={
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "http://ui.example"
        assert response.headers["Access-Control-Allow-Methods"] == (
            "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
        )
        assert response.headers["Access-Control-Max-Age"] == "600"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert response.headers["Access-Control-Allow-Headers"] == "authorization,content-type"

    async def test_errors_carry_cors(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get(
            "/nowhere", headers={"Origin": "http://ui.example"}
        )
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"

    async def test_listed_origins_only(self) -> None:
        app = create_app(Settings(BACKEND_CORS_ORIGINS=["http://ok"]), None)  # type: ignore[arg-type]
        client = app.test_client()
        ok = await client.get("/openapi.json", headers={"Origin": "http://ok"})
        assert ok.headers["Access-Control-Allow-Origin"] == "http://ok"
        other = await client.get("/openapi.json", headers={"Origin": "http://evil"})
        assert "Access-Control-Allow-Origin" not in other.headers


class TestRoutingAndDocs:
    @pytest.mark.parametrize("path", ["/probe/list/", "/probe/list"])
    async def test_both_slash_forms_are_served(self, probe_app: Quart, path: str) -> None:
        response = await probe_app.test_client().get(path)
        assert response.status_code == 200
        assert await response.get_json() == [1, 2]

    async def test_root_redirects_to_docs(self, probe_app: Quart) -> None:
        response = await probe_app.test_client().get("/")
        assert response.status_code == 307
        assert response.headers["Location"] == "/docs"

    @pytest.mark.parametrize("path", ["/docs", "/redoc"])
    async def test_documentation_pages(self, probe_app: Quart, path: str) -> None:
        response = await probe_app.test_client().get(path)
        assert response.status_code == 200

    async def test_security_scheme_is_the_password_flow(self, probe_app: Quart) -> None:
        document = await (await probe_app.test_client().get("/openapi.json")).get_json()
        schemes = document["components"]["securitySchemes"]
        assert schemes["OAuth2PasswordBearer"] == {
            "type": "oauth2",
            "flows": {"password": {"tokenUrl": "/api/login/access-token", "scopes": {}}},
        }
        item = document["paths"]["/probe/items/{item_id}"]["get"]
        assert {
            "name": "item_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        } in item["parameters"]
        assert "422" in item["responses"]

    async def test_the_whole_document_is_valid_openapi(self) -> None:
        app = create_app(Settings(), None)  # type: ignore[arg-type]
        document = await (await app.test_client().get("/openapi.json")).get_json()
        assert "/api/agents/" in document["paths"]
        validate(document)


class TestDatabaseOutage:
    async def test_an_unreachable_database_answers_503_not_500(self, settings: Settings) -> None:
        engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
        try:
            app = create_app(settings, create_sessionmaker(engine))
            token = issue_user_token(uuid4(), settings)
            response = await app.test_client().get(
                "/api/agents/",
                headers={"Authorization": f"Bearer {token}", "Origin": "http://ui.example"},
            )
        finally:
            await engine.dispose()
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert await response.get_json() == {"detail": "Database unavailable. Try again later"}
        assert response.headers["Access-Control-Allow-Origin"]
