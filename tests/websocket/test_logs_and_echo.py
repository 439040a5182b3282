"""Issue 8 item 26, WebSocket part: log lines a reader can use, and no echo of a whole frame.

- ``websockets``' own lines carried the connection object (``<ServerConnection object at
  0x...>``) and said "connection closed" without saying how;
- a client closed for a message over ``max_message_size`` left no trace in the log;
- an error frame repeated the client's 65 KB message type (or correlation id) in full.
"""

from __future__ import annotations

import logging

import orjson
import pytest
from pydantic import BaseModel

from framework.log import ConsoleFormatter, JsonFormatter
from framework.transport.websocket import WebSocketServer
from framework.transport.websocket.envelope import MAX_ID_LENGTH
from framework.validation import ECHO_LIMIT

from .conftest import Serve, open_client, recv_json

_LOGGER = "pykratos.websocket"


class Note(BaseModel):
    tags: dict[str, int]


def _server(max_message_size: int = 1024 * 1024) -> WebSocketServer:
    ws = WebSocketServer(port=0, name="notes", max_message_size=max_message_size)

    @ws.on("note.add")
    async def add(note: Note) -> Note:
        return note

    return ws


def _formatted(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = []
    for record in caplog.records:
        lines.append(ConsoleFormatter().format(record))
        lines.append(JsonFormatter().format(record))
    return lines


async def test_connection_lines_name_peer_path_and_close_code_in_words(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await serve(_server())
    with caplog.at_level(logging.INFO, logger=_LOGGER):
        async with open_client(ws.endpoint + "/notes") as client:
            host, port = client.local_address[:2]
            peer = f"{host}:{port}"
        await ws.stop(5)
    lines = _formatted(caplog)
    assert not [line for line in lines if " object at 0x" in line], lines
    messages = [r.getMessage() for r in caplog.records]
    assert f"websocket client {peer} connected to /notes" in messages, messages
    closed = [m for m in messages if m.startswith(f"websocket client {peer} on /notes disconn")]
    assert closed == [f"websocket client {peer} on /notes disconnected: client sent 1000 (OK)"]
    record = next(r for r in caplog.records if "disconnected" in r.getMessage())
    assert (record.peer, record.path, record.close_code) == (peer, "/notes", 1000)  # type: ignore[attr-defined]


async def test_a_client_closed_for_an_oversized_message_is_logged_with_the_limit(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await serve(_server(max_message_size=1000))
    with caplog.at_level(logging.INFO, logger=_LOGGER):
        async with open_client(ws.endpoint + "/notes") as client:
            await client.send("x" * 5000)
            await client.wait_closed()
        assert client.close_code == 1009
        await ws.stop(5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "larger than max_message_size (1000 bytes)" in warnings[0]
    assert "/notes" in warnings[0]


async def test_error_frames_echo_at_most_an_excerpt_of_the_client_input(serve: Serve) -> None:
    ws = await serve(_server(max_message_size=1024 * 1024))
    huge = "t" * 65_000
    async with open_client(ws.endpoint + "/notes") as client:
        await client.send(orjson.dumps({"type": huge}).decode())
        unknown = await recv_json(client)
        bad_tags = {"type": "note.add", "payload": {"tags": {huge: "x"}}}
        await client.send(orjson.dumps(bad_tags).decode())
        bad_payload = await recv_json(client)
        await client.send(orjson.dumps({"type": "note.add", "id": huge}).decode())
        long_id = await recv_json(client)
        ok_id = "i" * MAX_ID_LENGTH
        await client.send(
            orjson.dumps({"type": "note.add", "id": ok_id, "payload": {"tags": {}}}).decode()
        )
        accepted = await recv_json(client)
    assert unknown["error"]["reason"] == "UNKNOWN_TYPE"
    assert bad_payload["error"]["reason"] == "BAD_PAYLOAD"
    assert long_id["error"]["reason"] == "BAD_FRAME" and "id" not in long_id
    for frame in (unknown, bad_payload, long_id):
        assert len(orjson.dumps(frame)) < 2 * ECHO_LIMIT + 300, frame
    assert accepted == {"type": "note.add.reply", "id": ok_id, "payload": {"tags": {}}}
