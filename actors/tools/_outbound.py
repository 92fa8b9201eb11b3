"""Outbound safety for requests to URLs that users type (MCP servers, A2A agents).

Users make this server open connections: to keep that from becoming a way into the
network it runs in, or a way to hold its resources, every such request goes through a
transport that checks where it goes and how much comes back:

- only ``http`` and ``https``; unless allowed, no loopback, private, link-local,
  multicast, reserved or unspecified address, checked on every request (redirects and
  the MCP client's later requests included) against every address the name resolves to;
- a connect and a read time-out on each request, and a deadline on the whole probe
  (owned by the caller, one cancel scope);
- at most ``max_bytes`` read from any one response;
- no redirect to another origin: the MCP client follows only same-origin redirects,
  and our own requests follow none (a redirect is an answer that is not a card).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx2

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "OutboundPolicy",
    "OutboundRefusedError",
    "ResponseTooLargeError",
    "check_destination",
    "open_guarded_client",
    "open_http_client",
]


class OutboundRefusedError(Exception):
    """Raised when a URL may not be reached under the outbound policy."""


class ResponseTooLargeError(Exception):
    """Raised when a response is longer than the outbound policy's ``max_bytes``."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What requests to users' URLs may do.

    Attributes:
        allow_private: Whether loopback, private and link-local addresses may be reached.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds to wait for each read.
        deadline: Seconds a whole probe (connect, handshake, listing) may take.
        max_bytes: The most bytes read from one response.
    """

    allow_private: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 20.0
    max_bytes: int = 4 * 1024 * 1024


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def check_destination(url: str, policy: OutboundPolicy) -> None:
    """Check that ``url`` may be requested under ``policy`` (resolves its host; waits).

    Raises:
        OutboundRefusedError: The scheme is not http(s), the host is missing, or it
            resolves to an address the policy refuses.
        OSError: The host name cannot be resolved.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise OutboundRefusedError(f"not an http(s) URL: {url}")
    if policy.allow_private:
        return
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        infos = await anyio.getaddrinfo(host, parts.port or 0, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if _refused_address(address):
            raise OutboundRefusedError(f"{host} resolves to a refused address ({address})")


@functools.cache
def _guarded_transport(http: ModuleType) -> type[Any]:
    """Return the guarded transport class for ``http``: ``httpx2`` (ours, the MCP
    client's) or ``httpx`` (the a2a-sdk's). The two share an API but not their base
    classes, which their clients check, so the class is made once for each."""

    class LimitedStream(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        """A response body that fails once more than ``limit`` bytes came through."""

        def __init__(self, inner: Any, limit: int) -> None:
            self._inner = inner
            self._limit = limit

        async def __aiter__(self) -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in self._inner:
                seen += len(chunk)
                if seen > self._limit:
                    raise ResponseTooLargeError(f"response longer than {self._limit} bytes")
                yield chunk

        async def aclose(self) -> None:
            await self._inner.aclose()

    class GuardedTransport(http.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        """Checks each request's destination and bounds each response's length."""

        def __init__(self, policy: OutboundPolicy) -> None:
            self._policy = policy
            # No proxies from the environment: the address checked is the address reached.
            self._inner = http.AsyncHTTPTransport(trust_env=False, retries=0)

        async def handle_async_request(self, request: Any) -> Any:
            await check_destination(str(request.url), self._policy)
            response = await self._inner.handle_async_request(request)
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self._policy.max_bytes:
                await response.aclose()
                raise ResponseTooLargeError(f"response of {length} bytes")
            stream = response.stream
            assert isinstance(stream, http.AsyncByteStream)
            response.stream = LimitedStream(stream, self._policy.max_bytes)
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

    return GuardedTransport


def open_guarded_client(
    policy: OutboundPolicy, *, http: ModuleType = httpx2, read_timeout: float | None = None
) -> Any:
    """Return an ``http.AsyncClient`` for users' URLs under ``policy`` (a context manager).

    It follows no redirect and takes no proxy from the environment; every request's
    destination is checked and every response's length bounded.

    Args:
        policy: The outbound rules.
        http: The client library, ``httpx2`` or ``httpx`` (for an SDK that takes one).
        read_timeout: Seconds a read may wait; None waits for as long as the caller's
            own deadline allows.
    """
    timeout = http.Timeout(
        read_timeout, connect=policy.connect_timeout, pool=policy.connect_timeout
    )
    return http.AsyncClient(
        transport=_guarded_transport(http)(policy),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def open_http_client(policy: OutboundPolicy) -> httpx2.AsyncClient:
    """Return an HTTP client for users' URLs under ``policy`` (use it as a context manager).

    It follows no redirect by itself (the MCP transports follow same-origin ones).
    """
    client: httpx2.AsyncClient = open_guarded_client(policy, read_timeout=policy.read_timeout)
    return client
