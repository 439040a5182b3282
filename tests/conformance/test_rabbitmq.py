"""The broker conformance suite on RabbitMQ, in a virtual host of its own (deleted after),
so that ``drop_connections`` (``rabbitmqctl close_all_connections -p``) touches only it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from framework.testing.conformance import BrokerConformance, BrokerFactory
from framework.transport.rabbitmq import RabbitBroker
from tests.services import amqp_url, rabbitmqctl, require_url

pytestmark = pytest.mark.rabbitmq

DLX = "pykratos.dlx"  # RabbitBroker's default dead_letter_exchange


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    require_url(amqp_url(), "RabbitMQ")
    name = f"pykratos-conformance-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


class TestRabbitMQ(BrokerConformance):
    broker_name = "rabbitmq"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "key_partition": "RabbitMQ queues have no partitions (a key orders its messages within "
        "a queue); publish(partition=) raises NotImplementedError",
    }

    @pytest.fixture
    def make_broker(self, vhost: str) -> BrokerFactory:
        self.vhost = vhost
        url = amqp_url(vhost)
        return lambda name: RabbitBroker(
            url, connection_name=name, reconnect_interval=0.2, connect_timeout=10
        )

    async def drop_connections(self) -> None:
        await asyncio.to_thread(
            rabbitmqctl, "close_all_connections", "-p", self.vhost, "conformance: dropped"
        )

    def dead_letter_options(self, dlq_topic: str) -> dict[str, Any]:
        # Dead letters are routed by the dead-letter exchange to the <topic>.dlq queue.
        return {"queue": dlq_topic, "exchange": DLX, "exchange_type": "direct"}
