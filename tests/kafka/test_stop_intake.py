"""Kafka side of the two-phase stop (issue 8, item 18): once the App stops the intake, a
subscription takes no new record while other servers drain; the record stays for the group."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from framework import App
from framework.broker import BrokerServer, Message, Router
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import FAST_JOIN
from tests.broker.helpers import Collector
from tests.kafka.conftest import create_topic

pytestmark = pytest.mark.kafka


class Draining:
    """Stands for an HTTP server busy finishing requests: its stop ends when released."""

    endpoint = "test://draining"

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self, timeout: float) -> None:
        self.draining.set()
        await self.release.wait()


async def test_item18_a_kafka_subscriber_takes_no_record_while_another_server_drains(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("stop-order"), unique("group")
    await create_topic(bootstrap, topic, 1)
    handled = Collector()

    def server() -> BrokerServer:
        router = Router()

        @router.subscriber(topic, group=group)
        async def on_record(message: Message) -> None:
            handled.add(message.body)

        return BrokerServer(
            KafkaBroker(bootstrap, client_id=unique("member"), **FAST_JOIN), [router]
        )

    other = Draining()
    app = App("svc", servers=[server(), other], handle_signals=False, stop_timeout=20)
    await app.start()
    stopping: asyncio.Task[None] | None = None
    try:
        await broker.publish(topic, b"before stop")
        assert await handled.wait(1, timeout=20) == [b"before stop"]
        stopping = asyncio.create_task(app.shutdown())
        await asyncio.wait_for(other.draining.wait(), 10)
        await broker.publish(topic, b"during stop")
        await asyncio.sleep(1.0)  # the other server keeps draining; a live fetch gets it
    finally:
        other.release.set()
        if stopping is not None:
            await asyncio.wait_for(stopping, 20)
        else:
            await app.shutdown()
    assert handled.items == [b"before stop"]

    # Not committed: the next member of the group gets it.
    again = server()
    await again.start()
    try:
        assert await handled.wait(2, timeout=20) == [b"before stop", b"during stop"]
    finally:
        await again.stop(5)
