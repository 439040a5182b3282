"""Refused calls get 429 / RESOURCE_EXHAUSTED ``RATELIMIT`` on every server, per operation
through the selector, before the handler runs."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import orjson
from websockets.asyncio.client import connect

from framework.errors import from_exception
from framework.middleware import recovery, selector
from framework.middleware.ratelimit import RATELIMIT, TokenBucket, ratelimit
from framework.transport.context import Transport, transport_scope
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from framework.transport.websocket import WebSocketServer
from tests.grpc.protos import echo_pb2, echo_pb2_grpc


def _slow_refill(operation: str) -> TokenBucket:
    return TokenBucket(0.001, burst=2)  # two calls, then nothing for the test's lifetime


async def test_http_refuses_with_429_per_operation_before_the_handler() -> None:
    calls: list[str] = []
    routes = Router()

    @routes.post("/v1/orders")
    async def create() -> dict[str, str]:
        calls.append("create")
        return {}

    @routes.get("/v1/orders")
    async def listing() -> dict[str, str]:
        calls.append("list")
        return {}

    limited = selector(ratelimit(per_operation=_slow_refill)).path("POST /v1/orders").build()
    server = HttpServer(port=0, middlewares=[limited, recovery()])
    server.include_router(routes)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            codes = [(await client.post("/v1/orders")).status_code for _ in range(4)]
            refused = await client.post("/v1/orders")
            others = [(await client.get("/v1/orders")).status_code for _ in range(5)]
    finally:
        await server.stop(5)
    assert codes == [200, 200, 429, 429]
    assert refused.json()["reason"] == RATELIMIT
    assert others == [200] * 5  # not selected: not limited
    assert calls.count("create") == 2


async def test_grpc_refuses_with_resource_exhausted() -> None:
    ran: list[str] = []

    class Echo(echo_pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
        async def Unary(self, request: Any, context: Any) -> Any:
            ran.append(request.text)
            return echo_pb2.EchoReply(text=request.text)

    server = GrpcServer(port=0, middlewares=[ratelimit(TokenBucket(0.001, burst=1)), recovery()])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Echo())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://")) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            await stub.Unary(echo_pb2.EchoRequest(text="a"))
            try:
                await stub.Unary(echo_pb2.EchoRequest(text="b"))
            except grpc.aio.AioRpcError as exc:
                failure = exc
            else:
                raise AssertionError("the second call was admitted")
    finally:
        await server.stop(5)
    assert failure.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert from_exception(failure).reason == RATELIMIT
    assert ran == ["a"]


async def test_websocket_message_refused_with_an_error_frame() -> None:
    ws = WebSocketServer(port=0, middlewares=[ratelimit(TokenBucket(0.001, burst=1))])
    ran: list[int] = []

    @ws.on("work")
    async def work(payload: Any) -> str:
        ran.append(1)
        return "done"

    await ws.start()
    try:
        async with connect(ws.endpoint) as client:
            replies = []
            for _ in range(2):
                await client.send(orjson.dumps({"type": "work", "id": 1}).decode())
                replies.append(orjson.loads(await client.recv()))
    finally:
        await ws.stop(5)
    assert replies[0]["payload"] == "done"
    error = replies[1]
    assert error["type"] == "error", error
    assert error["error"]["code"] == 429
    assert error["error"]["reason"] == RATELIMIT
    assert ran == [1]


async def test_refusal_is_fast() -> None:
    """The refused path is a few comparisons and an exception: far under 5 ms."""
    refuse = ratelimit(TokenBucket(0.001, burst=1))

    async def handler(request: Any) -> Any:
        return request

    run = refuse(handler)
    with transport_scope(Transport("http", "GET /x")):
        await run(None)
        started = time.perf_counter()
        for _ in range(1000):
            try:
                await run(None)
            except Exception as exc:
                assert from_exception(exc).reason == RATELIMIT
    per_call = (time.perf_counter() - started) / 1000
    assert per_call < 0.001, per_call
