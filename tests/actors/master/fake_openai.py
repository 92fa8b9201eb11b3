"""A scripted OpenAI-compatible server on loopback, for the built-in master's tests.

A real HTTP/1.1 server (keep-alive, Content-Length bodies) that answers
``POST /v1/chat/completions`` with what the test's script returns for each request:
a text completion, a tool call, an error status, or a hang (no answer until the client
goes away). Every request body is kept in ``requests``. Runs on asyncio and trio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from anyio.abc import SocketStream

__all__ = [
    "HANG",
    "FakeOpenAI",
    "Reply",
    "error",
    "open_fake_openai",
    "text",
    "tool_call",
]


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer: a status and a JSON body, or a hang."""

    status: int = 200
    body: Any = None
    hang: bool = False


HANG = Reply(hang=True)


def _completion(message: dict[str, Any], finish: str) -> Reply:
    return Reply(
        body={
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def text(content: str) -> Reply:
    """A final text answer."""
    return _completion({"role": "assistant", "content": content}, "stop")


def tool_call(name: str, arguments: dict[str, Any] | str) -> Reply:
    """A call of the tool ``name`` (``arguments`` as an object, or raw text as given)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": name, "arguments": raw},
    }
    return _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")


def error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    """An OpenAI-style error answer."""
    return Reply(status, {"error": {"message": message, "type": kind, "code": None}})


Script = Callable[[dict[str, Any]], Reply]


class FakeOpenAI:
    """The server's state: its address, its script and the requests it got."""

    def __init__(self, port: int, script: Script) -> None:
        self.port = port
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``…/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def serve(self, stream: SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                try:
                    while b"\r\n\r\n" not in buffer:
                        chunk = await stream.receive()
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    headers = {
                        name.strip().lower(): value.strip()
                        for name, _, value in (line.partition(":") for line in lines[1:])
                    }
                    length = int(headers.get("content-length", "0"))
                    while len(buffer) < length:
                        buffer += await stream.receive()
                    body, buffer = buffer[:length], buffer[length:]
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                request = json.loads(body) if body else {}
                self.requests.append(request)
                self.headers.append(headers)
                self.paths.append(lines[0].split(" ")[1])
                reply = self.script(request)
                if reply.hang:
                    # Answer nothing; end when the client gives up and closes.
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while True:
                            await stream.receive()
                    return
                payload = json.dumps(reply.body).encode()
                status = f"HTTP/1.1 {reply.status} {'OK' if reply.status == 200 else 'Error'}"
                response = (
                    f"{status}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n"
                ).encode() + payload
                try:
                    await stream.send(response)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return


@contextlib.asynccontextmanager
async def open_fake_openai(script: Script) -> AsyncIterator[FakeOpenAI]:
    """Run the server on a free loopback port for the block's duration."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    fake = FakeOpenAI(port, script)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, fake.serve)
        try:
            yield fake
        finally:
            tg.cancel_scope.cancel()
