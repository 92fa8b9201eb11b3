"""Real tool servers for the tests: an MCP server and an A2A agent, each in a thread.

Each runs uvicorn on its own event loop in a thread, on a loopback port it keeps
across a stop and a start, so a test can take a server away and bring it back at the
same URL whatever event loop the test itself runs on.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ThreadServer",
    "a2a_app",
    "free_port",
    "mcp_app",
    "plain_app",
]


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mcp_app(name: str = "calc") -> Any:
    """An MCP server (streamable HTTP at ``/mcp``) with two tools, ``add`` and ``echo``."""
    server = MCPServer(name)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    return server.streamable_http_app()


def a2a_card(url: str, name: str = "Travel Agent") -> AgentCard:
    """An A2A agent card with one skill."""
    return AgentCard(
        name=name,
        description="Plans trips",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="plan",
                name="Plan trip",
                description="Plans a trip to a city",
                tags=["travel"],
            )
        ],
    )


def a2a_app(url: str, name: str = "Travel Agent") -> Any:
    """An A2A agent serving its card at the SDK's well-known path."""
    return Starlette(routes=create_agent_card_routes(a2a_card(url, name)))


def plain_app(routes: dict[str, Callable[[Request], Any]]) -> Any:
    """A plain HTTP app answering ``routes`` (path → endpoint) for the odd cases."""
    return Starlette(
        routes=[Route(path, endpoint, methods=["GET", "POST"]) for path, endpoint in routes.items()]
    )


def redirect_to(url: str) -> Callable[[Request], Any]:
    """An endpoint redirecting every request to ``url``."""

    async def endpoint(request: Request) -> Response:
        return RedirectResponse(url, status_code=307)

    return endpoint


def json_answer(body: Any) -> Callable[[Request], Any]:
    """An endpoint answering ``body`` as JSON."""

    async def endpoint(request: Request) -> Response:
        return JSONResponse(body)

    return endpoint


class ThreadServer:
    """Run an ASGI app with uvicorn in a thread, on a fixed loopback port.

    ``make_app`` builds the app at each start (an MCP server's app runs only once).
    """

    def __init__(self, make_app: Callable[[], Any], port: int | None = None) -> None:
        self.make_app = make_app
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadServer:
        """Start serving; return once the port accepts connections."""
        config = uvicorn.Config(
            self.make_app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
            self._thread = None
