"""Issue 8 item 10: error metadata of any type gives the same answer on HTTP, gRPC and WebSocket.

Metadata is ``str -> str`` (as ``google.rpc.ErrorInfo.metadata``); other values are converted
once, by :func:`framework.errors.metadata_text`, so every transport sends the same strings and
:func:`framework.errors.from_exception` round-trips them unchanged.
"""

from __future__ import annotations

import enum
from typing import Any

import grpc
import httpx
import orjson
import pytest
from google.rpc import error_details_pb2
from websockets.asyncio.client import connect

from framework.errors import Error, NotFound, from_exception, metadata_text
from framework.middleware import recovery
from framework.transport.grpc import GrpcServer
from framework.transport.grpc.status import to_rpc_status
from framework.transport.http import HttpServer, Router
from framework.transport.websocket import WebSocketServer
from tests.grpc.protos import echo_pb2, echo_pb2_grpc


class Color(enum.Enum):
    RED = "red"


def cart_error() -> Error:
    error = NotFound(
        "CART_NOT_FOUND",
        "cart 7 not found",
        cart="7",
        attempts=3,
        ratio=0.5,
        retry=True,
        last=None,
        tags=["a", "b"],
        limits={"max": 5},
        color=Color.RED,
    )
    # Code may also put a value in the dict after the error was built.
    error.metadata["late"] = 42  # type: ignore[assignment]
    return error


EXPECTED = {
    "cart": "7",
    "attempts": "3",
    "ratio": "0.5",
    "retry": "true",
    "last": "null",
    "tags": '["a","b"]',
    "limits": '{"max":5}',
    "color": "Color.RED",
    "late": "42",
}


def test_item10_metadata_values_are_converted_once_to_strings() -> None:
    assert metadata_text({"n": 3, "ok": False, "none": None, "s": "x", 1: 2}) == {
        "n": "3",
        "ok": "false",
        "none": "null",
        "s": "x",
        "1": "2",
    }
    assert metadata_text({"odd": {(1, 2): "tuple key"}}) == {"odd": "{(1, 2): 'tuple key'}"}
    error = NotFound("CART_NOT_FOUND", attempts=3)
    assert error.metadata == {"attempts": "3"}
    assert error.with_metadata(retry=False).metadata == {"attempts": "3", "retry": "false"}
    assert cart_error().to_dict()["metadata"] == EXPECTED
    info = error_details_pb2.ErrorInfo()
    assert to_rpc_status(cart_error()).details[0].Unpack(info)
    assert dict(info.metadata) == EXPECTED


async def test_item10_http_answers_string_metadata() -> None:
    router = Router()

    @router.get("/cart")
    async def cart() -> None:
        raise cart_error()

    server = HttpServer(port=0, middlewares=[recovery()])
    server.include_router(router)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            response = await client.get("/cart")
    finally:
        await server.stop(5)
    assert response.status_code == 404
    assert response.json()["metadata"] == EXPECTED


class CartService(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
    async def Unary(self, request: Any, context: Any) -> Any:
        raise cart_error()


async def test_item10_grpc_answers_the_same_metadata_and_round_trips() -> None:
    server = GrpcServer(middlewares=[recovery()])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, CartService())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://")) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest())
    finally:
        await server.stop(5)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND  # not UNKNOWN ... TypeError
    error = from_exception(caught.value)
    assert (error.code, error.reason, error.message) == (404, "CART_NOT_FOUND", "cart 7 not found")
    assert error.metadata == EXPECTED


async def test_item10_websocket_answers_the_same_metadata() -> None:
    ws = WebSocketServer()

    @ws.on("cart.get")
    async def get_cart() -> None:
        raise cart_error()

    await ws.start()
    try:
        async with connect(ws.endpoint, open_timeout=10) as client:
            await client.send(orjson.dumps({"type": "cart.get", "id": 1}).decode())
            frame = orjson.loads(await client.recv())
    finally:
        await ws.stop(5)
    assert frame["error"]["code"] == 404
    assert frame["error"]["metadata"] == EXPECTED
