"""Dead letters on a real Kafka-protocol broker (Tansu): faithful copies (issue 8 item 4) and
permanent dead-letter failures that must not wedge a partition (issue 8 item 2).

Tansu has no ``max.message.bytes`` limit (it stores a 3 MB record), so "too large" is
reproduced the way the issue met it: a foreign producer with ``max_request_size`` 4 MB writes
a 1.5 MB record, and the framework's producer (``max_request_size`` 1 MiB by default) refuses
to send its dead-letter copy (aiokafka's client-side ``MessageSizeTooLargeError``, the same
non-retriable error a broker answers). Authorization errors cannot be produced on Tansu: the
classification is covered by unit tests on a fake producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import BaseModel

from framework.broker import (
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    BrokerServer,
    Message,
    Outcome,
    ProcessResult,
    RetryPolicy,
    Router,
    SubscriberSpec,
)
from framework.broker.policy import (
    DLQ_ORIGINAL_SIZE,
    DLQ_PUBLISH_ERROR,
    DLQ_TRUNCATED,
    DLQ_TRUNCATED_BODY_BYTES,
)
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.deadletter import KafkaDeadLetter
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import Waiter, create_topic, read_topic

pytestmark = pytest.mark.kafka

NOT_UTF8 = b"\xc3\x28"
BINARY_BODY = bytes(range(256)) * 4


class Event(BaseModel):
    id: int


async def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> list[Any]:
    """Write ``records`` with a plain aiokafka producer (the "foreign producer") allowed to
    send up to 4 MB; returns their metadata."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        return [await (await producer.send(topic, **record)) for record in records]
    finally:
        await producer.stop()


# -- item 4: a dead letter is a faithful copy --------------------------------------------------


