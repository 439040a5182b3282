"""Slow clients: bounded per-client memory, with the drop-oldest or disconnect policy.

A client that stops reading is simulated with tiny socket buffers on both ends and a
websockets client that is simply not asked to ``recv()``: the server's transport buffer then
fills up to ``write_limit`` and frames go to the session queue, deterministically after a few
dozen 4 KiB frames.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from framework.transport.websocket import SLOW_CLIENT_CLOSE_CODE, Session, WebSocketServer

from .conftest import (
    TIMEOUT,
    Serve,
    open_client,
    recv_json,
    shrink_send_buffer,
    small_buffer_socket,
)

QUEUE = 8
WRITE_LIMIT = 16 * 1024
PAD = "x" * 4096
FRAME_MAX = len(PAD) + 100


def server(policy: str) -> tuple[WebSocketServer, asyncio.Queue[Session], asyncio.Event]:
    ws = WebSocketServer(
        send_queue_size=QUEUE,
        write_limit=WRITE_LIMIT,
        slow_client_policy=policy,  # type: ignore[arg-type]
    )
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    gone = asyncio.Event()
    ws.on_connect(sessions.put)

    @ws.on_disconnect
    async def disconnected(session: Session) -> None:
        gone.set()

    return ws, sessions, gone


def assert_bounded(session: Session) -> None:
    assert session.pending <= QUEUE
    assert session.connection.transport.get_write_buffer_size() <= WRITE_LIMIT + FRAME_MAX


async def test_drop_oldest_keeps_memory_bounded_and_delivers_the_newest(serve: Serve) -> None:
    ws, sessions, _ = server("drop_oldest")
    await serve(ws)
    async with open_client(ws.endpoint, sock=small_buffer_socket(ws.endpoint)) as client:
        session = await asyncio.wait_for(sessions.get(), TIMEOUT)
        shrink_send_buffer(session)
        sent = 0
        # The client reads nothing: push until the policy had to drop (bounded loop).
        while session.dropped == 0:
            assert sent < 5000, "the queue never filled up"
            assert await session.send({"n": sent, "pad": PAD})
            sent += 1
            assert_bounded(session)
            await asyncio.sleep(0)  # let the writer task and the transport run
        for _ in range(200):  # keep pushing: memory stays bounded, drops grow
            assert await session.send({"n": sent, "pad": PAD})
            sent += 1
            assert_bounded(session)
            await asyncio.sleep(0)
        assert session.pending == QUEUE
        assert session.dropped >= 200

        # The client resumes reading: everything not dropped arrives, in order, ending with
        # the newest message.
        received: list[int] = []
        while not received or received[-1] != sent - 1:
            received.append((await recv_json(client))["n"])
        assert received == sorted(received)
        assert len(received) + session.dropped == sent
        assert await session.send({"n": "after"})  # the connection is still usable
        assert (await recv_json(client))["n"] == "after"


async def test_disconnect_policy_closes_a_slow_client_with_1013(serve: Serve) -> None:
    ws, sessions, gone = server("disconnect")
    await serve(ws)
    async with open_client(ws.endpoint, sock=small_buffer_socket(ws.endpoint)) as client:
        session = await asyncio.wait_for(sessions.get(), TIMEOUT)
        shrink_send_buffer(session)
        sent = 0
        while not session.closed:
            assert sent < 5000, "the queue never filled up"
            await session.send({"n": sent, "pad": PAD})
            sent += 1
            assert_bounded(session)
            await asyncio.sleep(0)
        assert session.pending == 0  # the queue was released at once
        assert not await session.send({"n": "late"})
        assert not await ws.send(session.id, {"n": "late"})

        # The client eventually reads what was already written, then the close frame.
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    message: Any = await client.recv()
                    assert "late" not in message
        assert client.close_code == SLOW_CLIENT_CLOSE_CODE
        await asyncio.wait_for(gone.wait(), TIMEOUT)
        assert session.id not in ws.sessions


async def test_fast_clients_are_unaffected_by_a_slow_one(serve: Serve) -> None:
    ws, sessions, _ = server("drop_oldest")

    @ws.on("join")
    async def join(session: Session) -> None:
        session.join("all")

    await serve(ws)
    async with (
        open_client(ws.endpoint, sock=small_buffer_socket(ws.endpoint)) as slow,
        open_client(ws.endpoint) as fast,
    ):
        slow_session = await asyncio.wait_for(sessions.get(), TIMEOUT)
        await asyncio.wait_for(sessions.get(), TIMEOUT)
        shrink_send_buffer(slow_session)
        for client in (slow, fast):
            await client.send('{"type": "join", "id": 1}')
        assert (await recv_json(slow))["type"] == "join.reply"
        assert (await recv_json(fast))["type"] == "join.reply"
        for n in range(300):
            assert await ws.send_to_room("all", {"n": n, "pad": PAD}) == 2
            assert_bounded(slow_session)
            if n % 10 == 0:  # the fast client reads as it goes
                for expected in range(n - 9 if n else 0, n + 1):
                    assert (await recv_json(fast))["n"] == expected
            await asyncio.sleep(0)
        assert slow_session.dropped > 0
        slow.transport.abort()  # it would take close_timeout to read its backlog
