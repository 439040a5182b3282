"""A message whose properties (headers) do not fit in one AMQP frame is refused alone,
before it is written: RabbitMQ would close the whole connection (``frame_too_large``),
redelivering what the subscribers on it had in flight (see
:mod:`framework.transport.rabbitmq.framesize`)."""

from __future__ import annotations

import asyncio
import time

import pytest
from pamqp import commands as spec

from framework.broker import Message, Router
from framework.transport.rabbitmq import MessageTooLargeError
from framework.transport.rabbitmq.batching import RabbitBatchingPublisher
from framework.transport.rabbitmq.framesize import check_header_frame, header_frame_size
from tests.rabbitmq.helpers import Collector, RabbitEnv

pytestmark = pytest.mark.rabbitmq

# Larger than the 131,072-byte frame_max RabbitMQ negotiates by default.
HUGE = {"a": "x" * 200_000}


async def _collector(env: RabbitEnv, topic: str, broker: object = None) -> Collector:
    seen = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(message: Message) -> None:
        seen.add((message.body, dict(message.headers)))

    await env.serve(router, broker=broker)  # type: ignore[arg-type]
    return seen


async def test_a_huge_header_is_refused_at_once_and_the_connection_stays_up(
    env: RabbitEnv,
) -> None:
    topic = env.topic("busy")
    broker = env.broker(publish_timeout=10.0)
    started, release = asyncio.Event(), asyncio.Event()
    runs = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(message: Message) -> None:
        runs.add(message.body)
        started.set()
        await release.wait()  # in flight (unacked) while the huge publish is tried

    await env.serve(router, broker=broker)
    await broker.publish(topic, b"in-flight")
    async with asyncio.timeout(10):
        await started.wait()

    began = time.monotonic()
    with pytest.raises(MessageTooLargeError, match="one AMQP frame"):
        await broker.publish(env.topic("other"), b"x", headers=HUGE)
    assert time.monotonic() - began < 1.0  # refused, not retried until publish_timeout

    release.set()
    await broker.publish(topic, b"after")  # the same connection publishes on
    await runs.wait(2)
    await asyncio.sleep(0.5)
    # A closed connection would have redelivered the unacked message: it ran once.
    assert runs.items == [b"in-flight", b"after"]


async def test_a_header_just_under_the_frame_goes_through(env: RabbitEnv) -> None:
    topic = env.topic("big")
    broker = await env.connected()
    seen = await _collector(env, topic)
    big = "y" * 120_000
    await broker.publish(topic, b"ok", headers={"big": big})
    (body, headers), *_ = await seen.wait(1)
    assert body == b"ok" and headers["big"] == big


@pytest.mark.parametrize("confirms", [True, False])
async def test_unconfirmed_and_confirmed_publish_refuse_it_alike(
    env: RabbitEnv, confirms: bool
) -> None:
    topic = env.topic("mode")
    broker = await env.connected(publisher_confirms=confirms, publish_timeout=10.0)
    seen = await _collector(env, topic)
    began = time.monotonic()
    with pytest.raises(MessageTooLargeError):
        await broker.publish(topic, b"huge", headers=HUGE)
    assert time.monotonic() - began < 1.0
    for n in range(3):
        await broker.publish(topic, f"ok{n}".encode())
    await seen.wait(3)
    await asyncio.sleep(0.5)
    # Nothing lost to a closed connection, nothing of the huge one delivered.
    assert sorted(body for body, _ in seen.items) == [b"ok0", b"ok1", b"ok2"]


