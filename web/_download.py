"""A file sent from disk in chunks, each within a send timeout.

A download holds one chunk in memory at a time: the next is read only once the
previous one was taken by the transport (hypercorn waits for its write buffer to drain).
A client that stops reading therefore holds a chunk and a socket buffer, not the file;
and one that takes no chunk for ``send_timeout`` seconds has its connection closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from quart.wrappers.response import ResponseBody
from werkzeug.exceptions import RequestedRangeNotSatisfiable

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

__all__ = ["CHUNK_BYTES", "FileStream"]

CHUNK_BYTES = 64 * 1024


class FileStream(ResponseBody):
    """The bytes of ``path`` (or of a range of it) as a streamed response body.

    One cancel scope owns the stall deadline: it is entered when the body is opened,
    around Quart's send loop, and moved ``send_timeout`` ahead each time a chunk is
    asked for. When it expires, the pending send is cancelled and :class:`TimeoutError`
    leaves the body: Quart takes that as a response that ran out of time (it logs
    nothing) and hypercorn closes the unfinished connection.

    Args:
        path: the file; its size is ``size`` (checked by the caller).
        size: the file's size in bytes.
        send_timeout: seconds the client may take to accept each chunk.
        chunk_bytes: the most bytes read and sent at once.
    """

    def __init__(
        self, path: Path, size: int, *, send_timeout: float, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self.path = path
        self.size = size
        self.begin = 0
        self.end = size
        self._send_timeout = send_timeout
        self._chunk_bytes = chunk_bytes
        self._file: anyio.AsyncFile[bytes] | None = None
        self._position = 0
        self._stall: anyio.CancelScope | None = None

    async def make_conditional(self, begin: int, end: int | None) -> int:
        """Send only ``begin:end`` (Quart's range requests); return the full size.

        Raises:
            RequestedRangeNotSatisfiable: the range is empty or outside the file.
        """
        self.begin = begin
        self.end = self.size if end is None else min(end, self.size)
        if self.begin >= self.end or abs(self.begin) > self.size:
            raise RequestedRangeNotSatisfiable()
        return self.size

    async def __aenter__(self) -> FileStream:
        self._file = await anyio.open_file(self.path, "rb")
        await self._file.seek(self.begin)
        self._position = self.begin
        self._stall = anyio.CancelScope(deadline=anyio.current_time() + self._send_timeout)
        self._stall.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stall is not None and self._file is not None
        self._stall.__exit__(exc_type, exc_value, tb)
        with anyio.CancelScope(shield=True):
            await self._file.aclose()
        if self._stall.cancelled_caught:
            raise TimeoutError(f"the client took no chunk for {self._send_timeout} s")

    def __aiter__(self) -> FileStream:
        return self

    async def __anext__(self) -> bytes:
        assert self._stall is not None and self._file is not None
        # The previous chunk was taken: the client gets a fresh deadline for this one.
        self._stall.deadline = anyio.current_time() + self._send_timeout
        remaining = self.end - self._position
        if remaining <= 0:
            raise StopAsyncIteration
        chunk = await self._file.read(min(self._chunk_bytes, remaining))
        if not chunk:
            raise StopAsyncIteration
        self._position += len(chunk)
        return chunk
