"""Agent flows: ordered lists of the caller's agents run as one tool."""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter, field_validator, model_validator
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError
from quart import Blueprint
from quart_schema import hide, tag_blueprint

from persistence import (
    AgentFlow,
    FlowListing,
    FlowListings,
    FlowRepository,
    NotFoundError,
    flow_item_ids,
    is_eligible,
    item_key,
    items_eligible,
    valid_item_keys,
)

from ..auth import Caller, requires_user
from ..common import (
    PageQuery,
    RenderCache,
    Timestamp,
    app_render_cache,
    catalogue_list_response,
    catalogue_transaction,
    empty_response,
    format_timestamp,
    json_array,
    json_response,
    read_driver,
    read_session,
)
from ..errors import APIError
from ..validation import responds, validate_body, validate_path, validate_query
from .agents import make_alias, normalise_name

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["blueprint"]

blueprint = Blueprint("flows", __name__)
tag_blueprint(blueprint, ["agentflows"])

ITEM_TYPES = ("genai", "mcp", "a2a")
NOT_ACTIVE = (
    "One or more agents were not registered previously or are not active: {ids}. "
    "Make sure agent was registered by you and is active before including it into the agent flow"
)


class FlowItem(BaseModel):
    id: str
    type: str


def _documented_as(**schema: Any) -> Callable[[JsonDict], None]:
    """Document a field that accepts anything as ``schema`` (no default shown)."""

    def update(field_schema: JsonDict) -> None:
        field_schema.pop("default", None)
        field_schema.update(schema)

    return update


