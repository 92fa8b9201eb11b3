"""Chat turns: how each message's turn went, its events, and cancelling one.

Owner-scoped as the rest of ``/api``: another user's turn is answered as an unknown one
(404). A cancel goes to the live chat actor holding the turn when this process has one;
to the live process that runs it when that is another (it answers it as cancelled, a
moment after the 202); otherwise (its process stopped, or it runs nowhere) the turn is
finished here, with the same stored reply the chat actor would send.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import tag_blueprint

from actors.chat import CANCELLED, stored_error
from persistence import TurnEventRecord, TurnHistory, TurnRecord, TurnStatus

from ..auth import Caller, requires_user
from ..common import Timestamp, json_response
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_path, validate_query

__all__ = ["EventDTO", "TurnDTO", "blueprint"]

blueprint = Blueprint("turns", __name__)
tag_blueprint(blueprint, ["chats"])

"""The text of a cancelled turn's reply."""

# PostgreSQL's OFFSET and the event numbers are bigints.
_MAX_BIGINT = 2**63 - 1


class TurnListQuery(BaseModel):
    session_id: UUID
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0, le=_MAX_BIGINT)


class EventQuery(BaseModel):
    after_seq: int = Field(0, ge=0, le=_MAX_BIGINT)


class TurnDTO(BaseModel):
    request_id: UUID
    session_id: UUID
    status: str
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, turn: TurnRecord) -> TurnDTO:
        return cls(
            request_id=turn.request_id,
            session_id=turn.session_id,
            status=turn.status.value,
            created_at=turn.created_at,
            started_at=turn.started_at,
            finished_at=turn.finished_at,
        )


class EventDTO(BaseModel):
    seq: int
    request_id: UUID
    kind: str
    at: Timestamp
    data: dict[str, Any]

    @classmethod
    def of(cls, event: TurnEventRecord) -> EventDTO:
        return cls(
            seq=event.seq,
            request_id=event.request_id,
            kind=event.kind,
            at=event.created_at,
            data=dict(event.data),
        )


class TurnList(BaseModel):
    turns: list[TurnDTO]


class TurnWithEvents(TurnDTO):
    events: list[EventDTO]


def _history() -> TurnHistory:
    return TurnHistory(services().sessionmaker)


@blueprint.get("/api/chat/turns")
@requires_user
@validate_query(TurnListQuery)
@responds(TurnList)
async def list_turns(query: TurnListQuery, caller: Caller) -> Any:
    """List the caller's turns of one conversation, newest first."""
    turns = await _history().list_turns(
        caller.user_id, query.session_id, limit=query.limit, offset=query.offset
    )
    return json_response(TurnList(turns=[TurnDTO.of(turn) for turn in turns]))


@blueprint.get("/api/chat/turns/<request_id>")
@requires_user
@validate_path(request_id=UUID)
@validate_query(EventQuery)
@responds(TurnWithEvents)
async def get_turn(request_id: UUID, query: EventQuery, caller: Caller) -> Any:
    """Return one of the caller's turns with its events (after ``after_seq``), in order."""
    history = _history()
    turn = await history.get_turn(caller.user_id, request_id)
    if turn is None:
        raise APIError(404, "Turn not found")
    events = await history.events(caller.user_id, request_id, after_seq=query.after_seq)
    out = TurnWithEvents(
        **TurnDTO.of(turn).model_dump(), events=[EventDTO.of(event) for event in events]
    )
    return json_response(out)


@blueprint.post("/api/chat/turns/<request_id>/cancel")
@requires_user
@validate_path(request_id=UUID)
@responds(TurnDTO, 202)
async def cancel_turn(request_id: UUID, caller: Caller) -> Any:
    """Cancel one of the caller's queued or running turns; it is answered once, cancelled."""
    history = _history()
    turn = await history.get_turn(caller.user_id, request_id)
    if turn is None:
        raise APIError(404, "Turn not found")
    if turn.is_final:
        raise APIError(409, "Turn is already finished")
    chats = services().chats
    if chats is not None and await chats.cancel_turn(caller.user_id, turn.session_id, request_id):
        # The chat actor answers the turn; it may not have finished it yet.
        turn = await history.get_turn(caller.user_id, request_id) or turn
    elif await history.ask_to_cancel(
        request_id,
        process_id=services().process_id,
        peer_timeout=services().settings.PEER_TIMEOUT_SECONDS,
    ):
        pass  # the process that runs it answers it as cancelled
    else:
        finished = await history.finish_orphan(
            request_id, TurnStatus.CANCELLED, stored_error(CANCELLED)
        )
        if finished is None:
            raise APIError(404, "Turn not found")
        if finished.status != TurnStatus.CANCELLED:
            # It ended another way between the read and the cancel.
            raise APIError(409, "Turn is already finished")
        turn = finished
    return json_response(TurnDTO.of(turn), 202)
