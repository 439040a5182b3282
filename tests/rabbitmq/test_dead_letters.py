"""Dead letters on a real RabbitMQ: faithful copies (issue 8 item 4) and dead-letter
publishes the broker refuses (issue 8 item 2).

RabbitMQ's ``max_message_size`` is node-wide (this machine's RabbitMQ is shared), so the
"too large" refusal is covered by unit tests on a fake publish; a refused write permission
on the dead-letter exchange, in a private vhost, is the real permanent refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import ChannelPreconditionFailed

from framework.broker import (
    DLQ_REASON,
    Message,
    Outcome,
    ProcessResult,
    RetryPolicy,
    Router,
    SubscriberSpec,
)
from framework.broker.policy import (
    DLQ_ORIGINAL_SIZE,
    DLQ_TRUNCATED,
    DLQ_TRUNCATED_BODY_BYTES,
)
from framework.transport.rabbitmq.deadletter import RabbitDeadLetter
from framework.transport.rabbitmq.errors import MessageTooLargeError
from framework.transport.rabbitmq.options import resolve_topology
from framework.transport.rabbitmq.publishing import ConfirmedPublisher
from tests.rabbitmq.helpers import Collector, RabbitEnv, rabbitmqctl, read_queue

pytestmark = pytest.mark.rabbitmq

NOT_UTF8 = b"\xc3\x28"
BINARY_BODY = bytes(range(256)) * 4


# -- item 4: a dead letter is a faithful copy --------------------------------------------------


async def test_item4_non_utf8_header_and_binary_body_survive_retry_dlq_and_republish(
    env: RabbitEnv,
) -> None:
    topic, forwarded = env.topic("faithful"), env.topic("forwarded")
    seen = Collector()
    relayed = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=RetryPolicy(max_attempts=2, backoff=0.01))
    async def handle(message: Message) -> None:
        seen.add(message.header_bytes("h"))
        if message.attempt == 1:  # a handler forwarding what it got
            await publisher.publish(forwarded, message.body, headers=message.headers)
        raise ValueError("always fails")

    @router.subscriber(forwarded, group="g")
    async def relay(message: Message) -> None:
        relayed.add((message.body, message.header_bytes("h"), message.headers["text"]))

    await env.serve(router)
    publisher = await env.connected()
    # A foreign producer: a byte-array header that is not UTF-8, and a text one.
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(env.exchange)
        headers: dict[str, Any] = {"h": bytearray(NOT_UTF8), "text": "grüße"}
        await exchange.publish(aio_pika.Message(BINARY_BODY, headers=headers), routing_key=topic)

    (dead,) = await read_queue(env.url, f"{topic}.dlq", 1)
    await seen.wait(2)
    await relayed.wait(1)
    assert seen.items == [NOT_UTF8, NOT_UTF8]
    assert dead.body == BINARY_BODY
    assert bytes(dead.headers["h"]) == NOT_UTF8  # type: ignore[arg-type]
    assert dead.headers["text"] == "grüße"
    assert dead.headers[DLQ_REASON] == "ValueError: always fails"
    assert relayed.items == [(BINARY_BODY, NOT_UTF8, "grüße")]


# -- item 2: a refused dead letter never loops forever -----------------------------------------


async def test_item2_a_deleted_dead_letter_exchange_is_declared_again(
    env: RabbitEnv, caplog: pytest.LogCaptureFixture
) -> None:
    topic = env.topic("dlx-gone")
    router = Router()

    @router.subscriber(topic, group="g", retry=RetryPolicy(max_attempts=1))
    async def handle(message: Message) -> None:
        raise ValueError("boom")

    await env.serve(router)
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(env.dlx)
    publisher = await env.connected()
    await publisher.publish(topic, b"x")
    (dead,) = await read_queue(env.url, f"{topic}.dlq", 1)
    assert dead.body == b"x"
    assert any("declaring them again" in r.getMessage() for r in caplog.records)


@pytest.fixture
def write_refused_vhost(vhost_url: tuple[str, str]) -> Iterator[str]:
    """The private vhost, where guest may not write to ``*.dlx`` exchanges."""
    vhost, url = vhost_url
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", r"^(?!.*\.dlx$).*", ".*")
    yield url


async def test_item2_a_permanently_refused_dead_letter_is_parked_and_the_queue_flows(
    write_refused_vhost: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = RabbitEnv(write_refused_vhost)
    topic = env.topic("refused")
    handled = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=RetryPolicy(max_attempts=1))
    async def handle(message: Message) -> None:
        if message.body == b"bad":
            raise ValueError("boom")
        handled.add(message.body)

    try:
        server = await env.serve(router)
        publisher = await env.connected()
        with caplog.at_level(logging.CRITICAL, "pykratos.rabbitmq"):
            await publisher.publish(topic, b"bad")
            for n in range(5):
                await publisher.publish(topic, b"%d" % n)
            await handled.wait(5)
            await asyncio.sleep(0.3)  # a requeue loop would re-handle "bad" within 1 s
            await server.stop(5)
        parked = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(parked) == 1 and "PARKED" in parked[0].getMessage()
        assert "ACCESS_REFUSED" in parked[0].getMessage()
    finally:
        await env.aclose()


# -- item 2, unit level: too large and truncated copies ----------------------------------------


class _FakePublish:
    """Refuses the first ``refusals`` publishes as too large, then accepts."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, **publish: Any) -> None:
        if self.refusals:
            self.refusals -= 1
            raise MessageTooLargeError("message size 5000000 is larger than configured max size")
        self.sent.append(publish)


