"""The reference service's outbox end to end: a database (SQLite or PostgreSQL) and a broker
(Tansu or RabbitMQ) reached through a :class:`~tests.tcp_proxy.TcpProxy` the tests can cut,
plus a raw client (aiokafka / aio-pika) that reads ``order-paid`` behind the service's back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from framework.broker import MESSAGE_ID
from framework.data import outbox, outbox_sent
from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess, TansuUnavailable
from tests.services import amqp_url, free_port, postgres_url, rabbitmqctl, require_url, unavailable
from tests.tcp_proxy import TcpProxy

ORDER_PAID = "order-paid"
#: seconds the service's broker waits for a confirmation: what a request that published
#: inline would wait while the broker is down
PUBLISH_TIMEOUT = 10.0


@dataclass
class Db:
    url: str
    schema: str | None
    engine: AsyncEngine

    async def scalar(self, sql: str) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()

    async def order_statuses(self) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, status FROM orders"))).all()
        return {row.id: row.status for row in rows}

    async def wait_all(self, count: int, status: str, timeout: float) -> None:
        """Wait until ``count`` orders exist and all have ``status``."""
        async with asyncio.timeout(timeout):
            while True:
                statuses = await self.order_statuses()
                if len(statuses) == count and set(statuses.values()) == {status}:
                    return
                await asyncio.sleep(0.2)  # another process's database: no event to wait on

    async def outbox_rows_per_key(self, topic: str) -> dict[str, int]:
        """Rows added per key: still in ``outbox`` or sent (moved to ``outbox_sent``)."""
        rows = union_all(
            *(
                select(table.c.key).where(table.c.topic == topic, table.c.destination == "default")
                for table in (outbox, outbox_sent)
            )
        ).subquery()
        query = select(rows.c.key, func.count()).group_by(rows.c.key)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {key.decode(): count for key, count in rows}


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    schema = None
    if request.param == "postgres":
        require_url(postgres_url(), "PostgreSQL")
        url, schema = postgres_url(), f"pykratos_outbox_{uuid.uuid4().hex[:10]}"
        engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
        engine = create_async_engine(url)
    yield Db(url, schema, engine)
    if schema is not None:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await engine.dispose()


@dataclass
class BrokerLink:
    """The service's broker, behind a proxy; ``reader`` collects ``order-paid`` raw."""

    kind: str
    options: dict[str, Any]
    proxy: TcpProxy
    raw_url: str  # where the raw client connects (directly, not through the proxy)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (order id, message-id)
    bodies: list[bytes] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start_reading(self) -> None:
        ready = asyncio.Event()
        reader = self._read_kafka if self.kind == "kafka" else self._read_rabbit
        self._task = asyncio.create_task(reader(ready))
        await asyncio.wait_for(ready.wait(), 30)

    async def stop_reading(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _record(self, body: bytes, headers: dict[str, str]) -> None:
        self.bodies.append(body)
        self.seen.append((json.loads(body)["order_id"], headers[MESSAGE_ID]))

    async def _read_kafka(self, ready: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.raw_url)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(ORDER_PAID, 1, 1)])
        except Exception:
            pass
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(
            ORDER_PAID, bootstrap_servers=self.raw_url, auto_offset_reset="earliest"
        )
        await consumer.start()
        ready.set()
        try:
            async for record in consumer:
                headers = {k: v.decode() for k, v in record.headers}
                self._record(record.value, headers)
        finally:
            await consumer.stop()

    async def _read_rabbit(self, ready: asyncio.Event) -> None:
        import aio_pika

        connection = await aio_pika.connect_robust(self.raw_url)
        try:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                "pykratos", aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, ORDER_PAID)
            ready.set()
            async with queue.iterator() as messages:
                async for message in messages:
                    headers = {
                        k: str(v if not isinstance(v, bytes) else v.decode())
                        for k, v in message.headers.items()
                    }
                    self._record(message.body, headers)
                    await message.ack()
        finally:
            await connection.close()

    def one_event_per_order(self, order_ids: set[str]) -> dict[str, set[str]]:
        """order id -> distinct message-ids seen (the test wants exactly one each)."""
        per_order: dict[str, set[str]] = {order_id: set() for order_id in order_ids}
        for order_id, message_id in self.seen:
            per_order.setdefault(order_id, set()).add(message_id)
        return per_order


@pytest.fixture(params=["kafka", "rabbitmq"])
async def link(request: pytest.FixtureRequest) -> AsyncIterator[BrokerLink]:
    proxy_port = free_port()
    if request.param == "kafka":
        try:
            tansu = TansuProcess(port=free_port(), advertised_port=proxy_port).start()
        except TansuUnavailable as exc:
            unavailable(f"Tansu (Kafka-protocol broker): {exc}")
            raise
        proxy = await TcpProxy("127.0.0.1", tansu.port, proxy_port).start()
        # The raw client connects through the proxy too (the broker advertises its port),
        # and is only read from while the link is up.
        link = BrokerLink(
            "kafka",
            {
                "bootstrap_servers": f"127.0.0.1:{proxy_port}",
                "publish_timeout": PUBLISH_TIMEOUT,
                **FAST_JOIN,
            },
            proxy,
            f"127.0.0.1:{proxy_port}",
        )
        try:
            yield link
        finally:
            await link.stop_reading()
            await proxy.close()
            tansu.stop()
    else:
        require_url(amqp_url(), "RabbitMQ")
        vhost = f"pykratos-outbox-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        direct = amqp_url(vhost)
        parts = urlsplit(direct)
        proxy = await TcpProxy(
            parts.hostname or "127.0.0.1", parts.port or 5672, proxy_port
        ).start()
        proxied = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy_port}")
        link = BrokerLink(
            "rabbitmq",
            {
                "url": proxied.geturl(),
                "publish_timeout": PUBLISH_TIMEOUT,
                "reconnect_interval": 0.2,
            },
            proxy,
            direct,
        )
        try:
            yield link
        finally:
            await link.stop_reading()
            await proxy.close()
            rabbitmqctl("delete_vhost", vhost)
