"""``max_connections``: a handshake beyond the limit is refused with 503, and a slot freed by
a disconnect is available again."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.exceptions import InvalidStatus

from framework.transport.websocket import Session, WebSocketServer
from framework.transport.websocket.server import TOO_MANY_CONNECTIONS
from tests.websocket.conftest import Serve, open_client


async def test_connections_beyond_the_limit_are_refused(serve: Serve) -> None:
    ws = WebSocketServer(port=0, max_connections=2)
    gone = asyncio.Event()

    @ws.on_disconnect
    async def left(session: Session) -> None:
        gone.set()

    await serve(ws)
    async with open_client(ws.endpoint), open_client(ws.endpoint) as second:
        with pytest.raises(InvalidStatus) as caught:
            async with open_client(ws.endpoint):
                pass
        assert caught.value.response.status_code == 503
        assert orjson.loads(caught.value.response.body)["reason"] == TOO_MANY_CONNECTIONS
        await second.close()
        async with asyncio.timeout(10):
            await gone.wait()
        async with open_client(ws.endpoint):
            assert len(ws.sessions) == 2


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        WebSocketServer(max_connections=0)
