"""Headers and bodies are bytes end to end on the memory broker (issue 8 item 4): a header
that is not UTF-8 and a binary body survive a traced publish, consume, retry and dead-letter
byte for byte. (The same promise on Kafka and RabbitMQ: tests/kafka/test_dead_letters.py and
tests/rabbitmq/test_dead_letters.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from framework.broker import (
    DLQ_REASON,
    BrokerServer,
    BytesCodec,
    MemoryBroker,
    Message,
    RetryPolicy,
    Router,
    header_bytes,
    header_text,
)
from framework.tracing import TracedPublisher, tracing
from tests.broker.helpers import Collector

NOT_UTF8 = b"\xc3\x28"
BINARY_BODY = bytes(range(256)) * 4


def test_item4_header_text_round_trips_every_byte_string() -> None:
    for raw in (NOT_UTF8, b"", b"plain", "grüße".encode(), bytes(range(256)), b"\xff\xfe\x00"):
        text = header_text(raw)
        assert header_bytes(text) == raw
    assert header_text("grüße".encode()) == "grüße"  # text headers still read as text


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(partitions=2)
    await broker.connect()
    yield broker
    await broker.close()


async def test_item4_non_utf8_header_and_binary_body_survive_trace_retry_and_dlq(
    broker: MemoryBroker,
) -> None:
    provider = TracerProvider()
    attempts = Collector()
    dead = Collector()
    router = Router()

    @router.subscriber("raw", group="g", retry=RetryPolicy(max_attempts=2, backoff=0))
    async def handle(message: Message) -> None:
        attempts.add((message.body, message.header_bytes("h"), "traceparent" in message.headers))
        raise ValueError("always fails")

    @router.subscriber("raw.dlq", group="ops")
    async def on_dead(message: Message) -> None:
        dead.add(message)

    server = BrokerServer(broker, [router], [tracing(provider)])
    await server.start()
    try:
        publisher = TracedPublisher(broker, BytesCodec(), tracer_provider=provider)
        with provider.get_tracer("test").start_as_current_span("caller"):
            await publisher.publish("raw", BINARY_BODY, headers={"h": header_text(NOT_UTF8)})
        await attempts.wait(2)
        await dead.wait(1)
    finally:
        await server.stop(5)
    assert attempts.items == [(BINARY_BODY, NOT_UTF8, True)] * 2
    [letter] = dead.items
    assert letter.body == BINARY_BODY
    assert letter.header_bytes("h") == NOT_UTF8
    assert letter.headers[DLQ_REASON] == "ValueError: always fails"
