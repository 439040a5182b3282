"""A WebSocket test client that speaks the framework's envelope protocol.

Text frames carry ``{"type", "payload", "id"}`` (:mod:`framework.transport.websocket.envelope`).
:meth:`WsClient.request` sends a message with a fresh correlation id and returns the payload of
the matching ``<type>.reply`` (an ``error`` frame is raised as :class:`framework.errors.Error`);
:meth:`WsClient.receive` returns the next pushed message of a type (server pushes, e.g. an
``order.status`` after a broker event), waiting on an event, not a sleep.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

import orjson

from framework.errors import Error

if TYPE_CHECKING:
    from framework.transport.websocket.envelope import Incoming

# The envelope module is imported when a client is used, not with framework.testing: the
# websocket package needs the ``ws`` extra, which a service without WebSocket may lack.

__all__ = ["WsClient"]


def _incoming(frame: str | bytes) -> Incoming:
    from framework.transport.websocket.envelope import ERROR_TYPE, decode

    incoming = decode(frame)
    if incoming.type == ERROR_TYPE and not incoming.binary:
        # A text error frame carries the error object under "error", not "payload".
        incoming.payload = orjson.loads(frame).get("error")
    return incoming


class WsClient:
    """An open envelope-protocol connection (made by :meth:`framework.testing.TestApp.websocket`).

    Args:
        connection: a connected ``websockets`` client connection.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._inbox: list[Incoming] = []
        self._arrived = asyncio.Event()
        self._ids = itertools.count(1)
        self._closed: BaseException | None = None
        self._reader = asyncio.create_task(self._read(), name="ws-test-client")

    async def _read(self) -> None:
        try:
            async for frame in self.connection:
                self._inbox.append(_incoming(frame))
                self._wake()
        except Exception as exc:  # the connection broke: waiters must learn it
            self._closed = exc
        else:
            self._closed = ConnectionError("the server closed the WebSocket connection")
        self._wake()

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def send(self, type: str, payload: Any = None, id: Any = None) -> None:
        """Send one text envelope."""
        from framework.transport.websocket.envelope import encode_text

        await self.connection.send(encode_text(type, payload, id).decode())

    async def _take(self, match: Any, timeout: float, what: str) -> Incoming:
        async with asyncio.timeout(timeout):
            while True:
                for index, incoming in enumerate(self._inbox):
                    if match(incoming):
                        return self._inbox.pop(index)
                if self._closed is not None:
                    raise ConnectionError(f"no {what}: connection closed") from self._closed
                await self._arrived.wait()

    async def request(self, type: str, payload: Any = None, *, timeout: float = 5.0) -> Any:
        """Send ``type`` with a new correlation id; return the reply's payload.

        Raises :class:`framework.errors.Error` for an ``error`` reply, ``TimeoutError`` after
        ``timeout`` seconds.
        """
        from framework.transport.websocket.envelope import ERROR_TYPE, REPLY_SUFFIX

        correlation = f"t-{next(self._ids)}"
        await self.send(type, payload, correlation)
        reply = await self._take(
            lambda m: m.id == correlation and m.type in (type + REPLY_SUFFIX, ERROR_TYPE),
            timeout,
            f"reply to {type}",
        )
        if reply.type == ERROR_TYPE:
            body = reply.payload if isinstance(reply.payload, dict) else {}
            raise Error(
                int(body.get("code", 500)),
                str(body.get("reason", "")),
                str(body.get("message", "")),
                body.get("metadata") or {},
            )
        return reply.payload

    async def receive(self, type: str | None = None, *, timeout: float = 5.0) -> Incoming:
        """The next message of ``type`` (any type if ``None``) not consumed yet."""
        return await self._take(
            lambda m: type is None or m.type == type, timeout, f"message {type or ''}".strip()
        )

    async def close(self) -> None:
        """Close the connection and stop reading."""
        await self.connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
