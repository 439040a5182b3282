"""Issue 8 item 26: the OpenAPI document is named after the App, and a 400 never echoes the
client's whole input back."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from framework import App
from framework.transport.http import HttpServer, Router
from framework.validation import ECHO_LIMIT


class Tags(BaseModel):
    counts: dict[str, int]
    note: str


def _router() -> Router:
    router = Router()

    @router.post("/tags")
    async def tag(body: Tags) -> Tags:
        return body

    return router


async def _openapi_info(server: HttpServer) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=server.endpoint) as client:
        info: dict[str, str] = (await client.get("/openapi.json")).json()["info"]
        return info


async def test_openapi_title_and_version_are_the_apps() -> None:
    server = HttpServer(port=0)
    async with App("orders-svc", version="1.4.2", servers=[server], handle_signals=False):
        info = await _openapi_info(server)
    assert (info["title"], info["version"]) == ("orders-svc", "1.4.2")


async def test_openapi_title_outside_an_app_is_the_server_name() -> None:
    server = HttpServer(port=0, name="public-api")
    await server.start()
    try:
        assert (await _openapi_info(server))["title"] == "public-api"
    finally:
        await server.stop(5)


async def test_an_app_passed_in_keeps_its_own_title() -> None:
    server = HttpServer(port=0, app=FastAPI(title="Mine", version="9"))
    async with App("orders-svc", version="1.4.2", servers=[server], handle_signals=False):
        info = await _openapi_info(server)
    assert (info["title"], info["version"]) == ("Mine", "9")


async def test_validation_error_echoes_at_most_an_excerpt_of_the_input() -> None:
    """pydantic keeps the input in its errors and a dict key is part of the field path:
    neither comes back whole."""
    server = HttpServer(port=0)
    server.include_router(_router())
    huge = "k" * 65_000
    app = App("echo", servers=[server], handle_signals=False)
    async with app, httpx.AsyncClient(base_url=server.endpoint) as client:
        reply = await client.post("/tags", json={"counts": {huge: "x"}, "note": huge * 2})
    assert reply.status_code == 400
    body = reply.json()
    assert body["reason"] == "VALIDATOR"
    assert body["message"].startswith("body.counts.kkkk")
    assert len(body["message"]) < 2 * ECHO_LIMIT + 100, len(body["message"])
    assert len(reply.content) < 1000
