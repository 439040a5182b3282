"""A loopback TCP proxy whose connections a test can drop, as a broker server would.

For a broker without an admin command that closes client connections (Tansu has none), the
conformance suite puts this proxy between the clients and the broker and calls
:meth:`TcpProxy.drop` to cut every connection at once; clients then reconnect through the
proxy, which keeps listening. A Kafka-protocol broker must advertise the proxy's address
(``--advertised-listener-url``), or clients would bypass it after bootstrapping.

It runs its own event loop in a daemon thread, so a session-scoped fixture can own it while
each test runs in its own loop; every method is synchronous and thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TcpProxy"]

_CHUNK = 256 * 1024
T = TypeVar("T")


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``.

    Args:
        target_host: where connections go.
        target_port: its port; may be set later (:attr:`target_port`) when the target has to
            know the proxy's port before it starts (a Kafka broker advertising the proxy).
        port: the port to listen on; ``0`` (default) lets the OS choose.

    ``start()`` returns once listening; ``port`` is then the bound port.
    """

    def __init__(self, target_host: str, target_port: int = 0, port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.drops = 0

    def start(self) -> TcpProxy:
        """Listen; return once bound (raises ``OSError`` if the port is taken)."""
        self._thread.start()
        self._call(self._listen())
        return self

    def drop(self) -> int:
        """Abort every open connection (both sides, like a reset); return how many."""
        dropped = self._call(self._abort_all())
        self.drops += 1
        return dropped

    def stop(self) -> None:
        """Close the listener and every connection, end the thread; safe to call twice."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # -- inside the proxy's loop -------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, family=socket.AF_INET
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side ended: end the other, as a real peer would

    async def _abort_all(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._abort_all()
