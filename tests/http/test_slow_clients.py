"""Slow clients cannot hold connections: a request head dripped a byte at a time (slowloris), a
body that stops arriving and a connection that never sends anything are closed after the
server's header_timeout / body_timeout, with a 408 when part of a request came in. Both of
uvicorn's HTTP/1.1 parsers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest
import websockets
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from framework.transport.http import HttpServer, Router

from .rawhttp import connect, read_eof, read_response, request

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
#: A client dripping for this long without being cut off means there is no timeout.
GIVE_UP = 6.0


class Note(BaseModel):
    text: str


def _router() -> Router:
    router = Router()

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @router.post("/notes")
    async def notes(note: Note) -> Note:
        return note

    @router.websocket("/echo")
    async def echo(socket: WebSocket) -> None:
        await socket.accept()
        try:
            while True:
                await socket.send_text((await socket.receive_text()).upper())
        except WebSocketDisconnect:
            pass

    return router


@pytest.fixture(params=["httptools", "h11"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[HttpServer]:
    server = HttpServer(
        port=0, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT, http=request.param
    )
    server.include_router(_router())
    await server.start()
    try:
        yield server
    finally:
        await server.stop(5)


async def _drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Write ``data`` a byte every ``every`` s (for at most GIVE_UP s); the test cancels it
    once the server has closed."""
    started = time.monotonic()
    for byte in data:
        if writer.is_closing() or time.monotonic() - started > GIVE_UP:
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, OSError):
            break
        await asyncio.sleep(every)


async def _dripped_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[bytes, float]:
    """Drip ``data`` until the server closes: what it sent and how long that took."""
    started = time.monotonic()
    drip = asyncio.create_task(_drip(writer, data, 0.02))
    try:
        raw = await read_eof(reader, GIVE_UP + 2)
    finally:
        drip.cancel()
    return raw, time.monotonic() - started


def _assert_408(raw: bytes) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), raw[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["reason"] == "REQUEST_TIMEOUT"


async def test_a_dripped_request_head_is_cut_off_with_408(server: HttpServer) -> None:
    reader, writer = await connect(server.endpoint)
    head = b"GET /ping HTTP/1.1\r\nhost: test\r\n" + b"x-slow: " + b"a" * 200 + b"\r\n\r\n"
    raw, elapsed = await _dripped_until_closed(reader, writer, head)
    writer.close()
    _assert_408(raw)
    assert elapsed < GIVE_UP, "the server kept reading the dripped head"


async def test_a_silent_connection_is_closed(server: HttpServer) -> None:
    reader, writer = await connect(server.endpoint)
    started = time.monotonic()
    assert await read_eof(reader, GIVE_UP) == b""  # closed, nothing sent
    assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9
    writer.close()


async def test_the_next_request_on_a_kept_alive_connection_is_timed_too(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server.endpoint)
    for _ in range(2):  # normal requests on the same connection are not affected
        writer.write(request("/ping"))
        assert (await read_response(reader)).status == 200
    await asyncio.sleep(HEADER_TIMEOUT * 1.5)  # idle longer than the head timeout: allowed
    writer.write(request("/ping"))
    assert (await read_response(reader)).status == 200
    raw, _ = await _dripped_until_closed(reader, writer, request("/ping") + b"x" * 200)
    writer.close()
    _assert_408(raw)


async def test_a_body_that_stops_arriving_is_cut_off_with_408(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(server.endpoint)
    head = b"POST /notes HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
    writer.write(head + b"content-length: 100\r\n\r\n" + b'{"text": "')
    started = time.monotonic()
    raw = await read_eof(reader, GIVE_UP)
    writer.close()
    _assert_408(raw)
    assert time.monotonic() - started >= BODY_TIMEOUT * 0.9
    # The handler saw the client gone (499), not an internal error logged with a stack.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_slow_but_steady_body_is_read(server: HttpServer) -> None:
    """The body timeout is between two reads, not for the whole body."""
    reader, writer = await connect(server.endpoint)
    body = b'{"text": "' + b"s" * 20 + b'"}'
    head = b"POST /notes HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
    writer.write(head + f"content-length: {len(body)}\r\n\r\n".encode())
    started = time.monotonic()
    for start in range(0, len(body), 4):
        writer.write(body[start : start + 4])
        await asyncio.sleep(BODY_TIMEOUT / 4)
    response = await read_response(reader)
    writer.close()
    assert time.monotonic() - started > BODY_TIMEOUT  # longer than one timeout in total
    assert (response.status, json.loads(response.body)) == (200, {"text": "s" * 20})


def test_bad_timeouts_and_unsupported_protocols_are_refused() -> None:
    with pytest.raises(ValueError, match="header_timeout must be > 0"):
        HttpServer(port=0, header_timeout=0)
    with pytest.raises(ValueError, match="'zttp'"):
        HttpServer(port=0, http="zttp")


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /ping HTTP/1.1\r\nhost: test\r\nbad header\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /ping HTTP/1.1\r\n" + b"x-big: " + b"a" * 40_000 + b"\r\n\r\n", 431,
         "REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (b"GET /ping HTTP/1.1\r\n" + b"x-h: a\r\n" * 5000 + b"\r\n", 431,
         "REQUEST_HEADER_FIELDS_TOO_LARGE"),
    ],
    ids=["request-line", "header-line", "one-big-header", "many-headers"],
)
async def test_what_the_parser_refuses_gets_the_error_body(
    server: HttpServer, raw: bytes, status: int, reason: str
) -> None:
    reader, writer = await connect(server.endpoint)
    writer.write(raw)
    response = await read_response(reader)
    writer.close()
    assert (response.status, response.closes) == (status, True)
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body)["reason"] == reason


async def test_an_upgraded_websocket_is_not_timed(server: HttpServer) -> None:
    """The head and body timeouts end with the HTTP exchange: a WebSocket upgraded on the
    same connection stays open while idle longer than both."""
    async with websockets.connect(server.endpoint.replace("http", "ws", 1) + "/echo") as ws:
        await asyncio.sleep(max(HEADER_TIMEOUT, BODY_TIMEOUT) * 1.5)
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 5) == "STILL HERE"
