"""What one conformance test works with: unique names, servers and brokers it cleans up,
and an :class:`Inbox` to await deliveries on (an event, never a sleep loop). No pytest here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from framework.broker.broker import Broker
from framework.broker.router import Router
from framework.broker.server import BrokerServer

__all__ = ["BrokerFactory", "Harness", "Inbox"]

_log = logging.getLogger("pykratos.conformance")

#: ``make_broker(name)``: a new, unconnected broker on the broker under test. ``name`` is a
#: readable client name (client id, connection name) for the broker's logs.
BrokerFactory = Callable[[str], Broker]


class Inbox:
    """Items delivered to handlers; :meth:`until` awaits a condition on them."""

    def __init__(self, timeout: float) -> None:
        self.items: list[Any] = []
        self.timeout = timeout
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def until(
        self, condition: Callable[[list[Any]], bool], what: str, timeout: float | None = None
    ) -> list[Any]:
        """Wait until ``condition(items)`` holds; :class:`AssertionError` naming ``what`` and
        showing the items on timeout."""
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while not condition(self.items):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            shown = self.items if len(self.items) <= 50 else [*self.items[:50], "..."]
            raise AssertionError(f"no {what} within {limit:g}s; got {shown!r}") from None
        return self.items

    async def count(self, n: int, what: str = "", timeout: float | None = None) -> list[Any]:
        """Wait for at least ``n`` items."""
        return await self.until(lambda items: len(items) >= n, what or f"{n} item(s)", timeout)


class Harness:
    """Names, servers and brokers of one test (see :class:`BrokerConformance`).

    Args:
        make_broker: the broker factory under test.
        label: the promise id, part of every name so a leftover says which test made it.
        timeout: default wait, in seconds, for anything the test awaits.
    """

    def __init__(self, make_broker: BrokerFactory, label: str, timeout: float) -> None:
        self.make_broker = make_broker
        self.label = label
        self.timeout = timeout
        self.tag = uuid.uuid4().hex[:8]
        self._servers: list[BrokerServer] = []
        self._brokers: list[Broker] = []

    def topic(self, name: str = "t") -> str:
        """A topic no other test uses: ``conf.<promise>.<name>.<tag>``."""
        return f"conf.{self.label}.{name}.{self.tag}"

    def group(self, name: str = "g") -> str:
        """A consumer group no other test uses."""
        return f"conf-{self.label}-{name}-{self.tag}"

    def inbox(self) -> Inbox:
        return Inbox(self.timeout)

    async def serve(self, *routers: Router, name: str = "server") -> BrokerServer:
        """Start a :class:`BrokerServer` for ``routers`` on a new broker; stopped at teardown."""
        server = BrokerServer(self.make_broker(f"{name}-{self.tag}"), list(routers), name=name)
        self._servers.append(server)
        await server.start()
        return server

    async def publisher(self, name: str = "publisher") -> Broker:
        """A new connected broker to publish with; closed at teardown."""
        broker = self.make_broker(f"{name}-{self.tag}")
        self._brokers.append(broker)
        await broker.connect()
        return broker

    async def aclose(self) -> None:
        """Stop every server and close every broker this test made, whatever state they are
        in; errors are logged, not raised (the test's own outcome is what matters)."""
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):
                await server.stop(5)
        for broker in reversed(self._brokers):
            try:
                await asyncio.wait_for(broker.close(), 10)
            except Exception as exc:
                _log.warning("conformance: closing %r failed: %r", broker, exc)
