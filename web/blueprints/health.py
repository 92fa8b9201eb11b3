"""Operator endpoints: the supervision tree, liveness, readiness and metrics.

``/health/live`` and ``/health/ready`` are open (orchestrators probe them from
outside). ``/health`` and ``/metrics`` show the inside, so they answer only on
loopback or with ``Authorization: Bearer <OPERATOR_TOKEN>``.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import anyio
from pydantic import BaseModel, Field
from quart import Blueprint, Response, request
from quart_schema import tag
from sqlalchemy import text

from ..common import json_response
from ..errors import APIError
from ..metrics import CONTENT_TYPE
from ..services import services
from ..validation import responds

__all__ = ["HEALTH_TIMEOUT", "blueprint", "readiness"]

blueprint = Blueprint("health", __name__)

TREE_FAILED = "a supervisor exceeded its restart intensity"

HEALTH_TIMEOUT = 2.0
"""Seconds a dependency check may take before it counts as down."""

# "<local>" is what the ASGI layer reports when the server gives no client address
# (a Unix socket or an in-process client): the caller is on this machine.
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "<local>"})


class Check(BaseModel):
    """One dependency's state."""

    ok: bool
    detail: str | None = None
    latency_ms: float | None = None


class Readiness(BaseModel):
    """Whether the server takes traffic, and why not."""

    ready: bool
    reason: str = Field(description="`ready`, or what is wrong")


class Liveness(BaseModel):
    """Whether the process is worth keeping: its event loop answers and its tree heals."""

    alive: bool
    reason: str = Field(description="`alive`, or why the process should be restarted")


class Health(BaseModel):
    """The whole picture for operators."""

    status: str = Field(
        description="`ok`, `degraded` (something restarting or backed up) or `failed`"
    )
    ready: bool
    reason: str
    draining: bool
    database: Check
    router: dict[str, Any]
    registry: dict[str, Any] = Field(
        description="Agent events waiting to be written, and for how long the registry "
        "has been waiting for the database (0 when it is not)"
    )
    tree: dict[str, Any] | None = Field(description="The supervision tree snapshot")
    dead_letters: list[dict[str, Any]]
    process: dict[str, Any] | None = Field(
        None,
        description="This server process: `id` (written on the chat turns it runs), "
        "`started_at` (its first heartbeat, UTC) and `owns_router` (the embedded router "
        "runs in it); null without a heartbeat",
    )
    peers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The other processes on the same database that beat within the peer "
        "timeout: `id`, `http_url` and `last_seen_seconds_ago`",
    )


async def _database() -> Check:
    started = time.perf_counter()
    try:
        with anyio.fail_after(HEALTH_TIMEOUT):
            async with services().sessionmaker() as session:
                await session.execute(text("SELECT 1"))
    except TimeoutError:
        return Check(ok=False, detail="no answer within 2 s")
    except Exception as exc:  # any failure of the probe means "down", with its reason
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return Check(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


async def _router() -> dict[str, Any]:
    probe = services().router_status
    if probe is None:
        return {"connected": False, "detail": "no router session"}
    try:
        with anyio.fail_after(HEALTH_TIMEOUT):
            return await probe()
    except TimeoutError:
        return {"connected": False, "detail": "router session did not answer within 2 s"}
    except Exception as exc:  # a dead or restarting session is "not connected"
        return {"connected": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}


async def _registry() -> dict[str, Any]:
    probe = services().registry_status
    if probe is None:
        return {}
    try:
        with anyio.fail_after(HEALTH_TIMEOUT):
            return await probe()
    except Exception as exc:  # a registry restarting has nothing to show
        return {"detail": f"{type(exc).__name__}: {exc}"[:300]}


async def _cluster() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Return this process's identity and its live peers, as the heartbeat last saw them."""
    cluster = services().cluster
    if cluster is None:
        return None, []
    try:
        with anyio.fail_after(HEALTH_TIMEOUT):
            shown: dict[str, Any] = (await cluster.status()).to_dict()
    except Exception as exc:  # a heartbeat restarting has no peers to show
        detail = f"{type(exc).__name__}: {exc}"[:300]
        return {"id": str(services().process_id), "detail": detail}, []
    return shown["process"], shown["peers"]


def _draining() -> bool:
    drain = services().drain
    return drain is not None and drain.draining


async def readiness() -> tuple[Readiness, Check, dict[str, Any]]:
    """Work out readiness; also return the database and router checks it used."""
    database, router = await _database(), await _router()
    system = services().system
    if _draining():
        reason = "draining: the server is stopping"
    elif system is None:
        reason = "the supervision tree is not running"
    elif system.failed:
        reason = TREE_FAILED
    elif not database.ok:
        reason = f"database unreachable: {database.detail}"
    elif not router.get("connected"):
        reason = f"router session not connected: {router.get('detail', 'restarting')}"
    else:
        return Readiness(ready=True, reason="ready"), database, router
    return Readiness(ready=False, reason=reason), database, router


def _require_operator() -> None:
    token = services().settings.OPERATOR_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return
    if request.remote_addr in _LOOPBACK:
        return
    raise APIError(403, "Health details are available on loopback or with the operator token")


@blueprint.get("/health")
@tag(["Health"])
@responds(Health)
async def health() -> Any:
    """The supervision tree, the database and the router connection.

    Open on loopback; elsewhere it needs `Authorization: Bearer <OPERATOR_TOKEN>`.
    """
    _require_operator()
    ready, database, router = await readiness()
    system = services().system
    tree = system.snapshot() if system is not None else None
    if system is None or system.failed:
        status = "failed"
    elif tree is not None and tree.degraded:
        status = "degraded"
    else:
        status = "ok" if ready.ready else "degraded"
    process, peers = await _cluster()
    letters = [
        {"actor": letter.actor, "reason": letter.reason, "message": letter.message}
        for letter in (system.recent_dead_letters() if system is not None else ())
    ]
    body = Health(
        status=status,
        ready=ready.ready,
        reason=ready.reason,
        draining=_draining(),
        database=database,
        router=router,
        registry=await _registry(),
        tree=tree.to_dict() if tree is not None else None,
        dead_letters=letters,
        process=process,
        peers=peers,
    )
    return json_response(body)


@blueprint.get("/health/live")
@tag(["Health"])
@responds(Liveness)
@responds(Liveness, 503)
async def live() -> Any:
    """200 while the process and its event loop respond; 503 once its supervision tree
    is past the root's restart intensity, which nothing inside the process repairs (the
    process then stops by itself and exits non-zero)."""
    system = services().system
    if system is not None and system.failed:
        return json_response(Liveness(alive=False, reason=TREE_FAILED), 503)
    return json_response(Liveness(alive=True, reason="alive"))


@blueprint.get("/health/ready")
@tag(["Health"])
@responds(Readiness)
@responds(Readiness, 503)
async def ready() -> Any:
    """200 when the database is reachable, the router session connected, no supervisor
    over its restart intensity and the server not stopping; 503 with the reason otherwise."""
    state, _, _ = await readiness()
    return json_response(state, 200 if state.ready else 503)


@blueprint.get("/metrics")
@tag(["Health"])
async def metrics() -> Any:
    """Prometheus metrics in the text exposition format.

    Open on loopback; elsewhere it needs `Authorization: Bearer <OPERATOR_TOKEN>`.
    """
    _require_operator()
    body = await services().metrics.render()
    return Response(body, status=200, content_type=CONTENT_TYPE)
