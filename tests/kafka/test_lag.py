"""Kafka consumer lag per partition in the metrics: high watermark minus what is processed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from framework.broker import Message
from framework.broker.processor import SubscriberProcessor
from framework.broker.subscriber import SubscriberSpec
from framework.metrics import Metrics, setup_metrics
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import create_topic


def _lag(metrics: Metrics, topic: str) -> dict[str, float]:
    return {
        sample.labels["messaging_destination_partition_id"]: sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
        if sample.name == "pykratos_messaging_consumer_lag"
        and sample.labels["messaging_destination_name"] == topic
    }


async def test_lag_counts_unprocessed_messages_per_partition(
    bootstrap: str, broker: KafkaBroker, unique: Callable[[str], str]
) -> None:
    metrics = setup_metrics("lag-test", set_global=False)
    topic, group = unique("lag"), unique("lag-group")
    await create_topic(bootstrap, topic, 1)
    for n in range(10):
        await broker.publish(topic, str(n).encode(), key=b"k")
    started, release, all_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    async def handler(message: Message) -> None:
        started.set()
        await release.wait()
        handled.append(message.offset or 0)
        if len(handled) == 10:
            all_done.set()

    spec = SubscriberSpec(topic, handler, group=group)
    consumer = KafkaBroker(bootstrap, client_id="lag-test", **FAST_JOIN)
    await consumer.connect()
    try:
        processor = SubscriberProcessor(spec, broker_kind="kafka")
        subscription = await consumer.subscribe(spec, processor)
        async with asyncio.timeout(20):
            await started.wait()
        assert _lag(metrics, topic) == {"0": 10.0}  # fetched, none processed
        release.set()
        async with asyncio.timeout(20):
            await all_done.wait()
        await asyncio.sleep(0)  # the last message's offset is marked finished after it returns
        assert _lag(metrics, topic) == {"0": 0.0}
        await subscription.stop(5)
        assert _lag(metrics, topic) == {}  # a stopped subscription reports nothing
    finally:
        await consumer.close()
        metrics.shutdown()
