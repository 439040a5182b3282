"""Handshake: path routing, origin check and the authenticate hook (HTTP 401/403/404)."""

from __future__ import annotations

import re

import orjson
import pytest
from websockets.exceptions import InvalidStatus

from framework.errors import Forbidden
from framework.transport.websocket import Handshake, Session, WebSocketServer

from .conftest import Serve, open_client, request


def token_auth(handshake: Handshake) -> str | None:
    token = handshake.token()
    if token == "banned":
        raise Forbidden("USER_BANNED", "this user is banned")
    return {"t-alice": "alice", "t-bob": "bob"}.get(token or "")


def whoami_server(**kwargs: object) -> WebSocketServer:
    ws = WebSocketServer(**kwargs)  # type: ignore[arg-type]

    @ws.on("whoami")
    async def whoami(session: Session) -> dict[str, object]:
        return {"principal": session.principal, "path": session.path}

    return ws


async def rejected(url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    with pytest.raises(InvalidStatus) as info:
        async with open_client(url, **kwargs):
            pass
    response = info.value.response
    return response.status_code, orjson.loads(response.body)


async def test_missing_or_bad_token_is_rejected_with_401(serve: Serve) -> None:
    ws = await serve(whoami_server(authenticate=token_auth))
    status, body = await rejected(ws.endpoint + "/ws")
    assert status == 401
    assert body["reason"] == "UNAUTHENTICATED"
    status, _ = await rejected(ws.endpoint + "/ws?token=wrong")
    assert status == 401


async def test_authenticate_raising_forbidden_gives_403_with_its_reason(serve: Serve) -> None:
    ws = await serve(whoami_server(authenticate=token_auth))
    status, body = await rejected(ws.endpoint + "/ws?token=banned")
    assert (status, body["reason"], body["message"]) == (403, "USER_BANNED", "this user is banned")


async def test_header_and_query_tokens_are_accepted(serve: Serve) -> None:
    ws = await serve(whoami_server(authenticate=token_auth))
    async with open_client(
        ws.endpoint + "/ws", additional_headers={"Authorization": "Bearer t-alice"}
    ) as client:
        reply = await request(client, "whoami", id=1)
        assert reply["payload"] == {"principal": "alice", "path": "/ws"}
    async with open_client(ws.endpoint + "/ws?token=t-bob") as client:
        assert (await request(client, "whoami", id=2))["payload"]["principal"] == "bob"


async def test_async_authenticate_hook(serve: Serve) -> None:
    async def auth(handshake: Handshake) -> str | None:
        return handshake.headers.get("x-user")

    ws = await serve(whoami_server(authenticate=auth))
    async with open_client(ws.endpoint, additional_headers={"X-User": "carol"}) as client:
        assert (await request(client, "whoami", id=1))["payload"]["principal"] == "carol"
    assert (await rejected(ws.endpoint))[0] == 401


async def test_broken_authenticate_hook_is_a_500_not_an_open_door(serve: Serve) -> None:
    def auth(handshake: Handshake) -> str:
        raise KeyError("bug")

    ws = await serve(whoami_server(authenticate=auth))
    status, body = await rejected(ws.endpoint)
    assert status == 500
    assert body["reason"] == "AUTHENTICATE_FAILED"


async def test_origin_check(serve: Serve) -> None:
    ws = await serve(
        whoami_server(
            allowed_origins=["https://shop.example", re.compile(r"https://.*\.shop\.example")]
        )
    )
    status, body = await rejected(ws.endpoint, origin="https://evil.example")
    assert (status, body["reason"]) == (403, "ORIGIN_NOT_ALLOWED")
    # No Origin header (a non-browser client) is refused unless None is allowed.
    assert (await rejected(ws.endpoint))[0] == 403
    for origin in ("https://shop.example", "https://eu.shop.example"):
        async with open_client(ws.endpoint, origin=origin) as client:
            assert (await request(client, "whoami", id=1))["type"] == "whoami.reply"


async def test_origin_none_admits_clients_without_origin(serve: Serve) -> None:
    ws = await serve(whoami_server(allowed_origins=["https://shop.example", None]))
    async with open_client(ws.endpoint) as client:
        assert (await request(client, "whoami", id=1))["type"] == "whoami.reply"
    assert (await rejected(ws.endpoint, origin="https://evil.example"))[0] == 403


async def test_path_routing(serve: Serve) -> None:
    ws = WebSocketServer()
    orders, prices = ws.route("/ws/orders"), ws.route("/ws/prices")

    @ws.on("ping")  # every path
    async def ping() -> str:
        return "pong"

    @orders.on("kind")
    async def orders_kind() -> str:
        return "orders"

    @prices.on("kind")
    async def prices_kind() -> str:
        return "prices"

    await serve(ws)
    async with open_client(ws.endpoint + "/ws/orders?x=1") as client:
        assert (await request(client, "kind", id=1))["payload"] == "orders"
        assert (await request(client, "ping", id=2))["payload"] == "pong"
    async with open_client(ws.endpoint + "/ws/prices") as client:
        assert (await request(client, "kind", id=1))["payload"] == "prices"
    status, body = await rejected(ws.endpoint + "/ws/unknown")
    assert (status, body["reason"]) == (404, "ROUTE_NOT_FOUND")


async def test_router_declared_elsewhere_is_mounted_and_route_handlers_win(serve: Serve) -> None:
    from framework.transport.websocket import WebSocketRouter

    service = WebSocketRouter()

    @service.on("hello")
    async def hello(name: str) -> str:
        return f"hello {name}"

    @service.route("/ws/special").on("hello")
    async def special_hello(name: str) -> str:
        return f"special {name}"

    ws = WebSocketServer()
    ws.include_router(service)
    ws.route("/ws/plain")
    await serve(ws)
    with pytest.raises(RuntimeError, match="before websocket server"):
        ws.on("late")
    async with open_client(ws.endpoint + "/ws/plain") as client:
        assert (await request(client, "hello", "ann", id=1))["payload"] == "hello ann"
    async with open_client(ws.endpoint + "/ws/special") as client:
        assert (await request(client, "hello", "ann", id=1))["payload"] == "special ann"
