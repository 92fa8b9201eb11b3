"""Where uploaded files live on disk, and how their names are made safe.

A client's file name is stored as metadata only; on disk a file is always
``<uuid><suffix>`` inside the storage directory, where the suffix is kept only when it is
a short run of ASCII letters and digits. Disk work runs in worker threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import IO
from uuid import UUID

import anyio.to_thread

__all__ = ["FileStorage", "StoredFileMissing", "safe_suffix"]

_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,16}$")
_COPY_CHUNK = 1024 * 1024


class StoredFileMissing(Exception):
    """Raised when a file's metadata exists but its bytes are not on disk."""


def safe_suffix(filename: str | None) -> str:
    """Return the extension of ``filename`` (``Path.suffix`` rules, case kept) if it is safe.

    Only the last path component counts, whichever separator the client used; anything
    but a dot followed by 1 to 16 ASCII letters or digits gives ``""``.
    """
    if not filename:
        return ""
    base = re.split(r"[/\\]", filename)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem.strip(".") or not ext:
        return ""
    suffix = f".{ext}"
    return suffix if _SUFFIX.match(suffix) else ""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where a stored file is and what the download headers need."""

    path: Path
    size: int
    mtime: float


class FileStorage:
    """The storage directory; names given to it are checked to stay inside it."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def path_of(self, file_id: UUID, suffix: str) -> Path:
        """Return where the file ``<file_id><suffix>`` lives."""
        if suffix and not _SUFFIX.match(suffix):
            raise ValueError(f"unsafe suffix {suffix!r}")
        return self._directory / f"{file_id}{suffix}"

    def _inside(self, internal_name: str) -> Path | None:
        if not internal_name or "\x00" in internal_name or re.search(r"[/\\]", internal_name):
            return None
        if internal_name in {".", ".."}:
            return None
        return self._directory / internal_name

    async def save(self, path: Path, source: IO[bytes]) -> int:
        """Copy ``source`` into a new file at ``path`` in a worker thread; return its size.

        Raises:
            OSError: the directory cannot be made or the write fails (no file is left).
        """
        return await anyio.to_thread.run_sync(_copy_new, path, source)

    async def remove(self, path: Path) -> None:
        """Delete ``path`` if it exists, in a worker thread."""
        await anyio.to_thread.run_sync(_unlink, path)

    async def locate(self, internal_name: str) -> StoredFile:
        """Find a stored file and its size in a worker thread (its bytes are not read).

        Raises:
            StoredFileMissing: there is no such file in the directory.
        """
        path = self._inside(internal_name)
        if path is None:
            raise StoredFileMissing(internal_name)
        try:
            return await anyio.to_thread.run_sync(_stat, path)
        except OSError as exc:
            raise StoredFileMissing(internal_name) from exc


def _copy_new(path: Path, source: IO[bytes]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    target = path.open("xb")  # never replaces a file that is not ours
    try:
        with target:
            while chunk := source.read(_COPY_CHUNK):
                target.write(chunk)
                size += len(chunk)
    except BaseException:
        _unlink(path)
        raise
    return size


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _stat(path: Path) -> StoredFile:
    stat = path.stat()
    if not S_ISREG(stat.st_mode):
        raise FileNotFoundError(path)
    return StoredFile(path, stat.st_size, stat.st_mtime)
