"""Lifecycle: graceful stop (drain, 1001), stop timeout, idle timeout, connect callbacks, App."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from framework import App
from framework.errors import Forbidden
from framework.transport import Server
from framework.transport.websocket import (
    GOING_AWAY,
    IDLE_CLOSE_CODE,
    Session,
    WebSocketServer,
)

from .conftest import (
    TIMEOUT,
    Serve,
    open_client,
    recv_json,
    request,
    shrink_send_buffer,
    small_buffer_socket,
)


async def test_graceful_stop_delivers_pending_messages_then_closes_1001(serve: Serve) -> None:
    ws = WebSocketServer(send_queue_size=1000, write_limit=8 * 1024)
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    ws.on_connect(sessions.put)
    await serve(ws)
    async with open_client(ws.endpoint, sock=small_buffer_socket(ws.endpoint)) as client:
        session = await asyncio.wait_for(sessions.get(), TIMEOUT)
        shrink_send_buffer(session)
        total = 200
        for n in range(total):
            assert await session.send({"n": n, "pad": "x" * 2048})
        assert session.pending > 0  # the client has not read: most frames are queued

        stopping = asyncio.create_task(ws.stop(TIMEOUT))
        received = []
        with pytest.raises(ConnectionClosedOK):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    received.append((await recv_json(client))["n"])
        assert received == list(range(total))
        assert client.close_code == GOING_AWAY
        await asyncio.wait_for(stopping, TIMEOUT)
        assert not await session.send({"n": "after stop"})


async def test_stop_waits_for_the_handler_in_flight_and_delivers_its_reply(serve: Serve) -> None:
    ws = WebSocketServer()
    started, release = asyncio.Event(), asyncio.Event()

    @ws.on("slow")
    async def slow() -> str:
        started.set()
        await release.wait()
        return "done"

    await serve(ws)
    async with open_client(ws.endpoint) as client:
        await client.send('{"type": "slow", "id": 1}')
        await asyncio.wait_for(started.wait(), TIMEOUT)
        stopping = asyncio.create_task(ws.stop(TIMEOUT))
        # Frames read during the stop are answered, not served.
        await client.send('{"type": "slow", "id": 2}')
        await asyncio.sleep(0.05)
        assert not stopping.done()  # blocked on the handler in flight
        release.set()
        assert await recv_json(client) == {"type": "slow.reply", "id": 1, "payload": "done"}
        reply = await recv_json(client)
        assert (reply["id"], reply["error"]["code"], reply["error"]["reason"]) == (
            2,
            503,
            "SHUTTING_DOWN",
        )
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(client.recv(), TIMEOUT)
        assert client.close_code == GOING_AWAY
        await asyncio.wait_for(stopping, TIMEOUT)


async def test_stop_is_bounded_by_its_timeout(serve: Serve) -> None:
    ws = WebSocketServer()
    started = asyncio.Event()

    @ws.on("stuck")
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes

    await serve(ws)
    async with open_client(ws.endpoint) as client:
        await client.send('{"type": "stuck"}')
        await asyncio.wait_for(started.wait(), TIMEOUT)
        begun = time.monotonic()
        await ws.stop(0.3)
        assert time.monotonic() - begun < 2.0
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), TIMEOUT)
    assert ws.sessions == {}


async def test_idle_timeout_closes_silent_clients_only(serve: Serve) -> None:
    ws = WebSocketServer(idle_timeout=0.3)

    @ws.on("ping")
    async def ping() -> str:
        return "pong"

    await serve(ws)
    async with open_client(ws.endpoint) as silent, open_client(ws.endpoint) as chatty:
        for _ in range(6):  # 0.6 s of activity: twice the idle timeout
            assert (await request(chatty, "ping", id=1))["payload"] == "pong"
            await asyncio.sleep(0.1)
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(silent.recv(), TIMEOUT)
        assert (silent.close_code, silent.close_reason) == (IDLE_CLOSE_CODE, "idle timeout")
        assert (await request(chatty, "ping", id=2))["payload"] == "pong"


async def test_connect_callback_can_refuse_and_disconnect_callback_runs(serve: Serve) -> None:
    ws = WebSocketServer()
    events: list[tuple[str, str]] = []
    gone = asyncio.Event()

    @ws.on_connect
    async def connected(session: Session) -> None:
        if session.query.get("user") == "mallory":
            raise Forbidden("NOT_WELCOME", "go away")
        session.state["user"] = session.query["user"]
        events.append(("connect", session.query["user"]))

    @ws.on_disconnect
    def disconnected(session: Session) -> None:  # sync callbacks work too
        events.append(("disconnect", session.query["user"]))
        if len(events) == 3:
            gone.set()

    @ws.on("who")
    async def who(session: Session) -> Any:
        return session.state["user"]

    await serve(ws)
    async with open_client(ws.endpoint + "/?user=mallory") as refused:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(refused.recv(), TIMEOUT)
        assert (refused.close_code, refused.close_reason) == (1008, "NOT_WELCOME")
    async with open_client(ws.endpoint + "/?user=alice") as client:
        assert (await request(client, "who", id=1))["payload"] == "alice"
    await asyncio.wait_for(gone.wait(), TIMEOUT)
    assert events == [("disconnect", "mallory"), ("connect", "alice"), ("disconnect", "alice")]


async def test_runs_under_the_app() -> None:
    ws = WebSocketServer(name="push")
    assert isinstance(ws, Server)
    assert ws.endpoint == ""

    @ws.on("ping")
    async def ping() -> str:
        return "pong"

    async with App("ws-test", servers=[ws], handle_signals=False, stop_timeout=5):
        assert ws.endpoint.startswith("ws://127.0.0.1:")
        async with open_client(ws.endpoint) as client:
            assert (await request(client, "ping", id=1))["payload"] == "pong"
            app_stopped = False
        app_stopped = True
    assert app_stopped
    with pytest.raises(OSError):
        async with open_client(ws.endpoint):
            pass


async def test_keepalive_drops_a_client_that_stops_answering_pings(serve: Serve) -> None:
    # close_timeout bounds the close handshake the dead client will not answer either.
    ws = WebSocketServer(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2)
    gone = asyncio.Event()
    ws.on_disconnect(lambda session: gone.set())
    await serve(ws)
    host, port = ws.endpoint.removeprefix("ws://").rsplit(":", 1)
    # A raw TCP client: completes the handshake, then never reads, so never answers a ping.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert status.startswith(b"HTTP/1.1 101")
    assert len(ws.sessions) == 1
    try:
        await asyncio.wait_for(gone.wait(), TIMEOUT)
        assert ws.sessions == {}
    finally:
        writer.close()
