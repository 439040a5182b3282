"""The broker conformance suite on MQTT 5 (a private Mosquitto started for this module).

A Mosquitto of its own, started with ``max_queued_messages 0``: the stock configuration
drops QoS 1 messages past 1,000 queued per client, which no at-least-once promise survives.
Clients reach it through a :class:`TcpProxy`, which ``drop_connections`` cuts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import ClassVar

import pytest

from framework.testing.conformance import BrokerConformance, BrokerFactory, TcpProxy
from framework.transport.mqtt import MqttBroker
from framework.transport.mqtt.broker import DLQ_SUFFIX
from framework.transport.mqtt.mosquitto import MosquittoProcess, MosquittoUnavailable
from tests.services import free_port, mqtt_url, proxied_url, unavailable

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    """A private Mosquitto behind a proxy; yields the proxy (clients connect to its port)."""
    mosquitto = MosquittoProcess(port=free_port(), max_queued_messages=0)
    try:
        mosquitto.start()
    except MosquittoUnavailable as exc:
        unavailable(f"mosquitto (started by the test): {exc}")
        raise  # unreachable: unavailable() skips or fails
    proxy = TcpProxy("127.0.0.1", mosquitto.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        mosquitto.stop()


class TestMqtt(BrokerConformance):
    broker_name = "mqtt"
    expected_failures: ClassVar[Mapping[str, str]] = {
        "publish_confirm": "an MQTT shared subscription exists only while a session holds it: "
        "the group's only member unsubscribed at its graceful stop, so the server confirms "
        "(PUBACK) and drops what is published while the group has no member (MQTT keeps no "
        "queue apart from subscribers' sessions)",
    }
    not_applicable: ClassVar[Mapping[str, str]] = {
        "delay": "MQTT has no delayed delivery; publish(delay=) raises NotImplementedError",
        "deliver_at": "MQTT 5 has no scheduled delivery; publish(deliver_at=) raises "
        "NotImplementedError",
        "delay_outlives_publisher": "MQTT has no delayed delivery: nothing to outlive",
        "key_partition": "MQTT topics have no partitions; publish(partition=) raises "
        "NotImplementedError",
    }

    @pytest.fixture
    def make_broker(self, proxy: TcpProxy) -> BrokerFactory:
        self.proxy = proxy
        url = proxied_url(mqtt_url(), proxy.port)
        # The instance name is the stable client id: a restarted instance resumes its
        # sessions (what the crash and stop promises rely on).
        return lambda name: MqttBroker(
            url, client_id=name, reconnect_interval=0.2, connect_timeout=10
        )

    def dead_letter_topic(self, topic: str) -> str:
        return f"{topic}{DLQ_SUFFIX}"

    async def drop_connections(self) -> None:
        dropped = await asyncio.to_thread(self.proxy.drop)
        assert dropped, "no client connection went through the proxy: nothing was dropped"
