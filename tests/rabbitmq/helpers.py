"""Helpers for the RabbitMQ tests: an isolated environment per test and small waiters.

Every test gets unique exchange/queue names (a uuid tag) and :class:`RabbitEnv` deletes
everything it declared afterwards, so tests never see each other's messages, nor those of
other suites on the same RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika

from framework.broker import BrokerServer, Router
from framework.middleware.core import Middleware
from framework.transport.rabbitmq import RabbitBroker
from tests.broker.helpers import Collector
from tests.services import amqp_url, rabbitmqctl

__all__ = ["Collector", "RabbitEnv", "rabbitmqctl", "read_queue"]

URL = amqp_url()  # PYKRATOS_TEST_AMQP_URL, see tests/services.py


async def read_queue(
    url: str, queue: str, count: int, timeout: float = 10.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Get (and ack) ``count`` messages from ``queue`` with basic.get, waiting up to
    ``timeout``; fails if fewer arrive."""
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue)
        async with asyncio.timeout(timeout):
            while len(got) < count:
                message = await q.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.02)  # basic.get has no "wait": poll, bounded above
                    continue
                await message.ack()
                got.append(message)
    except TimeoutError:
        raise AssertionError(f"{queue}: got {len(got)} of {count} messages") from None
    finally:
        await connection.close()
    return got


class RabbitEnv:
    """Brokers and servers of one test, with unique names, torn down and deleted after."""

    def __init__(self, url: str = URL) -> None:
        self.url = url
        self.tag = uuid.uuid4().hex[:10]
        self.exchange = f"test.{self.tag}"
        self.dlx = f"test.{self.tag}.dlx"
        self.delay_exchange = f"test.{self.tag}.delay"
        self.queues: set[str] = set()
        self.exchanges: set[str] = {self.exchange, self.dlx, self.delay_exchange}
        self._brokers: list[RabbitBroker] = []
        self._servers: list[BrokerServer] = []

    def topic(self, name: str = "t") -> str:
        """A topic unique to this test."""
        return f"{name}.{self.tag}"

    def broker(self, **options: Any) -> RabbitBroker:
        """A RabbitBroker (not connected yet) on this test's exchanges."""
        options.setdefault("exchange", self.exchange)
        options.setdefault("dead_letter_exchange", self.dlx)
        options.setdefault("delay_exchange", self.delay_exchange)
        options.setdefault("reconnect_interval", 0.2)
        options.setdefault("publish_timeout", 15.0)
        options.setdefault("connect_timeout", 5.0)
        self.exchanges.add(options["exchange"])
        broker = RabbitBroker(self.url, **options)
        self._brokers.append(broker)
        return broker

    async def connected(self, **options: Any) -> RabbitBroker:
        broker = self.broker(**options)
        await broker.connect()
        return broker

    async def serve(
        self,
        *routers: Router,
        broker: RabbitBroker | None = None,
        middlewares: Sequence[Middleware] = (),
    ) -> BrokerServer:
        """Start a BrokerServer for ``routers`` (on a new broker unless one is given)."""
        server = BrokerServer(broker or self.broker(), list(routers), middlewares)
        self._servers.append(server)
        await server.start()
        self.remember(server)
        return server

    def remember(self, server: BrokerServer) -> None:
        broker = server.broker
        assert isinstance(broker, RabbitBroker)
        for subscription in broker.subscriptions:
            self.queues.update(subscription.queues)
            self.exchanges.add(subscription.topology.exchange)

    async def aclose(self) -> None:
        for server in self._servers:
            self.remember(server)
            with contextlib.suppress(Exception):
                await server.stop(5)
        for broker in self._brokers:
            with contextlib.suppress(Exception):
                await broker.close()
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                for queue in sorted(self.queues):
                    await channel.queue_delete(queue)
                for exchange in sorted(self.exchanges):
                    await channel.exchange_delete(exchange)
