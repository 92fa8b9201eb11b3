"""The documentation pages work without Internet: every asset they load is served here."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from quart.testing import QuartClient

from tests.web.conftest import Users

# What each asset must be: its content type, and a marker of the right file.
_EXPECTED = {
    ".js": ("text/javascript", None),
    ".css": ("text/css", b".swagger-ui"),
}


class _AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


async def _asset_urls(client: QuartClient, page: str) -> list[str]:
    response = await client.get(page)
    assert response.status_code == 200
    parser = _AssetLinks()
    parser.feed((await response.get_data()).decode())
    return parser.urls


@pytest.mark.parametrize(
    ("page", "marker"),
    [("/docs", b"SwaggerUIBundle"), ("/redoc", b"Redoc")],
)
async def test_docs_pages_load_only_local_assets(
    client: QuartClient, page: str, marker: bytes
) -> None:
    urls = await _asset_urls(client, page)
    assert urls, f"{page} loads no script"
    for url in urls:
        # Local: a path on this server, no scheme or host (no CDN).
        assert url.startswith("/") and not url.startswith("//"), url
        response = await client.get(url)
        assert response.status_code == 200, url
        suffix = re.search(r"\.\w+$", url)
        assert suffix is not None, url
        content_type, file_marker = _EXPECTED[suffix.group()]
        assert response.content_type.split(";")[0] == content_type, url
        body = await response.get_data()
        assert (file_marker or marker) in body, url


async def test_a_missing_or_escaping_asset_is_404(client: QuartClient) -> None:
    for url in (
        "/docs/assets/swagger-ui/nope.js",
        "/docs/assets/redoc/../redoc/redoc.standalone.js/..%2f..%2f__init__.py",
        "/docs/assets/elsewhere/redoc.standalone.js",
    ):
        assert (await client.get(url)).status_code == 404, url


async def test_authorize_uses_the_password_flow_of_the_login_route(
    client: QuartClient, users: Users
) -> None:
    schema = await (await client.get("/openapi.json")).get_json()
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    # Swagger UI's Authorize posts the form to this URL on this server.
    assert flows["password"]["tokenUrl"] == "/api/login/access-token"
    user = await users.login()
    assert user.token
