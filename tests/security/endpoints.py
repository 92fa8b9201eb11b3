"""Every route of the app, with how it authenticates and how a stranger probes it.

One row per (method, rule) of ``app.url_map``. ``probe(victim, attacker)`` builds the
request the attacker sends at the victim's objects; ``status`` and ``body`` say what
the contract answers. ``own(owner)`` builds a request on the owner's own objects (used
to show that an agent token acts as its creator where agents are allowed). A new route
needs a row here: ``test_every_route_is_in_the_table`` fails until it has one.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from quart.datastructures import FileStorage

from .world import Owned


class Auth(enum.Enum):
    NONE = "none"
    USER = "U"
    USER_OR_AGENT = "U/A"
    SERVICE = "S"
    OPERATOR = "operator"  # loopback or OPERATOR_TOKEN
    WEBSOCKET = "ws"  # ?token= on the handshake


@dataclass(frozen=True)
class Probe:
    path: str
    query: dict[str, str] | None = None
    json: Any = None
    form: dict[str, str] | None = None
    files: dict[str, Any] | None = None

    def sent(self) -> str:
        """Everything the request carries, to tell echoed input from leaked data."""
        return repr((self.path, self.query, self.json, self.form))


Builder = Callable[[Owned, Owned], Probe]
Expected = Callable[[Owned], Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str
    auth: Auth
    probe: Builder | None = None
    status: int = 400
    body: Expected | None = None
    own: Callable[[Owned], Probe] | None = None
    own_status: int = 200
    exempt: str = ""
    """Why a route has no probe (it holds nothing of any user)."""
    creates: bool = False
    """The probe legitimately creates the stranger's own object: run it after the rest."""

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"

    def example_path(self) -> str:
        """The rule with every parameter filled with a fresh UUID."""
        path = self.rule
        while "<" in path:
            start, end = path.index("<"), path.index(">")
            path = path[:start] + str(uuid.uuid4()) + path[end + 1 :]
        return path


def _detail(text: Callable[[Owned], str]) -> Expected:
    return lambda victim: {"detail": text(victim)}


def _upload(victim: Owned, attacker: Owned) -> Probe:
    return Probe(
        "/files",
        form={"session_id": victim.session_id, "request_id": victim.request_id},
        files={"file": FileStorage(BytesIO(b"x"), filename="b.txt", content_type="text/plain")},
    )


def _flow_body(owner: Owned) -> dict[str, Any]:
    return {
        "name": "probe_flow",
        "description": "probe",
        "flow": [{"id": agent["id"], "type": "genai"} for agent in owner.agents],
    }


