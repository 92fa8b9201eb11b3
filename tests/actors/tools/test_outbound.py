"""The outbound policy: where users' URLs may lead, and how much may come back."""

from __future__ import annotations

import pytest

from actors.tools import (
    OutboundPolicy,
    OutboundRefusedError,
    ProbeError,
    check_destination,
    fetch_agent_card,
    list_mcp_tools,
)
from tests.actors.tools.servers import ThreadServer, json_answer, mcp_app, plain_app

PRODUCTION = OutboundPolicy(allow_private=False)


class TestDestinations:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8000/mcp",
            "http://localhost/mcp",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ],
    )
    async def test_production_refuses_private_addresses(self, url: str) -> None:
        with pytest.raises(OutboundRefusedError):
            await check_destination(url, PRODUCTION)

    async def test_development_allows_them(self) -> None:
        await check_destination("http://127.0.0.1:8000/mcp", OutboundPolicy(allow_private=True))

    async def test_public_addresses_pass(self) -> None:
        await check_destination("http://93.184.216.34/", PRODUCTION)

    @pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///x"])
    async def test_only_http_urls(self, url: str) -> None:
        with pytest.raises(OutboundRefusedError):
            await check_destination(url, OutboundPolicy())


class TestSizes:
    async def test_a_card_longer_than_the_limit_is_not_read(self) -> None:
        huge = {"name": "x" * 10_000, "description": "d"}
        server = ThreadServer(
            lambda: plain_app({"/.well-known/agent-card.json": json_answer(huge)})
        ).start()
        try:
            with pytest.raises(ProbeError):
                await fetch_agent_card(server.url, OutboundPolicy(max_bytes=2048))
        finally:
            server.stop()

    async def test_a_tool_list_longer_than_the_limit_is_not_read(self) -> None:
        server = ThreadServer(mcp_app).start()
        try:
            url = f"{server.url}/mcp"
            assert len(await list_mcp_tools(url, OutboundPolicy())) == 2
            with pytest.raises(ProbeError):
                await list_mcp_tools(url, OutboundPolicy(max_bytes=200, deadline=5))
        finally:
            server.stop()
