"""TestApp's HTTP client: in-process, through the server's whole pipeline; readiness follows
the App; configured ports are left alone and put back."""

from __future__ import annotations

from typing import Any

from framework import App
from framework.middleware import Handler, Middleware
from framework.testing import TestApp
from framework.transport import from_context
from framework.transport.http import HttpServer, Router
from framework.transport.websocket import WebSocketServer


def _tagging(seen: list[str]) -> Middleware:
    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = from_context()
            assert transport is not None
            seen.append(f"{transport.kind} {transport.operation}")
            return await handler(request)

        return run

    return middleware


async def test_http_pipeline_body_limit_and_readiness() -> None:
    seen: list[str] = []
    http = HttpServer("127.0.0.1", 1, middlewares=[_tagging(seen)], max_body_size=10)
    api = Router()

    @api.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    http.include_router(api)
    ws = WebSocketServer("127.0.0.1", 1)

    @ws.on("ping")
    async def ping() -> str:
        return "pong"

    app = App("t", servers=[ws, http])
    async with TestApp(app) as kit:
        assert (await kit.http.post("/echo", json={"a": 1})).json() == {"a": 1}
        assert seen == ["http POST /echo"]  # the framework middleware ran
        too_big = await kit.http.post("/echo", json={"a": "x" * 100})
        assert (too_big.status_code, too_big.json()["reason"]) == (413, "PAYLOAD_TOO_LARGE")
        assert (await kit.http.get("/readyz")).status_code == 200
        assert ws.port != 1  # a free loopback port for the test, not the configured one
        async with kit.websocket("/") as client:
            assert await client.request("ping") == "pong"
    assert (http.port, ws.port) == (1, 1)  # the configured ports are back
    assert app.servers[1] is http
    assert not http._serving  # readiness off once the App stopped
