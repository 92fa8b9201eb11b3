"""Agent logs of one request or one session, scoped to the user they belong to."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import tag_blueprint

from persistence import LogEntry, LogRepository

from ..auth import Caller, requires_user
from ..common import Timestamp, json_response
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_query

__all__ = ["LogDTO", "blueprint"]

blueprint = Blueprint("logs", __name__)
tag_blueprint(blueprint, ["logs"])


class LogQuery(BaseModel):
    request_id: UUID | None = None
    session_id: UUID | None = None


class LogDTO(BaseModel):
    session_id: UUID
    request_id: UUID
    agent_id: str | None
    log_level: str
    message: str
    creator_id: UUID | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, entry: LogEntry) -> LogDTO:
        return cls(
            session_id=entry.session_id,
            request_id=entry.request_id,
            agent_id=entry.agent_id,
            log_level=entry.log_level,
            message=entry.message,
            creator_id=entry.creator_id,
            created_at=entry.created_at,
            updated_at=entry.updated_at,
        )


@blueprint.get("/api/logs/list")
@requires_user
@validate_query(LogQuery)
@responds(list[LogDTO])
async def list_logs(query: LogQuery, caller: Caller) -> Any:
    """List the caller's logs of one request or one session, oldest first."""
    if query.request_id is not None and query.session_id is not None:
        raise APIError(400, "Only 'request_id' or 'session_id' could be provided but not both")
    async with services().sessionmaker() as session:
        logs = LogRepository(session)
        if query.request_id is not None:
            entries = await logs.list_for_request(query.request_id, owner_id=caller.user_id)
        elif query.session_id is not None:
            entries = await logs.list_for_session(query.session_id, owner_id=caller.user_id)
        else:
            raise APIError(400, "Either 'request_id' or 'session_id' must be provided")
    return json_response([LogDTO.of(entry) for entry in entries], model=list[LogDTO])