ENDPOINTS: tuple[Endpoint, ...] = (
    # -- users and profiles
    Endpoint(
        "POST",
        "/api/register",
        Auth.NONE,
        lambda v, a: Probe(
            "/api/register", json={"username": v.user.username, "password": "Other#1234"}
        ),
        400,
        _detail(lambda v: f"User '{v.user.username}' already exists"),
    ),
    Endpoint(
        "POST",
        "/api/login/access-token",
        Auth.NONE,
        lambda v, a: Probe(
            "/api/login/access-token", form={"username": v.user.username, "password": "Wrong#1234"}
        ),
        400,
        _detail(lambda v: "Incorrect username or password"),
    ),
    Endpoint(
        "POST",
        "/api/validate-token",
        Auth.NONE,
        lambda v, a: Probe("/api/validate-token", json={"token": v.agent_token}),
        400,
        _detail(lambda v: "Token is invalid or expired. Please log in again"),
    ),
    Endpoint(
        "GET",
        "/api/profiles/<user_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/profiles/{v.user.id}"),
        400,
        _detail(lambda v: f"Profile with of user with id '{v.user.id}' was not found"),
    ),
    Endpoint(
        "PATCH",
        "/api/profiles/<user_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/profiles/{v.user.id}", json={"first_name": "pwned"}),
        400,
        _detail(lambda v: f"Profile with of user with id '{v.user.id}' was not found"),
    ),
    # -- agents
    Endpoint(
        "GET",
        "/api/agents/",
        Auth.USER_OR_AGENT,
        lambda v, a: Probe("/api/agents/", query={"name": v.agents[0]["name"]}),
        200,
        lambda v: [],
        own=lambda o: Probe("/api/agents/"),
    ),
    Endpoint(
        "GET",
        "/api/agents/active",
        Auth.SERVICE,
        lambda v, a: Probe("/api/agents/active", query={"agent_type": "all"}),
        200,
        own=lambda o: Probe("/api/agents/active", query={"agent_type": "all"}),
    ),
    Endpoint(
        "GET",
        "/api/agents/<agent_id>",
        Auth.USER_OR_AGENT,
        lambda v, a: Probe(f"/api/agents/{v.agents[0]['id']}"),
        400,
        _detail(lambda v: f"Agent '{v.agents[0]['id']}' does not exist"),
        own=lambda o: Probe(f"/api/agents/{o.agents[0]['id']}"),
    ),
    Endpoint(
        "POST",
        "/api/agents/register",
        Auth.USER,
        lambda v, a: Probe(
            "/api/agents/register",
            json={"id": v.agents[0]["id"], "name": "x", "description": "x", "input_parameters": {}},
        ),
        400,
        _detail(lambda v: f"Agent with {v.agents[0]['id']} already exists"),
    ),
    Endpoint(
        "PATCH",
        "/api/agents/<agent_id>",
        Auth.USER,
        lambda v, a: Probe(
            f"/api/agents/{v.agents[0]['id']}",
            json={"name": "pwned", "description": "x", "input_parameters": {}},
        ),
        400,
        _detail(lambda v: f"Agent '{v.agents[0]['id']}' does not exist"),
    ),
    Endpoint(
        "DELETE",
        "/api/agents/<agent_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/agents/{v.agents[0]['id']}"),
        400,
        _detail(lambda v: f"Agent {v.agents[0]['id']} was not found"),
    ),
    # -- flows
    Endpoint("GET", "/api/agentflows/", Auth.USER, lambda v, a: Probe("/api/agentflows/"), 200),
    Endpoint(
        "GET",
        "/api/agentflows/<agentflow_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/agentflows/{v.flow['id']}"),
        400,
        _detail(lambda v: f"Flow with id '{v.flow['id']}' does not exist"),
    ),
    Endpoint(
        "POST",
        "/api/agentflows/register",
        Auth.USER,
        lambda v, a: Probe("/api/agentflows/register", json=_flow_body(v)),
        400,
    ),
    Endpoint(
        "POST",
        "/api/agentflows/register-flow",
        Auth.USER,
        lambda v, a: Probe("/api/agentflows/register-flow", json=_flow_body(v)),
        400,
    ),
    Endpoint(
        "PATCH",
        "/api/agentflows/<agentflow_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/agentflows/{v.flow['id']}", json=_flow_body(a)),
        400,
        _detail(lambda v: f"Agentflow with ID '{v.flow['id']}' was not found"),
    ),
    Endpoint(
        "DELETE",
        "/api/agentflows/<agentflow_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/agentflows/{v.flow['id']}"),
        400,
        _detail(lambda v: f"agentflow {v.flow['id']} was not found"),
    ),
    # -- MCP servers and A2A agents (the POSTs probe the URL, so they reach no one's rows)
    Endpoint("GET", "/api/mcp/servers", Auth.USER, lambda v, a: Probe("/api/mcp/servers"), 200),
    Endpoint(
        "POST",
        "/api/mcp/servers",
        Auth.USER,
        lambda v, a: Probe("/api/mcp/servers", json={"server_url": v.mcp_server_url}),
        400,
    ),
    Endpoint(
        "GET",
        "/api/mcp/servers/<server_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/mcp/servers/{v.mcp_server_id}"),
        400,
        _detail(lambda v: f"MCP server with id: {v.mcp_server_id} was not found"),
    ),
    Endpoint(
        "DELETE",
        "/api/mcp/servers/<server_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/mcp/servers/{v.mcp_server_id}"),
        400,
        _detail(lambda v: f"MCP server with ID {v.mcp_server_id} was not found"),
    ),
    Endpoint("GET", "/api/a2a/agents", Auth.USER, lambda v, a: Probe("/api/a2a/agents"), 200),
    Endpoint(
        "POST",
        "/api/a2a/agents",
        Auth.USER,
        lambda v, a: Probe("/api/a2a/agents", json={"server_url": "http://x.invalid"}),
        400,
    ),
    Endpoint(
        "GET",
        "/api/a2a/agents/<agent_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/a2a/agents/{v.a2a_card_id}"),
        400,
        _detail(lambda v: f"A2A agent with id: '{v.a2a_card_id}' does not exist "),
    ),
    Endpoint(
        "DELETE",
        "/api/a2a/agents/<agent_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/a2a/agents/{v.a2a_card_id}"),
        400,
        _detail(lambda v: f"MCP server with ID {v.a2a_card_id} was not found"),
    ),
    # -- providers and configs
    Endpoint(
        "POST",
        "/api/llm/model/provider",
        Auth.USER,
        # Provider names are per user: the stranger gets their own provider.
        lambda v, a: Probe(
            "/api/llm/model/provider", json={"name": v.provider_name, "api_key": "sk-other"}
        ),
        200,
        creates=True,
    ),
    Endpoint(
        "PATCH",
        "/api/llm/model/providers/<provider_name>",
        Auth.USER,
        lambda v, a: Probe(
            f"/api/llm/model/providers/{v.provider_name}",
            json={"api_key": "sk-pwned", "metadata": {}},
        ),
        400,
        _detail(lambda v: f"Provider named '{v.provider_name}' does not exist"),
    ),
    Endpoint(
        "GET",
        "/api/llm/model/configs",
        Auth.USER,
        lambda v, a: Probe("/api/llm/model/configs"),
        200,
    ),
    Endpoint(
        "GET",
        "/api/llm/model/config/<model_config_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/llm/model/config/{v.config_id}"),
        400,
        _detail(lambda v: f"Config with id '{v.config_id}' was not found"),
    ),
    Endpoint(
        "POST",
        "/api/llm/model/config",
        Auth.USER,
        lambda v, a: Probe(
            "/api/llm/model/config",
            json={"name": "probe-config", "model": "m", "provider": v.provider_name},
        ),
        400,
        _detail(lambda v: f"Provider named {v.provider_name} does not exist"),
    ),
    Endpoint(
        "PATCH",
        "/api/llm/model/config/<model_config_id>",
        Auth.USER,
        lambda v, a: Probe(
            f"/api/llm/model/config/{v.config_id}", json={"name": "pwned", "temperature": 0.1}
        ),
        400,
        _detail(lambda v: f"Config with id '{v.config_id}' was not found"),
    ),
    Endpoint(
        "DELETE",
        "/api/llm/model/config/<model_config_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/llm/model/config/{v.config_id}"),
        400,
        _detail(lambda v: f"Config with id '{v.config_id}' was not found"),
    ),
    Endpoint(
        "GET", "/api/llm/model/prompt", Auth.USER, lambda v, a: Probe("/api/llm/model/prompt"), 200
    ),
    # -- logs
    Endpoint(
        "GET",
        "/api/logs/list",
        Auth.USER,
        lambda v, a: Probe("/api/logs/list", query={"request_id": v.request_id}),
        200,
        lambda v: [],
    ),
    # -- chats
    Endpoint("GET", "/api/chats", Auth.USER, lambda v, a: Probe("/api/chats"), 200),
    Endpoint(
        "POST",
        "/api/chats",
        Auth.USER,
        lambda v, a: Probe("/api/chats", json={"session_id": v.session_id, "title": "x"}),
        400,
        _detail(lambda v: f"Chat with Session_id - '{v.session_id}' already exists"),
    ),
    Endpoint(
        "GET",
        "/api/chat",
        Auth.SERVICE,
        lambda v, a: Probe("/api/chat", query={"session_id": v.session_id}),
        200,
        lambda v: {"total_count": 0, "next_page": None, "previous_page": None, "items": []},
        own=lambda o: Probe("/api/chat", query={"session_id": o.session_id}),
    ),
    Endpoint(
        "PATCH",
        "/api/chat",
        Auth.USER,
        lambda v, a: Probe(
            "/api/chat", query={"session_id": v.session_id}, json={"title": "pwned"}
        ),
        400,
        _detail(lambda v: f"Chat with session_id {v.session_id} does not exist"),
    ),
    Endpoint(
        "DELETE",
        "/api/chat",
        Auth.USER,
        lambda v, a: Probe("/api/chat", query={"session_id": v.session_id}),
        400,
        _detail(lambda v: f"Chat with session_id: '{v.session_id}' does not exist"),
    ),
    Endpoint(
        "GET",
        "/api/chat/turns",
        Auth.USER,
        lambda v, a: Probe("/api/chat/turns", query={"session_id": v.session_id}),
        200,
        lambda v: {"turns": []},
    ),
    Endpoint(
        "GET",
        "/api/chat/turns/<request_id>",
        Auth.USER,
        lambda v, a: Probe(f"/api/chat/turns/{v.request_id}"),
        404,
        _detail(lambda v: "Turn not found"),
    ),
    Endpoint(
        "POST",
        "/api/chat/turns/<request_id>/cancel",
        Auth.USER,
        lambda v, a: Probe(f"/api/chat/turns/{v.request_id}/cancel"),
        404,
        _detail(lambda v: "Turn not found"),
    ),
    # -- files
    Endpoint(
        "POST",
        "/files",
        Auth.USER_OR_AGENT,
        _upload,
        201,
        own=lambda o: _upload(o, o),
        own_status=201,
        creates=True,
    ),
    Endpoint(
        "GET",
        "/files",
        Auth.SERVICE,
        lambda v, a: Probe("/files", query={"session_id": v.session_id}),
        200,
        lambda v: [],
        own=lambda o: Probe("/files", query={"session_id": o.session_id}),
    ),
    Endpoint(
        "GET",
        "/files/<file_id>",
        Auth.USER_OR_AGENT,
        lambda v, a: Probe(f"/files/{v.file_id}"),
        400,
        _detail(lambda v: f"File with id {v.file_id} does not exist"),
        own=lambda o: Probe(f"/files/{o.file_id}"),
    ),
    Endpoint(
        "GET",
        "/files/<file_id>/metadata",
        Auth.USER_OR_AGENT,
        lambda v, a: Probe(f"/files/{v.file_id}/metadata"),
        400,
        _detail(lambda v: f"File with id {v.file_id} does not exist"),
        own=lambda o: Probe(f"/files/{o.file_id}/metadata"),
    ),
    Endpoint(
        "GET",
        "/user/files/metadata",
        Auth.USER_OR_AGENT,
        lambda v, a: Probe("/user/files/metadata"),
        200,
        own=lambda o: Probe("/user/files/metadata"),
    ),
    # -- operators: no user's data may show there
    Endpoint("GET", "/health", Auth.OPERATOR, lambda v, a: Probe("/health"), 200),
    Endpoint("GET", "/health/live", Auth.NONE, lambda v, a: Probe("/health/live"), 200),
    Endpoint("GET", "/health/ready", Auth.NONE, lambda v, a: Probe("/health/ready"), 503),
    Endpoint("GET", "/metrics", Auth.OPERATOR, lambda v, a: Probe("/metrics"), 200),
    # -- the front-end socket: see test_authz_matrix.TestFrontendSocket and test_tokens
    Endpoint(
        "GET",
        "/frontend/ws",
        Auth.WEBSOCKET,
        exempt="a WebSocket: probed over a socket, not in the REST matrix",
    ),
    # -- nothing of any user's
    Endpoint("GET", "/", Auth.NONE, exempt="a redirect to /docs"),
    Endpoint("GET", "/docs", Auth.NONE, exempt="static Swagger UI"),
    Endpoint("GET", "/redoc", Auth.NONE, exempt="static ReDoc"),
    Endpoint(
        "GET",
        "/docs/assets/<any('swagger-ui', 'redoc'):bundle>/<path:name>",
        Auth.NONE,
        exempt="the docs pages' packaged scripts and styles",
    ),
    Endpoint("GET", "/openapi.json", Auth.NONE, exempt="the schema, the same for everyone"),
    Endpoint("GET", "/asyncapi.json", Auth.NONE, exempt="the event schema, the same for everyone"),
    Endpoint("GET", "/asyncapi", Auth.NONE, exempt="the event schema's page"),
    Endpoint("GET", "/static/<path:filename>", Auth.NONE, exempt="Quart's static folder"),
)

PROBED = tuple(
    sorted(
        (endpoint for endpoint in ENDPOINTS if endpoint.probe is not None),
        key=lambda endpoint: endpoint.creates,
    )
)
AUTHENTICATED = tuple(
    endpoint
    for endpoint in ENDPOINTS
    if endpoint.auth in {Auth.USER, Auth.USER_OR_AGENT, Auth.SERVICE}
)


def routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, rule) the app serves, without HEAD and OPTIONS."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }


async def send(client: Any, method: str, probe: Probe, headers: dict[str, str]) -> Any:
    """Send ``probe`` with the test client."""
    kwargs: dict[str, Any] = {"headers": headers}
    if probe.query is not None:
        kwargs["query_string"] = probe.query
    if probe.json is not None:
        kwargs["json"] = probe.json
    if probe.form is not None:
        kwargs["form"] = probe.form
    if probe.files is not None:
        kwargs["files"] = probe.files
    return await client.open(probe.path, method=method, **kwargs)


__all__ = [
    "AUTHENTICATED",
    "ENDPOINTS",
    "PROBED",
    "Auth",
    "Endpoint",
    "Probe",
    "routes",
    "send",
]
