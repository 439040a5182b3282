"""/docs (Swagger UI) and /redoc load nothing from outside the server: every script,
stylesheet and icon they reference is a path on the server itself, and it answers."""

from __future__ import annotations

import re

import httpx
import pytest

from framework.transport.http import HttpServer, Router

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def _router() -> Router:
    router = Router()

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return router


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_are_served_without_a_cdn(page: str) -> None:
    server = HttpServer(port=0)
    server.include_router(_router())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            html = (await client.get(page)).raise_for_status().text
            references = [a or b for a, b in _REFERENCE.findall(html)]
            assert references, html
            for url in references:
                assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
                asset = await client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
            assert "/openapi.json" in html
            assert (await client.get("/openapi.json")).status_code == 200
            missing = await client.get("/docs/assets/..%2Fcore.py")
            assert (missing.status_code, missing.json()["reason"]) == (404, "NOT_FOUND")
    finally:
        await server.stop(5)


async def test_docs_can_be_turned_off() -> None:
    server = HttpServer(port=0, docs_path=None, redoc_path=None)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            assert (await client.get("/docs")).status_code == 404
            assert (await client.get("/redoc")).status_code == 404
            assert (await client.get("/openapi.json")).status_code == 200
    finally:
        await server.stop(5)