async def test_in_a_batch_only_the_huge_message_fails(env: RabbitEnv) -> None:
    topic = env.topic("batch")
    seen = await _collector(env, topic)
    broker = await env.connected(publish_timeout=10.0)
    publisher = broker.batch_publisher(chunk_size=64, flush_interval=0.05)
    assert isinstance(publisher, RabbitBatchingPublisher)
    futures = [
        await publisher.submit(topic, b"good1", key=b"k"),
        await publisher.submit(topic, b"huge", key=b"k", headers=HUGE),
        await publisher.submit(topic, b"bad-name", key=b"k", headers={"n" * 200: "v"}),
        await publisher.submit(topic, b"good2", key=b"k"),
    ]
    async with asyncio.timeout(5):
        results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[1], MessageTooLargeError), results[1]
    assert isinstance(results[2], ValueError), results[2]
    assert not isinstance(results[0], BaseException), results[0]
    assert not isinstance(results[3], BaseException), results[3]
    await seen.wait(2)
    await asyncio.sleep(0.5)
    assert [body for body, _ in seen.items] == [b"good1", b"good2"]  # each exactly once
    await publisher.close()


async def test_a_header_name_amqp_cannot_carry_is_refused_by_name(env: RabbitEnv) -> None:
    topic = env.topic("names")
    broker = await env.connected()
    seen = await _collector(env, topic)
    too_long = "h" * 129
    with pytest.raises(ValueError, match=f"header name '{'h' * 40}'"):
        await broker.publish(topic, b"cut", headers={too_long: "v"})
    longest = "é" * 64  # 128 bytes in UTF-8: the limit
    await broker.publish(topic, b"kept", headers={longest: "v"})
    (body, headers), *_ = await seen.wait(1)
    assert body == b"kept" and headers == {longest: "v"}


def test_the_cheap_bound_never_lets_a_frame_too_large_through() -> None:
    limit = 131_064
    for headers in (
        {"a": "é" * 40_000},  # 80,000 bytes in UTF-8 for 40,000 characters
        {"nested": {"t": "x" * 140_000}},  # nested tables are measured exactly
        {"list": ["x" * 70_000, "y" * 70_000]},
        {f"k{n}": "v" * 1000 for n in range(140)},
    ):
        properties = spec.Basic.Properties(headers=headers)
        if header_frame_size(properties) > limit:
            with pytest.raises(MessageTooLargeError):
                check_header_frame(properties, limit, exchange="e", routing_key="t")
        else:
            check_header_frame(properties, limit, exchange="e", routing_key="t")
    # ... and the first (80 KB) fits, the others do not.
    check_header_frame(
        spec.Basic.Properties(headers={"a": "é" * 40_000}), limit, exchange="e", routing_key="t"
    )
    with pytest.raises(MessageTooLargeError):
        check_header_frame(
            spec.Basic.Properties(headers={"a": "é" * 70_000}), limit, exchange="e", routing_key="t"
        )


async def test_a_retry_copy_too_large_for_a_frame_is_dead_lettered_not_requeued(
    env: RabbitEnv,
) -> None:
    """A message that just fits, whose retry copy (two more headers) does not: requeued, it
    would fail the same way on every redelivery; it is dead-lettered with the reason."""
    from framework.broker import RetryPolicy
    from framework.broker.policy import DLQ_REASON
    from framework.transport.rabbitmq.headers import message_headers
    from framework.transport.rabbitmq.publishing import persistent_properties
    from tests.rabbitmq.helpers import read_queue

    topic = env.topic("edge")
    limit = 131_072 - 8  # RabbitMQ's default frame_max, less the frame's own bytes
    # The largest value whose publish still fits, leaving ~10 bytes: the retry headers
    # (attempt number and topic) take more.
    size = 100_000
    frame = header_frame_size(persistent_properties(message_headers({"h": "z" * size}, None)))
    value = "z" * (size + limit - frame - 10)
    runs = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=RetryPolicy(max_attempts=3, backoff=0.01))
    async def handle(message: Message) -> None:
        runs.add(message.attempt)
        raise ValueError("always fails")

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(topic, b"edge", headers={"h": value})
    (dead,) = await read_queue(env.url, f"{topic}.dlq", 1)
    assert "retry copy was refused" in str(dead.headers[DLQ_REASON])
    await asyncio.sleep(0.5)
    assert runs.items == [1]  # handled once, then dead-lettered: no redelivery loop