class FlowItemBody(BaseModel):
    """A flow item: an agent's id and its type (``{"agent_id": …}`` reads as a genai item)."""

    # Any object passes the body's schema; what its id and type say is checked once the
    # whole body has passed (the 400s of _checked_items).
    id: Any = Field(None, json_schema_extra=_documented_as(type="string", format="uuid"))
    type: Any = Field(None, json_schema_extra=_documented_as(type="string", enum=[*ITEM_TYPES]))

    @model_validator(mode="before")
    @classmethod
    def _object(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            # As pydantic words it for a model item (bodies are read from attributes too).
            raise PydanticCustomError(
                "model_type",
                "Input should be a valid dictionary or instance of {class_name}",
                {"class_name": "FlowItem"},
            )
        if "id" not in raw and "agent_id" in raw:
            return {"id": raw["agent_id"], "type": raw.get("type", "genai")}
        return raw


class FlowBody(BaseModel):
    name: str
    description: str
    flow: list[FlowItemBody]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return normalise_name(value, "Flow")

    @field_validator("flow")
    @classmethod
    def _flow(cls, value: list[FlowItemBody]) -> list[FlowItemBody]:
        if len(value) <= 1:
            raise ValueError("Agentflow must contain more than 1 agent")
        return value


def _checked_item(item: FlowItemBody) -> FlowItem:
    try:
        item_id = str(UUID(item.id)) if isinstance(item.id, str) else None
    except ValueError:
        item_id = None
    if item_id is None:
        raise APIError(400, "Agent ID is not a valid UUID")
    if item.type not in ITEM_TYPES:
        raise APIError(400, "Agent type must be one of 'genai', 'mcp', or 'a2a'")
    return FlowItem(id=item_id, type=item.type)


def _checked_items(data: FlowBody) -> list[FlowItem]:
    """Apply the 400s of a body that passed its schema, in the contract's order.

    Each item's id and type, then the empty name, then the empty description; only the
    activity check (:func:`_check_active`) comes later. The 422s of the schema come
    first, so a body missing its name is a 422 whatever its items hold.

    Raises:
        APIError: 400 for the first check that fails.
    """
    items = [_checked_item(item) for item in data.flow]
    if data.name == "":
        raise APIError(400, "'name' parameter must not be empty string")
    if data.description == "":
        raise APIError(400, "'description' parameter must not be empty string")
    return items


class FlowRow(BaseModel):
    id: UUID
    name: str
    alias: str
    description: str
    flow: list[FlowItem]
    is_active: bool
    creator_id: UUID | None
    created_at: Timestamp
    updated_at: Timestamp


class FlowDTO(BaseModel):
    id: UUID
    name: str
    description: str
    flow: list[FlowItem]
    is_active: bool
    created_at: Timestamp
    updated_at: Timestamp


def _stored_items(raw: Any) -> list[FlowItem]:
    return [FlowItem(id=item_id, type=kind) for item_id, kind in flow_item_ids(raw)]


def _dto(flow: AgentFlow, active_ids: AbstractSet[str]) -> dict[str, Any]:
    """Render a flow as a JSON-ready :class:`FlowDTO`, its activity recomputed."""
    return _flow_dto(flow, flow_item_ids(flow.flow), is_active=is_eligible(flow, active_ids))


def _flow_dto(
    flow: AgentFlow | FlowListing, items: list[tuple[str, str]], *, is_active: bool
) -> dict[str, Any]:
    return {
        "id": str(flow.id),
        "name": flow.name,
        "description": flow.description,
        "flow": [{"id": item_id, "type": kind} for item_id, kind in items],
        "is_active": is_active,
        "created_at": format_timestamp(flow.created_at),
        "updated_at": format_timestamp(flow.updated_at),
    }


async def _active_ids(session: AsyncSession, caller: Caller) -> set[str]:
    return await valid_item_keys(session, caller.user_id)


def _row(flow: AgentFlow) -> FlowRow:
    return FlowRow(
        id=flow.id,
        name=flow.name,
        alias=flow.alias,
        description=flow.description,
        flow=_stored_items(flow.flow),
        is_active=flow.is_active,
        creator_id=flow.creator_id,
        created_at=flow.created_at,
        updated_at=flow.updated_at,
    )


async def _check_active(
    session: AsyncSession, caller: Caller, items: list[FlowItem]
) -> list[dict[str, str]]:
    """Refuse items that are not valid for the caller (active agents, tools of active MCP
    servers, active A2A agents); return the items to store.

    Raises:
        APIError: 400 naming the invalid ids.
    """
    valid = await valid_item_keys(session, caller.user_id)
    invalid = sorted({item.id for item in items if item_key(item.id, item.type) not in valid})
    if invalid:
        raise APIError(400, NOT_ACTIVE.format(ids=invalid))
    return [item.model_dump() for item in items]


@blueprint.get("/api/agentflows/")
@requires_user
@validate_query(PageQuery)
@responds(list[FlowDTO])
async def list_flows(query: PageQuery, caller: Caller) -> Any:
    """List the caller's flows, newest first, with their activity recomputed."""

    async def build() -> bytes:
        cache = app_render_cache("genai.listed_flows", _new_cache)
        async with read_driver() as driver:
            flows = FlowListings(driver)
            page = await flows.versions(caller.user_id, offset=query.offset, limit=query.limit)
            rendered = cache.get_all(page.versions)
            if rendered is None:
                listed = await flows.rows(caller.user_id, offset=query.offset, limit=query.limit)
                rendered = [
                    cache.get_or_render(flow.version, partial(_render_listed, flow))
                    for flow in listed
                ]
        active = set(page.active_agent_ids)
        return json_array(flow.body(active) for flow in rendered)

    key = (query.offset, query.limit)
    return await catalogue_list_response("genai.flow_lists", caller.user_id, key, build)


@dataclass(frozen=True, slots=True)
class _ListedFlow:
    """A listed flow serialised both ways, and the items its activity depends on."""

    items: list[tuple[str, str]]
    when_active: bytes
    when_inactive: bytes

    def body(self, active_agent_ids: AbstractSet[str]) -> bytes:
        """Return the serialised flow, active if all its items are active agents."""
        eligible = items_eligible(self.items, active_agent_ids)
        return self.when_active if eligible else self.when_inactive

    def size(self) -> int:
        """Count the bytes this holds, roughly."""
        return len(self.when_active) * 2 + len(self.items) * 100


def _render_listed(flow: FlowListing) -> _ListedFlow:
    """Serialise a listed flow as :func:`_dto` renders it."""
    items = flow_item_ids(json.loads(flow.flow_json))
    when_active = _DTO_JSON.dump_json(_flow_dto(flow, items, is_active=True))
    when_inactive = _DTO_JSON.dump_json(_flow_dto(flow, items, is_active=False))
    return _ListedFlow(items, when_active, when_inactive)


_DTO_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _new_cache() -> RenderCache[_ListedFlow]:
    # Listed flows by row version: otherwise every list decodes every flow's items and
    # reads and formats every column.
    return RenderCache(measure=_ListedFlow.size, max_bytes=16 * 2**20)


@blueprint.get("/api/agentflows/<agentflow_id>")
@requires_user
@validate_path(agentflow_id=UUID)
@responds(FlowDTO)
async def get_flow(agentflow_id: UUID, caller: Caller) -> Any:
    """Return one of the caller's flows."""
    async with read_session() as session:
        flow = await FlowRepository(session).get(agentflow_id, owner_id=caller.user_id)
        if flow is None:
            raise APIError(400, f"Flow with id '{agentflow_id}' does not exist")
        active = await _active_ids(session, caller)
    return json_response(_dto(flow, active), model=dict[str, Any])


@blueprint.post("/api/agentflows/register")
@requires_user
@validate_body(FlowBody)
@responds(FlowRow)
async def register_flow(data: FlowBody, caller: Caller) -> Any:
    """Create a flow of the caller's active agents."""
    checked = _checked_items(data)
    async with catalogue_transaction(caller.user_id) as session:
        items = await _check_active(session, caller, checked)
        flow = await FlowRepository(session).add(
            name=data.name,
            alias=make_alias(data.name),
            description=data.description,
            flow=items,
            creator_id=caller.user_id,
        )
    return json_response(_row(flow))


@blueprint.post("/api/agentflows/register-flow")
@hide
async def register_flow_first_release() -> Any:
    """Serve the first release's path of :func:`register_flow` (undocumented).

    A view of its own, so the document keeps one operation id per operation.
    """
    # The decorators of register_flow supply ``data`` and ``caller`` from the request.
    return await register_flow()  # type: ignore[call-arg]


@blueprint.patch("/api/agentflows/<agentflow_id>")
@requires_user
@validate_path(agentflow_id=UUID)
@validate_body(FlowBody)
@responds(FlowRow)
async def patch_flow(agentflow_id: UUID, data: FlowBody, caller: Caller) -> Any:
    """Replace a flow's name, description and items; the alias is regenerated."""
    checked = _checked_items(data)
    try:
        async with catalogue_transaction(caller.user_id) as session:
            items = await _check_active(session, caller, checked)
            flow = await FlowRepository(session).patch(
                agentflow_id,
                owner_id=caller.user_id,
                name=data.name,
                description=data.description,
                flow=items,
                alias=make_alias(data.name),
                is_active=True,
            )
    except NotFoundError:
        raise APIError(400, f"Agentflow with ID '{agentflow_id}' was not found") from None
    return json_response(_row(flow))


@blueprint.delete("/api/agentflows/<agentflow_id>")
@requires_user
@validate_path(agentflow_id=UUID)
@responds(None, 204)
async def delete_flow(agentflow_id: UUID, caller: Caller) -> Any:
    """Delete one of the caller's flows."""
    try:
        async with catalogue_transaction(caller.user_id) as session:
            await FlowRepository(session).delete(agentflow_id, owner_id=caller.user_id)
    except NotFoundError:
        raise APIError(400, f"agentflow {agentflow_id} was not found") from None
    return empty_response()