async def test_item4_non_utf8_header_and_binary_body_survive_retry_dlq_and_republish(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, republished = unique("faithful"), unique("republished")
    seen: list[bytes | None] = []
    router = Router()

    @router.subscriber(topic, group=unique("g"), retry=RetryPolicy(max_attempts=2, backoff=0))
    async def handle(message: Message) -> None:
        seen.append(message.header_bytes("h"))
        if message.attempt == 1:
            # A handler forwarding what it got: same body, same headers.
            await broker.publish(republished, message.body, headers=message.headers)
        raise ValueError("always fails")

    headers = [("h", NOT_UTF8), ("text", "grüße".encode()), ("null", None), ("dup", b"1"),
               ("dup", b"2")]  # fmt: skip
    [sent] = await produce(
        bootstrap, topic, [{"value": BINARY_BODY, "key": b"\xff\x00", "headers": headers}]
    )
    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        [dead] = await read_topic(bootstrap, f"{topic}.dlq", 1)
        [again] = await read_topic(bootstrap, republished, 1)
    finally:
        await server.stop(5)

    assert seen == [NOT_UTF8, NOT_UTF8]  # the handler reads the exact bytes on every attempt
    assert dead.value == BINARY_BODY
    assert dead.key == b"\xff\x00"
    # The record's own headers, byte for byte, in order, nulls and repeats included...
    assert list(dead.headers[: len(headers)]) == headers
    # ...then the reason headers.
    added = dict(dead.headers[len(headers) :])
    assert added[DLQ_REASON] == b"ValueError: always fails"
    assert added[DLQ_ORIGINAL_OFFSET] == str(sent.offset).encode()
    # Republishing message.headers sends the same bytes (Message.headers is lossless).
    assert again.value == BINARY_BODY
    assert dict(again.headers)["h"] == NOT_UTF8
    assert dict(again.headers)["text"] == "grüße".encode()


async def test_item4_dead_lettering_twice_keeps_one_reason(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    """A message consumed from a DLQ and dead-lettered again carries the latest reason only."""
    topic = unique("twice")
    router = Router()

    @router.subscriber(topic, group=unique("g"), retry=RetryPolicy(max_attempts=1))
    async def handle(message: Message) -> None:
        raise ValueError("second failure")

    await produce(
        bootstrap, topic, [{"value": b"x", "headers": [(DLQ_REASON, b"first failure")]}]
    )
    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        [dead] = await read_topic(bootstrap, f"{topic}.dlq", 1)
    finally:
        await server.stop(5)
    assert [v for k, v in dead.headers if k == DLQ_REASON] == [b"ValueError: second failure"]


# -- item 2: a permanent dead-letter failure never wedges the partition -----------------------


async def test_item2_too_large_dead_letter_is_truncated_and_the_partition_flows(
    bootstrap: str, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique("big")
    await create_topic(bootstrap, topic, 1)
    handled = Waiter()
    router = Router()

    @router.subscriber(topic, group=unique("g"))
    async def handle(ev: Event) -> None:
        handled.add()

    big = b"\x00not json" + b"x" * 1_500_000  # undecodable: dead-lettered at once
    records = [{"value": big, "key": b"k", "headers": [("h", NOT_UTF8)]}]
    records += [{"value": Event(id=i).model_dump_json().encode(), "key": b"k"} for i in range(10)]
    [original, *_] = await produce(bootstrap, topic, records)

    # The framework's producer keeps the default max_request_size (1 MiB).
    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        await handled.wait_for(10, timeout=30)
        [dead] = await read_topic(bootstrap, f"{topic}.dlq", 1)
    finally:
        await server.stop(5)

    assert dead.value == big[:DLQ_TRUNCATED_BODY_BYTES]
    headers = dict(dead.headers)
    assert headers[DLQ_TRUNCATED] == b"body"
    assert headers[DLQ_ORIGINAL_SIZE] == str(len(big)).encode()
    assert headers[DLQ_PUBLISH_ERROR].startswith(b"MessageSizeTooLargeError")
    assert headers[DLQ_ORIGINAL_TOPIC] == topic.encode()
    assert headers[DLQ_ORIGINAL_PARTITION] == b"0"
    assert headers[DLQ_ORIGINAL_OFFSET] == str(original.offset).encode()
    assert headers[DLQ_REASON].startswith(b"decode: ")
    assert headers["h"] == NOT_UTF8  # small original headers are kept
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


async def test_item2_a_copy_refused_even_truncated_is_parked_and_the_partition_flows(
    bootstrap: str, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique("parked")
    await create_topic(bootstrap, topic, 1)
    handled = Waiter()
    router = Router()

    @router.subscriber(topic, group=unique("g"))
    async def handle(ev: Event) -> None:
        handled.add()

    records = [{"value": b"{bad json" * 200, "key": b"k"}]
    records += [{"value": Event(id=i).model_dump_json().encode(), "key": b"k"} for i in range(10)]
    [original, *_] = await produce(bootstrap, topic, records)

    # Smaller than the DLQ headers alone: even the truncated copy is refused.
    server = BrokerServer(KafkaBroker(bootstrap, max_request_size=200, **FAST_JOIN), [router])
    with caplog.at_level(logging.CRITICAL, "pykratos.kafka"):
        await server.start()
        try:
            await handled.wait_for(10, timeout=30)
        finally:
            await server.stop(5)

    [parked] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    text = parked.getMessage()
    assert "PARKED" in text and f"offset {original.offset}" in text and topic in text
    assert "MessageSizeTooLargeError" in text


async def test_item2_invalid_dead_letter_topic_is_refused_at_subscribe(
    broker: KafkaBroker, unique: Callable[[str], str]
) -> None:
    router = Router()

    @router.subscriber(unique("t"), dlq="not a topic!")
    async def handle(ev: Event) -> None: ...

    server = BrokerServer(broker, [router])
    with pytest.raises(ValueError, match="dead-letter topic 'not a topic!'"):
        await server.start()


class _FakeProducer:
    """Fails every send with the given errors, in turn; then accepts."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[tuple[str, bytes, Any]] = []

    async def send(self, topic: str, body: bytes, *, key: Any, headers: Any) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((topic, body, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _sink(producer: _FakeProducer) -> KafkaDeadLetter:
    spec = SubscriberSpec(topic="orders", handler=lambda: None)
    return KafkaDeadLetter(lambda: producer, spec, max_request_size=1 << 20)  # type: ignore[arg-type,return-value]


_DEAD = ProcessResult(Outcome.DEAD, 3, "ValueError: boom", "ValueError")


async def test_item2_authorization_refusal_parks_instead_of_retrying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = _FakeProducer(TopicAuthorizationFailedError())
    sink = _sink(producer)
    message = Message(b"body", "orders", partition=2, offset=41, id="orders/2/41")
    with caplog.at_level(logging.CRITICAL, "pykratos.kafka"):
        await sink(message, _DEAD)  # returns: the subscription commits the offset
    assert sink.parked == 1 and producer.sent == []
    assert "partition 2, offset 41" in caplog.records[-1].getMessage()


async def test_item2_transient_failure_is_raised_for_a_retry() -> None:
    producer = _FakeProducer(KafkaConnectionError())
    sink = _sink(producer)
    with pytest.raises(KafkaConnectionError):
        await sink(Message(b"body", "orders", partition=0, offset=1), _DEAD)
    await sink(Message(b"body", "orders", partition=0, offset=1), _DEAD)  # broker is back
    assert sink.parked == 0 and len(producer.sent) == 1