def _sink(publish: _FakePublish) -> RabbitDeadLetter:
    spec = SubscriberSpec(topic="orders", handler=lambda: None, group="g")
    topology = resolve_topology(
        spec,
        default_exchange="x",
        default_exchange_type="topic",
        default_prefetch=10,
        dead_letter_exchange="dlx",
        instance_id="i",
    )
    return RabbitDeadLetter(spec, topology, None, publish)  # type: ignore[arg-type]


_DEAD = ProcessResult(Outcome.DEAD, 1, "decode: not JSON", "DecodeError")


async def test_item2_too_large_dead_letter_is_truncated() -> None:
    publish = _FakePublish(refusals=1)
    big = Message(b"y" * 100_000, "orders", headers={"h": "\udcc3("}, id="m-1")
    await _sink(publish)(big, _DEAD)
    [sent] = publish.sent
    assert sent["body"] == b"y" * DLQ_TRUNCATED_BODY_BYTES
    headers = sent["properties"].headers
    assert headers[DLQ_TRUNCATED] == "body"
    assert headers[DLQ_ORIGINAL_SIZE] == "100000"
    assert headers["h"] == bytearray(NOT_UTF8)  # the original bytes, as a byte array


async def test_item2_a_truncated_copy_refused_too_is_parked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publish = _FakePublish(refusals=2)
    sink = _sink(publish)
    with caplog.at_level(logging.CRITICAL, "pykratos.rabbitmq"):
        await sink(Message(b"y" * 100_000, "orders", id="m-2"), _DEAD)  # returns: acked
    assert sink.parked == 1 and publish.sent == []
    assert "m-2" in caplog.records[-1].getMessage()


class _RefusingChannel:
    """Fails every publish the way RabbitMQ does for a body above max_message_size."""

    async def ready(self) -> None: ...

    async def get_underlay_channel(self) -> Any:
        return self

    async def basic_publish(self, body: bytes, **_: Any) -> Any:
        raise ChannelPreconditionFailed(
            f"PRECONDITION_FAILED - message size {len(body)} is larger than configured max "
            "size 1000"
        )


async def test_item2_the_publisher_reports_too_large_at_once() -> None:
    publisher = ConfirmedPublisher(_RefusingChannel(), timeout=30)  # type: ignore[arg-type]
    async with asyncio.timeout(5):  # not retried until the 30 s timeout
        with pytest.raises(MessageTooLargeError):
            await publisher.publish(
                exchange="dlx",
                routing_key="k",
                body=b"z" * 2000,
                properties=None,  # type: ignore[arg-type]
                mandatory=True,
            )
