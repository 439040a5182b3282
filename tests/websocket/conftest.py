"""Fixtures for the WebSocket server tests: servers that stop at teardown, JSON helpers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from framework.transport.websocket import Session, WebSocketServer

TIMEOUT = 10.0  # generous per-operation bound for a busy machine

Serve = Callable[[WebSocketServer], Awaitable[WebSocketServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(ws)`` starts ``ws``; every server started this way stops at teardown."""
    started: list[WebSocketServer] = []

    async def start(ws: WebSocketServer) -> WebSocketServer:
        await ws.start()
        started.append(ws)
        return ws

    yield start
    for ws in reversed(started):
        await ws.stop(5)


async def recv_json(client: ClientConnection) -> Any:
    """The next message as JSON, failing the test if none comes within :data:`TIMEOUT`."""
    async with asyncio.timeout(TIMEOUT):
        return orjson.loads(await client.recv())


async def request(client: ClientConnection, kind: str, payload: Any = None, id: Any = None) -> Any:
    """Send an envelope and return the next message."""
    envelope: dict[str, Any] = {"type": kind, "payload": payload}
    if id is not None:
        envelope["id"] = id
    await client.send(orjson.dumps(envelope).decode())
    return await recv_json(client)


def open_client(url: str, **kwargs: Any) -> Any:
    """``websockets`` client with a bounded open timeout."""
    return connect(url, open_timeout=TIMEOUT, **kwargs)


def small_buffer_socket(endpoint: str, size: int = 4096) -> socket.socket:
    """A connected TCP socket with a tiny receive buffer: a client that stops reading fills
    it (and the server's queue) after a few KiB instead of megabytes."""
    host, port = endpoint.removeprefix("ws://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def shrink_send_buffer(session: Session, size: int = 4096) -> None:
    """Shrink the server side's kernel send buffer (autotuned up to MiBs on loopback), so the
    frames a non-reading client leaves behind pile up in the session, not in the kernel."""
    sock = session.connection.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
