"""File metadata (the bytes live on disk, outside the database)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import select, update

from .._models import File
from ._base import Repository

__all__ = ["FileRepository"]


class FileRepository(Repository):
    """File metadata, scoped to its creator."""

    async def add(
        self,
        *,
        creator_id: uuid.UUID,
        mimetype: str,
        original_name: str,
        internal_name: str,
        from_agent: bool,
        session_id: uuid.UUID | None = None,
        request_id: uuid.UUID | None = None,
        id: uuid.UUID | None = None,
    ) -> File:
        """Add a file's metadata; ``internal_id`` equals the id.

        Raises:
            AlreadyExistsError: the id is taken.
        """
        file_id = id or uuid.uuid4()
        if id is not None:
            await self._ensure_absent(File, id, "files_pkey")
        row = File(
            id=file_id,
            internal_id=file_id,
            creator_id=creator_id,
            mimetype=mimetype,
            original_name=original_name,
            internal_name=internal_name,
            from_agent=from_agent,
            session_id=session_id,
            request_id=request_id,
        )
        async with self._writing():
            self.session.add(row)
        return row

    async def get(self, file_id: uuid.UUID, *, owner_id: uuid.UUID) -> File | None:
        """Return the owner's file, or None."""
        return await self.session.scalar(
            select(File).where(File.id == file_id, File.creator_id == owner_id)
        )

    async def list_for_user(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int = 100
    ) -> Sequence[File]:
        """List the owner's files (files have no timestamps: ordered by id)."""
        stmt = select(File).where(File.creator_id == owner_id).order_by(File.id)
        return (await self.session.scalars(stmt.offset(offset).limit(limit))).all()

    async def list_for_session(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID
    ) -> Sequence[File]:
        """List the owner's files of one session."""
        stmt = (
            select(File)
            .where(File.session_id == session_id, File.creator_id == owner_id)
            .order_by(File.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def list_for_request(
        self, request_id: uuid.UUID, *, owner_id: uuid.UUID
    ) -> Sequence[File]:
        """List the owner's files of one request (attachments and agents' files)."""
        stmt = (
            select(File)
            .where(File.request_id == request_id, File.creator_id == owner_id)
            .order_by(File.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def stamp(
        self,
        file_ids: Collection[uuid.UUID],
        *,
        owner_id: uuid.UUID,
        session_id: uuid.UUID,
        request_id: uuid.UUID,
    ) -> list[uuid.UUID]:
        """Set session and request ids on those of *file_ids* that are the owner's.

        Returns:
            The ids that were stamped; foreign and unknown ids are skipped.
        """
        if not file_ids:
            return []
        result = await self.session.scalars(
            update(File)
            .where(File.id.in_(list(file_ids)), File.creator_id == owner_id)
            .values(session_id=session_id, request_id=request_id)
            .returning(File.id),
            execution_options={"synchronize_session": "fetch"},
        )
        return list(result)
