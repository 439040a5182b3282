"""The broker conformance suite on Kafka (Tansu, a Kafka-protocol broker started here).

Clients reach Tansu through a :class:`TcpProxy` (Tansu advertises the proxy's address), so
``drop_connections`` can cut them as a broker would: Tansu has no command for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import ClassVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from framework.testing.conformance import BrokerConformance, BrokerFactory, Harness, TcpProxy
from framework.transport.kafka import KafkaBroker, KafkaOptions
from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess, TansuUnavailable
from tests.services import free_port, unavailable

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    """Tansu behind a proxy; yields the proxy (its port is the bootstrap port)."""
    proxy = TcpProxy("127.0.0.1").start()
    try:
        tansu = TansuProcess(port=free_port(), advertised_port=proxy.port).start()
    except TansuUnavailable as exc:
        proxy.stop()
        unavailable(f"Tansu (Kafka-protocol broker): {exc}")
        raise  # unreachable: unavailable() skips or fails
    proxy.target_port = tansu.port
    try:
        yield proxy
    finally:
        proxy.stop()
        tansu.stop()


class TestKafka(BrokerConformance):
    broker_name = "kafka"
    emulated: ClassVar[Mapping[str, str]] = {
        "delay": "Kafka has no delayed delivery: delay level topics forwarded by a framework "
        "relay (records due within 5 s held in memory, longer ones halving down the levels "
        "with pause/resume)",
        "deliver_at": "as delay (the relay forwards at the due time)",
        "delay_outlives_publisher": "the record waits in its delay topic until a relay runs",
        "tags": "Kafka cannot filter a topic on the broker: the tag travels in the x-tag "
        "header and the processor commits, unhandled, a record the subscriber did not ask "
        "for (the records are still fetched)",
    }

    @pytest.fixture
    def make_broker(self, proxy: TcpProxy) -> BrokerFactory:
        self.proxy = proxy
        self.bootstrap = f"127.0.0.1:{proxy.port}"
        # Each test's delay topics and relay group are its own (the broker names end with
        # the test's tag), so relays of other tests never join its group; the relay starts
        # only in tests that publish a delayed record, checking for its topics every 0.2 s.
        return lambda name: KafkaBroker(
            self.bootstrap,
            client_id=name,
            delay_topic_prefix=f"delay-{name.rsplit('-', 1)[-1]}",
            delay_check_interval=0.2,
            **FAST_JOIN,
        )

    async def prepare_topic(self, topic: str, partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()

    async def refused_message(self, harness: Harness, topic: str) -> tuple[str, bytes]:
        # Kafka takes any valid topic name; a record over max_request_size is refused.
        return topic, b"x" * (2 * KafkaOptions().max_request_size)

    async def drop_connections(self) -> None:
        dropped = await asyncio.to_thread(self.proxy.drop)
        assert dropped, "no client connection went through the proxy: nothing was dropped"
