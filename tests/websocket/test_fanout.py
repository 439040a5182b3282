"""Server pushes: to one session, to a room, to everyone; rooms joined and left by handlers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from framework.transport.websocket import Session, WebSocketServer

from .conftest import TIMEOUT, Serve, open_client, recv_json, request


def rooms_server() -> tuple[WebSocketServer, dict[str, Session], asyncio.Event]:
    """A server whose clients join/leave rooms by message; sessions recorded by ``name``."""
    ws = WebSocketServer()
    by_name: dict[str, Session] = {}
    gone = asyncio.Event()

    @ws.on_connect
    async def connected(session: Session) -> None:
        by_name[session.query["name"]] = session

    @ws.on_disconnect
    async def disconnected(session: Session) -> None:
        gone.set()

    @ws.on("join")
    async def join(room: str, session: Session) -> list[str]:
        session.join(room)
        return sorted(session.rooms)

    @ws.on("leave")
    async def leave(room: str, session: Session) -> list[str]:
        session.leave(room)
        return sorted(session.rooms)

    return ws, by_name, gone


async def test_broadcast_reaches_100_clients(serve: Serve) -> None:
    ws, _, _ = rooms_server()
    await serve(ws)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(open_client(f"{ws.endpoint}/?name=c{n}"))
            for n in range(100)
        ]
        assert len(ws.sessions) == 100
        for n in range(3):
            assert await ws.broadcast({"n": n}, type="tick") == 100
        got = await asyncio.gather(*(recv_three(c) for c in clients))
        expected = [{"type": "tick", "payload": {"n": n}} for n in range(3)]
        assert all(messages == expected for messages in got)


async def recv_three(client: Any) -> list[Any]:
    return [await recv_json(client) for _ in range(3)]


async def test_room_send_only_reaches_members(serve: Serve) -> None:
    ws, by_name, gone = rooms_server()
    await serve(ws)
    async with (
        open_client(f"{ws.endpoint}/?name=a") as a,
        open_client(f"{ws.endpoint}/?name=b") as b,
        open_client(f"{ws.endpoint}/?name=c") as c,
    ):
        assert (await request(a, "join", "orders:1", id=1))["payload"] == ["orders:1"]
        assert (await request(b, "join", "orders:1", id=1))["payload"] == ["orders:1"]
        assert (await request(b, "join", "orders:2", id=2))["payload"] == ["orders:1", "orders:2"]
        assert ws.rooms() == {"orders:1": 2, "orders:2": 1}

        assert await ws.send_to_room("orders:1", {"status": "paid"}, type="order.updated") == 2
        assert await ws.send_to_room("orders:2", "raw text frame") == 1
        assert await ws.send_to_room("nobody-here", {"x": 1}) == 0
        assert await recv_json(a) == {"type": "order.updated", "payload": {"status": "paid"}}
        assert await recv_json(b) == {"type": "order.updated", "payload": {"status": "paid"}}
        async with asyncio.timeout(TIMEOUT):
            assert await b.recv() == "raw text frame"

        # c got nothing: the next thing it receives is what is sent to it directly.
        assert await ws.send(by_name["c"].id, {"only": "c"})
        assert await recv_json(c) == {"only": "c"}

        # Leaving stops delivery; so does disconnecting.
        assert (await request(a, "leave", "orders:1", id=3))["payload"] == []
        assert await ws.send_to_room("orders:1", {"n": 2}) == 1
        assert await recv_json(b) == {"n": 2}
        await b.close()
        await asyncio.wait_for(gone.wait(), TIMEOUT)
        assert ws.rooms() == {}
        assert await ws.send_to_room("orders:1", {"n": 3}) == 0
        assert not await ws.send(by_name["b"].id, {"n": 4})


async def test_session_send_from_handler_keeps_order_with_reply(serve: Serve) -> None:
    ws = WebSocketServer()

    @ws.on("subscribe")
    async def subscribe(topic: str, session: Session) -> str:
        for n in range(3):
            await session.send({"topic": topic, "n": n}, type="event")
        return "subscribed"

    await serve(ws)
    async with open_client(ws.endpoint) as client:
        await client.send('{"type": "subscribe", "payload": "prices", "id": 1}')
        got = [await recv_json(client) for _ in range(4)]
    assert [m["type"] for m in got] == ["event", "event", "event", "subscribe.reply"]
    assert [m["payload"]["n"] for m in got[:3]] == [0, 1, 2]


async def test_compression_negotiated_per_connection(serve: Serve) -> None:
    ws = WebSocketServer(compression="deflate")

    @ws.on("echo")
    async def echo(payload: Any) -> Any:
        return payload

    await serve(ws)
    async with (
        open_client(ws.endpoint) as deflating,
        open_client(ws.endpoint, compression=None) as plain,
    ):
        assert deflating.protocol.extensions and not plain.protocol.extensions
        text = "compressible " * 200
        assert (await request(deflating, "echo", text, id=1))["payload"] == text
        assert await ws.broadcast({"text": text}, type="news") == 2
        for client in (deflating, plain):
            assert await recv_json(client) == {"type": "news", "payload": {"text": text}}
