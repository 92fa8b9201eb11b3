"""Uploaded files: upload, download, metadata, and the files of a chat session.

These routes have no ``/api`` prefix; agents call them with their own token.
"""

from __future__ import annotations

import hashlib
from email.utils import formatdate
from typing import Any
from uuid import UUID, uuid4

import anyio
from pydantic import BaseModel, ValidationError, field_validator
from quart import Blueprint, Response, request
from quart_schema import tag_blueprint
from quart_schema.pydantic import File as FilePart
from werkzeug.exceptions import RequestEntityTooLarge

from persistence import File, FileRepository

from .._download import FileStream
from .._files import FileStorage, StoredFileMissing, safe_suffix
from ..auth import Caller, requires_service, requires_user_or_agent
from ..common import PageQuery, json_response
from ..errors import APIError, RequestValidationError, validation_errors
from ..services import services
from ..validation import documents_multipart, responds, validate_path, validate_query

__all__ = ["FileDTO", "blueprint"]

blueprint = Blueprint("files", __name__)
tag_blueprint(blueprint, ["files"])

OCTET_STREAM = "application/octet-stream"


class UploadForm(BaseModel):
    request_id: UUID | None = None
    session_id: UUID | None = None

    @field_validator("request_id", "session_id", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value


class UploadBody(UploadForm):
    # Documents the multipart body; upload_file reads it by hand (for its own 413).
    file: FilePart


class FileCreated(BaseModel):
    id: UUID


class FileDTO(BaseModel):
    id: UUID
    session_id: UUID | None
    request_id: UUID | None
    original_name: str
    mimetype: str
    internal_id: UUID
    internal_name: str
    from_agent: bool
    creator_id: UUID | None

    @classmethod
    def of(cls, row: File) -> FileDTO:
        return cls.model_validate(row, from_attributes=True)


class SessionFile(BaseModel):
    file_id: UUID
    session_id: UUID | None
    request_id: UUID | None


class SessionFilesQuery(BaseModel):
    session_id: UUID
    user_id: UUID | None = None


def _storage() -> FileStorage:
    return FileStorage(services().settings.FILES_DIR)


def _not_found(file_id: object) -> APIError:
    return APIError(400, f"File with id {file_id} does not exist")


async def _read_upload() -> tuple[Any, UploadForm]:
    limit = services().settings.MAX_UPLOAD_BYTES
    try:
        form = await request.form
        files = await request.files
    except RequestEntityTooLarge:
        raise APIError(413, f"The upload is too large: the limit is {limit} bytes") from None
    errors: list[dict[str, Any]] = []
    upload = files.get("file")
    if upload is None:
        errors.append(
            {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}
        )
    fields = {key: form.getlist(key)[-1] for key in ("request_id", "session_id") if key in form}
    parsed = None
    try:
        parsed = UploadForm.model_validate(fields)
    except ValidationError as exc:
        errors += validation_errors(exc, "body")
    if errors or parsed is None:
        raise RequestValidationError(errors)
    return upload, parsed


@blueprint.post("/files")
@requires_user_or_agent
@documents_multipart(UploadBody)
@responds(FileCreated, 201)
async def upload_file(caller: Caller) -> Any:
    """Store an uploaded file under a new id; answer 201 ``{"id"}``."""
    upload, form = await _read_upload()
    original_name = (upload.filename or "").replace("\x00", "")
    mimetype = (upload.content_type or OCTET_STREAM).replace("\x00", "")
    file_id = uuid4()
    storage = _storage()
    path = storage.path_of(file_id, safe_suffix(original_name))
    try:
        await storage.save(path, upload.stream)
    except OSError:
        raise APIError(500, "Failed to save file") from None
    try:
        async with services().sessionmaker.begin() as session:
            await FileRepository(session).add(
                id=file_id,
                creator_id=caller.user_id,
                mimetype=mimetype,
                original_name=original_name,
                internal_name=path.name,
                from_agent=form.request_id is not None and form.session_id is not None,
                session_id=form.session_id,
                request_id=form.request_id,
            )
    except BaseException:
        # No file stays on disk without its metadata, whatever went wrong.
        with anyio.CancelScope(shield=True):
            await storage.remove(path)
        raise
    return json_response(FileCreated(id=file_id), 201)


@blueprint.get("/files")
@requires_service
@validate_query(SessionFilesQuery)
@responds(list[SessionFile])
async def session_files(query: SessionFilesQuery, caller: Caller) -> Any:
    """List the user's files of one chat session (``[]`` when there are none)."""
    async with services().sessionmaker() as session:
        rows = await FileRepository(session).list_for_session(
            query.session_id, owner_id=caller.user_id
        )
    out = [
        SessionFile(file_id=row.id, session_id=row.session_id, request_id=row.request_id)
        for row in rows
    ]
    return json_response(out, model=list[SessionFile])


def _content_type(mimetype: str) -> str:
    # Text gets an explicit charset, as the original's file responses did.
    if mimetype.lower().startswith("text/") and "charset" not in mimetype.lower():
        return f"{mimetype}; charset=utf-8"
    return mimetype


@blueprint.get("/files/<file_id>")
@requires_user_or_agent
async def download_file(file_id: str, caller: Caller) -> Any:
    """Send the bytes of one of the caller's files as an attachment, streamed from disk.

    The client must take each chunk within ``DOWNLOAD_SEND_TIMEOUT_SECONDS``, or the
    connection is closed.
    """
    try:
        parsed = UUID(file_id)
    except ValueError:
        raise _not_found(file_id) from None
    async with services().sessionmaker() as session:
        row = await FileRepository(session).get(parsed, owner_id=caller.user_id)
    if row is None:
        raise _not_found(file_id)
    try:
        stored = await _storage().locate(row.internal_name)
    except StoredFileMissing:
        detail = f"Metadata of file {row.internal_id} exists, but file was not found"
        raise APIError(500, detail) from None
    size = stored.size
    etag = hashlib.md5(f"{stored.mtime}-{size}".encode(), usedforsecurity=False).hexdigest()
    # Streamed from disk a chunk at a time: a stalled client holds no whole file.
    body = FileStream(
        stored.path, size, send_timeout=services().settings.DOWNLOAD_SEND_TIMEOUT_SECONDS
    )
    response = Response(
        body,
        status=200,
        content_type=_content_type(row.mimetype or OCTET_STREAM),
        headers={
            "Content-Disposition": f'attachment; filename="{row.internal_name}"',
            "ETag": f'"{etag}"',
            "Last-Modified": formatdate(stored.mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Content-Length": str(size),
        },
    )
    # The stall deadline is the body's; Quart's whole-response timeout would cut off a
    # large download on a slow but steady link.
    response.timeout = None
    return await response.make_conditional(request, accept_ranges=True, complete_length=size)


@blueprint.get("/files/<file_id>/metadata")
@requires_user_or_agent
@validate_path(file_id=UUID)
@responds(FileDTO)
async def file_metadata(file_id: UUID, caller: Caller) -> Any:
    """Return the metadata of one of the caller's files."""
    async with services().sessionmaker() as session:
        row = await FileRepository(session).get(file_id, owner_id=caller.user_id)
    if row is None:
        raise _not_found(file_id)
    return json_response(FileDTO.of(row))


@blueprint.get("/user/files/metadata")
@requires_user_or_agent
@validate_query(PageQuery)
@responds(list[FileDTO])
async def user_files(query: PageQuery, caller: Caller) -> Any:
    """List the metadata of the caller's files."""
    async with services().sessionmaker() as session:
        rows = await FileRepository(session).list_for_user(
            caller.user_id, offset=query.offset, limit=query.limit
        )
    return json_response([FileDTO.of(row) for row in rows], model=list[FileDTO])
