"""HttpServer: structured errors, middleware with transport context, readiness, drain."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from framework import App
from framework.errors import NotFound
from framework.middleware import Handler, Middleware, recovery, selector
from framework.transport import from_context
from framework.transport.http import HttpServer, Router


class Item(BaseModel):
    name: str
    quantity: int


def build_router(release: asyncio.Event | None = None) -> Router:
    router = Router(prefix="/v1")

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        if item_id == 404:
            raise NotFound("ITEM_NOT_FOUND", f"item {item_id} not found", item_id=str(item_id))
        if item_id == 500:
            raise RuntimeError("database exploded")
        transport = from_context()
        assert transport is not None
        transport.reply_headers["x-operation"] = transport.operation
        return {"id": item_id}

    @router.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @router.get("/slow")
    async def slow() -> dict[str, str]:
        assert release is not None
        await release.wait()
        return {"status": "done"}

    return router


async def test_routes_errors_and_reply_headers() -> None:
    server = HttpServer(port=0, middlewares=[recovery()])
    server.include_router(build_router())
    async with (
        App("t", servers=[server], handle_signals=False),
        httpx.AsyncClient(base_url=server.endpoint) as client,
    ):
            ok = await client.get("/v1/items/7")
            assert ok.json() == {"id": 7}
            assert ok.headers["x-operation"] == "GET /v1/items/{item_id}"

            missing = await client.get("/v1/items/404")
            assert missing.status_code == 404
            assert missing.json() == {
                "code": 404,
                "reason": "ITEM_NOT_FOUND",
                "message": "item 404 not found",
                "metadata": {"item_id": "404"},
            }

            boom = await client.get("/v1/items/500")
            assert boom.status_code == 500
            assert boom.json()["reason"] == "INTERNAL_ERROR"
            assert "exploded" not in boom.text  # internals are not leaked

            bad = await client.post("/v1/items", json={"name": "x", "quantity": "many"})
            assert bad.status_code == 400
            assert bad.json()["reason"] == "VALIDATOR"
            assert "quantity" in bad.json()["message"]

            nowhere = await client.get("/nowhere")
            assert nowhere.status_code == 404
            assert nowhere.json()["reason"] == "NOT_FOUND"


async def test_unexpected_exception_without_recovery_is_logged_with_its_operation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = HttpServer(port=0)
    server.include_router(build_router())
    async with (
        App("t", servers=[server], handle_signals=False),
        httpx.AsyncClient(base_url=server.endpoint) as client,
    ):
        with caplog.at_level(logging.ERROR, "pykratos.http"):
            boom = await client.get("/v1/items/500")
    assert boom.status_code == 500
    assert boom.json()["reason"] == "INTERNAL_ERROR"
    assert "exploded" not in boom.text
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert (record.kind, record.operation) == ("http", "GET /v1/items/{item_id}")  # type: ignore[attr-defined]


async def test_selected_middleware_only_runs_on_matching_operations() -> None:
    seen: list[str] = []

    def record(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = from_context()
            assert transport is not None
            seen.append(f"{transport.kind}:{transport.operation}")
            return await handler(request)

        return run

    only_items: Middleware = selector(record).regex(r"GET /v1/items/.*").build()
    server = HttpServer(port=0, middlewares=[recovery(), only_items])
    server.include_router(build_router())
    async with (
        App("t", servers=[server], handle_signals=False),
        httpx.AsyncClient(base_url=server.endpoint) as client,
    ):
            await client.get("/v1/items/1")
            await client.post("/v1/items", json={"name": "a", "quantity": 1})
    assert seen == ["http:GET /v1/items/{item_id}"]


async def test_plain_apirouter_is_refused() -> None:
    from fastapi import APIRouter

    plain = APIRouter()

    @plain.get("/x")
    async def x() -> None: ...

    with pytest.raises(TypeError, match=r"framework\.transport\.http\.Router"):
        HttpServer(port=0).include_router(plain)


async def test_readiness_follows_app_and_drain_completes_in_flight_request() -> None:
    release = asyncio.Event()
    server = HttpServer(port=0)
    server.include_router(build_router(release))
    app = App("t", servers=[server], handle_signals=False, stop_timeout=5)
    await server.start()
    async with httpx.AsyncClient(base_url=server.endpoint) as client:
        assert (await client.get("/readyz")).status_code == 503  # started, App not ready
        assert (await client.get("/healthz")).status_code == 200
    await server.stop(1)

    await app.start()
    async with httpx.AsyncClient(base_url=server.endpoint) as client:
        assert (await client.get("/readyz")).status_code == 200
        in_flight = asyncio.create_task(client.get("/v1/slow"))
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(app.shutdown())
        await asyncio.sleep(0.2)
        assert not server._serving
        release.set()
        response = await in_flight
        await stopping
    assert response.status_code == 200 and response.json() == {"status": "done"}


async def test_port_in_use_names_the_server() -> None:
    first = HttpServer(port=0, name="first")
    await first.start()
    try:
        second = HttpServer(port=first.port, name="second")
        with pytest.raises(OSError, match="second: cannot bind"):
            await second.start()
        await second.stop(1)
    finally:
        await first.stop(1)


async def test_ipv6_endpoint_is_a_valid_url() -> None:
    server = HttpServer("::1", port=0)
    try:
        await server.start()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        assert server.endpoint.startswith("http://[::1]:")
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.stop(1)


async def test_a_body_that_is_not_json_is_described_as_such() -> None:
    # It was "body.1: JSON decode error": the parser's position shown as a field path.
    server = HttpServer(port=0, middlewares=[recovery()])
    server.include_router(build_router())
    transport = httpx.ASGITransport(app=server.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        bad = await client.post(
            "/v1/items", content=b"{bad", headers={"content-type": "application/json"}
        )
    assert bad.status_code == 400
    message = bad.json()["message"]
    assert message.startswith("body: invalid JSON at character 1 (")
    assert "bad" not in message  # never the input
