"""Helpers for the NATS tests: an isolated environment per test, a cuttable proxy.

Every test gets a unique tag: its subjects end with it and the broker's stream is named
after it, and :class:`NatsEnv` deletes that stream (and its consumers) afterwards, so tests
never see each other's messages, nor those of other suites on the same NATS server.
:func:`make_broker` is the same recipe for a suite that only wants a broker per prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

import nats
from nats.js.errors import NotFoundError

from framework.broker import BrokerServer, Router
from framework.middleware.core import Middleware
from framework.transport.nats import NatsBroker
from tests.broker.helpers import Collector
from tests.services import nats_url

__all__ = ["URL", "Collector", "NatsEnv", "Proxy", "delete_stream", "make_broker", "stream_name"]

URL = nats_url()  # PYKRATOS_TEST_NATS_URL, see tests/services.py


def stream_name(prefix: str) -> str:
    """The stream a broker made by :func:`make_broker` for ``prefix`` keeps its subjects in."""
    return "test_" + re.sub(r"[^A-Za-z0-9_-]", "_", prefix)


def make_broker(prefix: str, url: str = URL, **options: Any) -> NatsBroker:
    """A NatsBroker (not connected) whose stream is private to ``prefix``; delete it after
    with :func:`delete_stream` (``stream_name(prefix)``). Subjects should start with
    ``prefix`` too, so that no other test's stream captures them."""
    options.setdefault("stream", stream_name(prefix))
    options.setdefault("storage", "memory")
    options.setdefault("reconnect_interval", 0.2)
    options.setdefault("connect_timeout", 5.0)
    options.setdefault("publish_timeout", 15.0)
    options.setdefault("fetch_timeout", 0.5)
    return NatsBroker(url, **options)


async def delete_stream(name: str, url: str = URL) -> None:
    """Delete stream ``name`` (with its consumers) if it exists."""
    client = await nats.connect(url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(name)
    finally:
        await client.close()


class NatsEnv:
    """Brokers and servers of one test, with unique names, torn down and deleted after."""

    def __init__(self, url: str = URL) -> None:
        self.url = url
        self.tag = uuid.uuid4().hex[:10]
        self.stream = stream_name(self.tag)
        self.streams: set[str] = {self.stream}
        self._brokers: list[NatsBroker] = []
        self._servers: list[BrokerServer] = []

    def topic(self, name: str = "t") -> str:
        """A subject unique to this test."""
        return f"{name}.{self.tag}"

    def broker(self, url: str | None = None, **options: Any) -> NatsBroker:
        """A NatsBroker (not connected yet) on this test's stream."""
        options.setdefault("stream", self.stream)
        broker = make_broker(self.tag, url or self.url, **options)
        self.streams |= {broker.stream, f"{broker.stream}-delay"}
        self._brokers.append(broker)
        return broker

    async def connected(self, **options: Any) -> NatsBroker:
        broker = self.broker(**options)
        await broker.connect()
        return broker

    async def serve(
        self,
        *routers: Router,
        broker: NatsBroker | None = None,
        middlewares: Sequence[Middleware] = (),
    ) -> BrokerServer:
        """Start a BrokerServer for ``routers`` (on a new broker unless one is given)."""
        server = BrokerServer(broker or self.broker(), list(routers), middlewares)
        self._servers.append(server)
        await server.start()
        return server

    async def aclose(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.stop(5)
        for broker in self._brokers:
            with contextlib.suppress(Exception):
                await broker.close()
        for stream in sorted(self.streams):
            with contextlib.suppress(Exception):
                await delete_stream(stream, self.url)


class Proxy:
    """A TCP proxy to the NATS server whose connections a test can cut (:meth:`cut`), as
    when the server drops a client; it keeps accepting, so the client reconnects."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> str:
        host = self._target[0]  # listen where the server does: loopback
        self._server = await asyncio.start_server(self._accept, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://{host}:{port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    def cut(self) -> None:
        """Close every current connection (both sides)."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
