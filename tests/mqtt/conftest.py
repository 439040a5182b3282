"""Fixtures for the MQTT tests.

Simple tests use the machine's Mosquitto (``mqtt_url()``, PYKRATOS_TEST_MQTT_URL). Tests of
at-least-once delivery, restarts and crashes start their own ``mosquitto`` on a free port
with ``max_queued_messages 0``: the stock configuration drops messages past 1,000 queued per
client, even at QoS 1. Every test uses its own topic prefix and client ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from framework.broker import BrokerServer, Message, Router
from framework.transport.mqtt import MqttBroker
from framework.transport.mqtt.mosquitto import MosquittoProcess, MosquittoUnavailable
from tests.services import free_port, mqtt_url, require_url, unavailable

pytestmark = pytest.mark.mqtt


@pytest.fixture
def url() -> str:
    """The machine's Mosquitto (skips locally, fails in CI when it is down)."""
    address = mqtt_url()
    require_url(address, "Mosquitto")
    return address


@pytest.fixture
def mosquitto() -> Iterator[MosquittoProcess]:
    """A private Mosquitto without a queue limit, stopped after the test."""
    server = MosquittoProcess(port=free_port())
    try:
        server.start()
    except MosquittoUnavailable as exc:
        unavailable(f"mosquitto (started by the test): {exc}")
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``"orders-3f9c1a2b"``: a topic/group no other test uses."""
    return lambda prefix: f"pykratos-test/{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def publisher(url: str) -> AsyncIterator[MqttBroker]:
    """A connected broker on the machine's Mosquitto, to publish from the test."""
    broker = MqttBroker(url)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


class Inbox:
    """Messages a test handler received, with a wait for the n-th."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def add(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


def collecting_router(topic: str, inbox: Inbox, **options: Any) -> Router:
    """A router whose one subscriber on ``topic`` stores every raw message in ``inbox``."""
    router = Router()

    @router.subscriber(topic, **options)
    async def collect(message: Message) -> None:
        inbox.add(message)

    return router


async def started(broker: MqttBroker, *routers: Router) -> BrokerServer:
    server = BrokerServer(broker, list(routers))
    await server.start()
    return server
