"""Helpers for the Redis tests: an isolated key prefix per test, deleted afterwards.

Redis is shared with other work on the machine: every stream a test touches lives under its
own ``key_prefix`` and :class:`RedisEnv` deletes those keys (``SCAN`` + ``UNLINK``) at the end;
nothing ever runs ``FLUSHDB``/``FLUSHALL``. :func:`make_broker` is the factory a broker
conformance suite can use: a broker confined to one prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from framework.broker import BrokerServer, Router
from framework.middleware.core import Middleware
from framework.transport.redis import RedisBroker
from tests.broker.helpers import Collector
from tests.services import redis_url

__all__ = ["Collector", "RedisEnv", "make_broker"]


def make_broker(prefix: str, **options: Any) -> RedisBroker:
    """A :class:`RedisBroker` (not connected) on the test Redis, confined to ``prefix``, with
    short timings suited to tests (quick reconnects and claims)."""
    options.setdefault("key_prefix", prefix)
    options.setdefault("client_name", f"pykratos-test.{prefix.strip(':').replace(':', '.')}")
    options.setdefault("reconnect_interval", 0.1)
    options.setdefault("block_ms", 200)
    options.setdefault("publish_timeout", 10.0)
    return RedisBroker(options.pop("url", redis_url()), **options)


class RedisEnv:
    """Brokers, servers and keys of one test, all under one unique prefix."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.tag = uuid.uuid4().hex[:10]
        self.prefix = f"pykratos-test:{self.tag}:"
        self.admin = Redis.from_url(url)
        self._brokers: list[RedisBroker] = []
        self._servers: list[BrokerServer] = []

    def key(self, topic: str) -> str:
        """The Redis key of ``topic``'s stream."""
        return self.prefix + topic

    def broker(self, **options: Any) -> RedisBroker:
        broker = make_broker(self.prefix, url=self.url, **options)
        self._brokers.append(broker)
        return broker

    async def connected(self, **options: Any) -> RedisBroker:
        broker = self.broker(**options)
        await broker.connect()
        return broker

    async def serve(
        self,
        *routers: Router,
        broker: RedisBroker | None = None,
        middlewares: Sequence[Middleware] = (),
    ) -> BrokerServer:
        """Start a BrokerServer for ``routers`` (on a new broker unless one is given)."""
        server = BrokerServer(broker or self.broker(), list(routers), middlewares)
        self._servers.append(server)
        await server.start()
        return server

    async def entries(self, topic: str) -> list[tuple[str, dict[bytes, bytes]]]:
        """Every entry of ``topic``'s stream, oldest first."""
        raw = await self.admin.xrange(self.key(topic))
        return [(entry_id.decode(), fields) for entry_id, fields in raw]

    async def wait_entries(
        self, topic: str, count: int, timeout: float = 10.0
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        """The entries of ``topic``'s stream once it has ``count`` (dead letters are written
        by the subscriber after the handler gave up: there is no event to wait on here)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            entries = await self.entries(topic)
            if len(entries) >= count:
                return entries
            if loop.time() > deadline:
                raise AssertionError(f"{topic}: {len(entries)} of {count} entries: {entries!r}")
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.stop(5)
        for broker in self._brokers:
            with contextlib.suppress(Exception):
                await broker.close()
        try:
            keys = [key async for key in self.admin.scan_iter(match=f"{self.prefix}*")]
            if keys:
                await self.admin.unlink(*keys)
        finally:
            await self.admin.aclose()
