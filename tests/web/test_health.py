"""Operator endpoints: liveness, readiness and the supervision tree."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import pytest
from pydantic import ValidationError
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.chat import ChatDrain
from actors.cluster import HeartbeatClient, heartbeat_spec, process_identity
from persistence import ProcessIdentity, ProcessTable
from runtime import Actor, ActorSystem, ChildSpec, RestartIntensity, open_actor_system
from web import AppServices, Settings, create_app

REMOTE = {"client": ("10.1.2.3", 40000)}


class Idle(Actor[Any]):
    pass


class Crasher(Actor[Any]):
    async def handle(self, message: Any) -> None:
        raise RuntimeError(message)


@pytest.fixture(name="system")
async def _system() -> AsyncIterator[ActorSystem]:
    async with open_actor_system(ChildSpec("idle", Idle)) as system:
        yield system


@pytest.fixture(name="connected")
def _connected() -> dict[str, bool]:
    return {"connected": True}


@pytest.fixture(name="services")
def _services(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    system: ActorSystem,
    connected: dict[str, bool],
) -> AppServices:
    async def router_status() -> dict[str, Any]:
        return dict(connected)

    return AppServices(
        settings, sessionmaker, system=system, router_status=router_status, drain=ChatDrain()
    )


@pytest.fixture(name="app")
def _app(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], services: AppServices
) -> Quart:
    return create_app(settings, sessionmaker, services=services)


class TestLiveness:
    async def test_live_answers_without_anything_else(self, client: QuartClient) -> None:
        response = await client.get("/health/live", scope_base=REMOTE)
        assert response.status_code == 200
        assert await response.get_json() == {"alive": True, "reason": "alive"}


class TestReadiness:
    async def test_ready_when_everything_is_up(self, client: QuartClient) -> None:
        response = await client.get("/health/ready", scope_base=REMOTE)
        assert response.status_code == 200
        assert await response.get_json() == {"ready": True, "reason": "ready"}

    async def test_not_ready_while_the_router_session_is_down(
        self, client: QuartClient, connected: dict[str, bool]
    ) -> None:
        connected["connected"] = False
        response = await client.get("/health/ready")
        assert response.status_code == 503
        body = await response.get_json()
        assert body["ready"] is False
        assert body["reason"].startswith("router session not connected")

    async def test_not_ready_while_draining(
        self, client: QuartClient, services: AppServices
    ) -> None:
        assert services.drain is not None
        services.drain.begin()
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert (await response.get_json())["reason"] == "draining: the server is stopping"

    async def test_not_ready_without_a_tree(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        client = create_app(settings, sessionmaker).test_client()
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert (await response.get_json())["reason"] == "the supervision tree is not running"

    async def test_not_ready_when_the_root_is_over_its_restart_intensity(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with open_actor_system(
            ChildSpec("crasher", Crasher), intensity=RestartIntensity(max_restarts=0, period=60)
        ) as system:
            services = AppServices(settings, sessionmaker, system=system)
            client = create_app(settings, sessionmaker, services=services).test_client()
            await system.ref_of("crasher").tell("crash")
            with anyio.fail_after(5):
                while not system.failed:  # noqa: ASYNC110 - the tree has no event for this
                    await anyio.sleep(0.01)
            response = await client.get("/health/ready")
            assert response.status_code == 503
            assert (await response.get_json())["reason"] == (
                "a supervisor exceeded its restart intensity"
            )
            health = await (await client.get("/health")).get_json()
            assert health["status"] == "failed"
            crasher = health["tree"]["children"][0]
            assert crasher["last_failure"]["message"] == "crash"


class TestHealth:
    async def test_tree_on_loopback(self, client: QuartClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        body = await response.get_json()
        assert body["status"] == "ok"
        assert body["ready"] is True
        assert body["database"]["ok"] is True
        assert body["router"] == {"connected": True}
        tree = body["tree"]
        assert tree["state"] == "running"
        (child,) = tree["children"]
        assert child["name"] == "idle"
        assert child["state"] == "running"
        assert child["mailbox"]["capacity"] == 1000
        json.dumps(body)

    async def test_refused_from_elsewhere_without_the_operator_token(
        self, client: QuartClient
    ) -> None:
        response = await client.get("/health", scope_base=REMOTE)
        assert response.status_code == 403
        assert (await response.get_json())["detail"].startswith("Health details are available")

    async def test_open_from_elsewhere_with_the_operator_token(
        self, client: QuartClient, settings: Settings
    ) -> None:
        settings.OPERATOR_TOKEN = "op-secret"
        response = await client.get(
            "/health", scope_base=REMOTE, headers={"Authorization": "Bearer op-secret"}
        )
        assert response.status_code == 200
        wrong = await client.get(
            "/health", scope_base=REMOTE, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 403

    async def test_no_secret_in_the_body(self, client: QuartClient, settings: Settings) -> None:
        text = (await (await client.get("/health")).get_data()).decode()
        for secret in (settings.JWT_SECRET_KEY, settings.MASTER_BE_API_KEY, settings.SECRET_KEY):
            assert secret not in text

    async def test_documented_in_openapi(self, client: QuartClient) -> None:
        paths = (await (await client.get("/openapi.json")).get_json())["paths"]
        assert {"/health", "/health/live", "/health/ready"} <= set(paths)


class TestProcesses:
    async def test_identity_and_peers_from_the_heartbeat(
        self,
        client: QuartClient,
        services: AppServices,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        peer = ProcessIdentity(uuid.uuid4(), http_url="http://10.0.0.2:8000")
        await ProcessTable(sessionmaker).beat(peer)
        me = process_identity(
            services.process_id, http_url="http://127.0.0.1:8000", owns_router=True
        )
        spec = heartbeat_spec(sessionmaker, me, reply_for=_no_reply, interval=3600, timeout=9000)
        async with open_actor_system(spec) as heartbeat:
            services.cluster = HeartbeatClient(heartbeat.ref_of("heartbeat"))
            body = await (await client.get("/health")).get_json()
        process = body["process"]
        assert process["id"] == str(services.process_id)
        assert process["owns_router"] is True
        assert datetime.fromisoformat(process["started_at"])
        (seen,) = body["peers"]
        assert (seen["id"], seen["http_url"]) == (str(peer.id), "http://10.0.0.2:8000")
        assert 0 <= seen["last_seen_seconds_ago"] < 60
        # The rest keeps its shape.
        assert body["status"] == "ok" and body["tree"]["children"][0]["name"] == "idle"

    async def test_without_a_heartbeat(self, client: QuartClient) -> None:
        body = await (await client.get("/health")).get_json()
        assert (body["process"], body["peers"]) == (None, [])

    async def test_a_heartbeat_that_does_not_answer(
        self, client: QuartClient, services: AppServices
    ) -> None:
        class Down:
            async def status(self) -> Any:
                raise RuntimeError("restarting")

        services.cluster = Down()
        response = await client.get("/health")
        assert response.status_code == 200
        body = await response.get_json()
        assert body["process"] == {
            "id": str(services.process_id),
            "detail": "RuntimeError: restarting",
        }
        assert body["peers"] == []

    def test_peer_timeout_must_exceed_twice_the_interval(self) -> None:
        with pytest.raises(ValidationError, match="PEER_TIMEOUT_SECONDS"):
            Settings(HEARTBEAT_SECONDS=5, PEER_TIMEOUT_SECONDS=10)
        settings = Settings(HEARTBEAT_SECONDS=1, PEER_TIMEOUT_SECONDS=3)
        assert (settings.HEARTBEAT_SECONDS, settings.PEER_TIMEOUT_SECONDS) == (1, 3)
        assert (Settings().HEARTBEAT_SECONDS, Settings().PEER_TIMEOUT_SECONDS) == (2, 10)


def _no_reply(request_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
    return "", {}


class TestMetrics:
    async def test_prometheus_text_with_requests_and_actors(
        self, client: QuartClient, services: AppServices, system: ActorSystem
    ) -> None:
        services.metrics.watch_system(system)

        async def registry_stats() -> dict[str, float]:
            return {"written": 7, "buffered": 2}

        services.metrics.add_probe("log_rows", registry_stats, "Agent log rows")
        services.metrics.observe_turn("ok", 0.2)
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/api/agents/")).status_code == 401
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = (await response.get_data()).decode()
        assert (
            'genai_http_requests_total{method="GET",route="/health/live",status="200"} 1.0' in text
        )
        assert 'route="/api/agents/",status="401"' in text
        assert 'genai_actor_mailbox_depth{actor="idle"} 0.0' in text
        assert 'genai_actor_mailbox_capacity{actor="idle"} 1000.0' in text
        assert 'genai_actor_restarts_total{actor="idle"} 0.0' in text
        assert "genai_system_failed 0.0" in text
        assert 'genai_log_rows{stat="written"} 7.0' in text
        assert 'genai_chat_turns_total{outcome="ok"} 1.0' in text

    async def test_unmatched_paths_share_one_label(self, client: QuartClient) -> None:
        for path in ("/nope/1", "/nope/2"):
            assert (await client.get(path)).status_code == 404
        text = (await (await client.get("/metrics")).get_data()).decode()
        assert 'route="<unmatched>",status="404"} 2.0' in text

    async def test_refused_from_elsewhere_without_the_operator_token(
        self, client: QuartClient
    ) -> None:
        assert (await client.get("/metrics", scope_base=REMOTE)).status_code == 403
