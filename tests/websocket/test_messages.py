"""Typed message handlers: replies with correlation ids, error frames, malformed frames,
binary framing, middleware and dependency injection."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosedError

from framework.errors import NotFound
from framework.middleware import Handler, Middleware, recovery, validate
from framework.transport import Transport, from_context
from framework.transport.websocket import (
    HandlerSignatureError,
    Session,
    WebSocketServer,
    WiringError,
    decode_binary,
    encode_binary,
)

from .conftest import TIMEOUT, Serve, open_client, recv_json, request


class PriceQuery(BaseModel):
    sku: str
    quantity: int = 1


class Price(BaseModel):
    sku: str
    total_cents: int


def shop_server(**kwargs: Any) -> WebSocketServer:
    ws = WebSocketServer(**kwargs)

    @ws.on("price.get")
    async def get_price(query: PriceQuery) -> Price:
        if query.sku == "missing":
            raise NotFound("SKU_NOT_FOUND", f"no sku {query.sku}", sku=query.sku)
        return Price(sku=query.sku, total_cents=250 * query.quantity)

    @ws.on("crash")
    async def crash() -> None:
        raise RuntimeError("database password is hunter2")

    @ws.on("echo")
    async def echo(payload: Any) -> Any:
        return payload

    return ws


async def test_typed_round_trip_with_correlation_id(serve: Serve) -> None:
    ws = await serve(shop_server())
    async with open_client(ws.endpoint) as client:
        reply = await request(client, "price.get", {"sku": "apple", "quantity": 3}, id="c-1")
        assert reply == {
            "type": "price.get.reply",
            "id": "c-1",
            "payload": {"sku": "apple", "total_cents": 750},
        }
        reply = await request(client, "price.get", {"sku": "pear"}, id=42)
        assert (reply["id"], reply["payload"]["total_cents"]) == (42, 250)


async def test_handler_error_becomes_error_frame_and_connection_stays_up(serve: Serve) -> None:
    ws = await serve(shop_server())
    async with open_client(ws.endpoint) as client:
        reply = await request(client, "price.get", {"sku": "missing"}, id=7)
        assert reply == {
            "type": "error",
            "id": 7,
            "error": {
                "code": 404,
                "reason": "SKU_NOT_FOUND",
                "message": "no sku missing",
                "metadata": {"sku": "missing"},
            },
        }
        # An unexpected exception is a 500 that does not leak its text.
        reply = await request(client, "crash", id=8)
        assert reply["error"]["code"] == 500
        assert reply["error"]["reason"] == "INTERNAL_ERROR"
        assert "hunter2" not in orjson.dumps(reply).decode()
        # Invalid payloads are 400 BAD_PAYLOAD naming the field.
        reply = await request(client, "price.get", {"sku": "a", "quantity": "many"}, id=9)
        assert reply["error"]["reason"] == "BAD_PAYLOAD"
        assert "quantity" in reply["error"]["message"]
        # Still served.
        assert (await request(client, "echo", [1, 2], id=10))["payload"] == [1, 2]


async def test_malformed_frames_get_error_frames_or_close_while_others_are_served(
    serve: Serve,
) -> None:
    ws = await serve(shop_server(max_message_size=4096))
    async with open_client(ws.endpoint) as bad, open_client(ws.endpoint) as good:
        for frame, reason in [
            ("not json", "BAD_FRAME"),
            ("[1, 2]", "BAD_FRAME"),
            ('{"payload": 1}', "BAD_FRAME"),
            ('{"type": 5}', "BAD_FRAME"),
            ('{"type": "nope", "id": "x"}', "UNKNOWN_TYPE"),
        ]:
            await bad.send(frame)
            reply = await recv_json(bad)
            assert (reply["type"], reply["error"]["reason"]) == ("error", reason), frame
            assert reply["error"]["code"] == 400
        assert (await recv_json_after(good, "echo", "still here")) == "still here"
        # Oversize: the protocol closes that connection with 1009 (message too big).
        await bad.send('{"type": "echo", "payload": "' + "x" * 8192 + '"}')
        with pytest.raises(ConnectionClosedError):
            async with asyncio.timeout(TIMEOUT):
                await bad.recv()
        assert bad.close_code == 1009
        assert (await recv_json_after(good, "echo", "and still")) == "and still"


async def recv_json_after(client: Any, kind: str, payload: Any) -> Any:
    return (await request(client, kind, payload, id=1))["payload"]


async def test_reply_without_id_and_none_result(serve: Serve) -> None:
    ws = WebSocketServer()
    seen: asyncio.Queue[Any] = asyncio.Queue()

    @ws.on("note")
    async def note(payload: Any) -> None:
        await seen.put(payload)

    await serve(ws)
    async with open_client(ws.endpoint) as client:
        # Fire-and-forget (no id, no result): no reply frame at all.
        await client.send('{"type": "note", "payload": 1}')
        assert await asyncio.wait_for(seen.get(), TIMEOUT) == 1
        # With an id the client is waiting: a reply with a null payload acknowledges it.
        assert await request(client, "note", 2, id="a") == {
            "type": "note.reply",
            "id": "a",
            "payload": None,
        }


async def test_binary_framing(serve: Serve) -> None:
    ws = shop_server()

    @ws.on("reverse")
    async def reverse(data: bytes) -> bytes:
        return data[::-1]

    await serve(ws)
    async with open_client(ws.endpoint) as client:
        await client.send(encode_binary("reverse", b"\x00\x01\xff", "r1"))
        reply = decode_binary(await client.recv())
        assert (reply.type, reply.id, reply.payload, reply.binary) == (
            "reverse.reply",
            "r1",
            b"\xff\x01\x00",
            True,
        )
        # A JSON payload in a binary frame, validated into the model.
        await client.send(encode_binary("price.get", {"sku": "kiwi", "quantity": 2}, "p"))
        reply = decode_binary(await client.recv())
        assert (reply.type, orjson.loads(reply.payload)) == (
            "price.get.reply",
            {"sku": "kiwi", "total_cents": 500},
        )
        # Errors come back binary too.
        await client.send(encode_binary("price.get", {"sku": "missing"}, "q"))
        reply = decode_binary(await client.recv())
        assert (reply.type, reply.id, orjson.loads(reply.payload)["reason"]) == (
            "error",
            "q",
            "SKU_NOT_FOUND",
        )
        await client.send(b"\x00")
        reply = decode_binary(await client.recv())
        assert orjson.loads(reply.payload)["reason"] == "BAD_FRAME"


async def test_middleware_sees_transport_context_and_session(serve: Serve) -> None:
    seen: list[tuple[Transport, Any]] = []

    def spy() -> Middleware:
        def middleware(handler: Handler) -> Handler:
            async def run(request: Any) -> Any:
                transport = from_context()
                assert transport is not None
                seen.append((transport, request))
                transport.reply_headers["x-ignored"] = "websocket has no reply headers"
                return await handler(request)

            return run

        return middleware

    ws = await serve(shop_server(middlewares=[recovery(), spy(), validate()]))
    async with open_client(
        ws.endpoint + "/ws?room=1", additional_headers={"X-Tenant": "t1"}
    ) as client:
        await request(client, "price.get", {"sku": "fig"}, id=1)
    transport, payload = seen[0]
    assert transport.kind == "websocket"
    assert transport.operation == "price.get"
    assert transport.request_headers["x-tenant"] == "t1"
    assert transport.endpoint == ws.endpoint
    assert isinstance(transport.raw, Session)
    assert transport.raw.query == {"room": "1"}
    assert payload == PriceQuery(sku="fig")  # middleware sees the typed payload
    assert from_context() is None  # the context does not leak out of the message


async def test_selector_middleware_by_message_type(serve: Serve) -> None:
    from framework.errors import Forbidden
    from framework.middleware import selector

    def deny() -> Middleware:
        def middleware(handler: Handler) -> Handler:
            async def run(request: Any) -> Any:
                raise Forbidden("ADMIN_ONLY", "admins only")

            return run

        return middleware

    ws = await serve(shop_server(middlewares=[selector(deny()).prefix("crash").build()]))
    async with open_client(ws.endpoint) as client:
        assert (await request(client, "crash", id=1))["error"]["reason"] == "ADMIN_ONLY"
        assert (await request(client, "echo", 5, id=2))["payload"] == 5


class Pricing:
    def __init__(self, factor: int) -> None:
        self.factor = factor


class Container(containers.DeclarativeContainer):
    pricing = providers.Singleton(Pricing, factor=3)


@inject
async def priced(
    query: PriceQuery, session: Session, pricing: Pricing = Provide[Container.pricing]
) -> dict[str, Any]:
    return {"cents": 100 * query.quantity * pricing.factor, "session": session.id != ""}


async def test_dependency_injection(serve: Serve) -> None:
    container = Container()
    container.wire(modules=[__name__])
    try:
        ws = WebSocketServer()
        ws.on("priced")(priced)
        await serve(ws)
        async with open_client(ws.endpoint) as client:
            reply = await request(client, "priced", {"sku": "a", "quantity": 2}, id=1)
            assert reply["payload"] == {"cents": 600, "session": True}
    finally:
        container.unwire()


async def test_unwired_provide_fails_at_start_naming_the_handler() -> None:
    ws = WebSocketServer()
    ws.on("priced")(priced)  # the container was never wired for this module
    with pytest.raises(WiringError, match=r"test_messages\.priced.*'priced'.*pricing"):
        await ws.start()
    await ws.stop(1)  # safe after a failed start

    async def forgot_inject(q: PriceQuery, pricing: Pricing = Provide[Container.pricing]) -> None:
        return None

    ws = WebSocketServer()
    ws.on("x")(forgot_inject)
    with pytest.raises(WiringError, match=r"forgot_inject.*@inject"):
        await ws.start()


async def test_unsupported_handler_parameter_fails_at_start() -> None:
    ws = WebSocketServer()

    @ws.on("two")
    async def two(a: int, b: int) -> None:
        return None

    with pytest.raises(HandlerSignatureError, match=r"two.*'b'"):
        await ws.start()


def test_duplicate_type_is_refused() -> None:
    ws = WebSocketServer()
    ws.on("a")(lambda: None)
    with pytest.raises(ValueError, match="already has a handler"):
        ws.on("a")(lambda: None)
