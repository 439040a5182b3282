"""Failures on a real RabbitMQ: TTL-queue retries, dead letters, poison messages, batches."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from pydantic import BaseModel

from framework.broker import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    Message,
    RetryPolicy,
    Router,
)
from tests.rabbitmq.helpers import Collector, RabbitEnv, read_queue

pytestmark = pytest.mark.rabbitmq

FAST = RetryPolicy(max_attempts=3, backoff=0.05, multiplier=2.0)


class Event(BaseModel):
    n: int


def body(n: int) -> bytes:
    return Event(n=n).model_dump_json().encode()


async def queue_depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


async def test_retries_through_ttl_queues_then_dead_letters_with_headers(env: RabbitEnv) -> None:
    topic = env.topic("pay")
    attempts = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=FAST)
    async def handle(event: Event, message: Message) -> None:
        attempts.add((message.attempt, time.monotonic(), message.topic, message.key))
        raise ValueError(f"cannot pay {event.n}")

    server = await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(topic, body(5), key=b"k1", headers={"trace": "t-1"})
    await attempts.wait(3)
    seen = attempts.items
    assert [a[0] for a in seen] == [1, 2, 3]
    assert all(a[2] == topic and a[3] == b"k1" for a in seen), "topic and key survive retries"
    # Delays come from the TTL queues: >= 50 ms then >= 100 ms (minus timer slack).
    assert seen[1][1] - seen[0][1] >= 0.04 and seen[2][1] - seen[1][1] >= 0.09

    (dead,) = await read_queue(env.url, f"{topic}.dlq", 1)
    assert dead.body == body(5)
    headers = dead.headers
    assert headers[DLQ_REASON] == "ValueError: cannot pay 5"
    assert headers[DLQ_ERROR_TYPE] == "ValueError"
    assert headers[DLQ_ORIGINAL_TOPIC] == topic
    assert headers[DLQ_ATTEMPTS] == "3"
    assert headers["x-original-queue"] == f"g.{topic}"
    assert headers["trace"] == "t-1"
    assert "x-death" not in headers and "x-pykratos-attempt" not in headers
    await asyncio.sleep(0.2)
    assert len(attempts.items) == 3, "no attempt after dead-lettering"
    await server.stop(5)  # unacked deliveries would be back in the queue now
    assert await queue_depth(env.url, f"g.{topic}") == 0


async def test_a_retry_that_succeeds_is_acked_and_not_dead_lettered(env: RabbitEnv) -> None:
    topic = env.topic("flaky")
    attempts = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=FAST)
    async def handle(event: Event, message: Message) -> None:
        attempts.add(message.attempt)
        if message.attempt == 1:
            raise ConnectionError("database blip")

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(topic, body(1))
    assert await attempts.wait(2) == [1, 2]
    await asyncio.sleep(0.2)
    assert attempts.items == [1, 2]
    assert await queue_depth(env.url, f"{topic}.dlq") == 0


async def test_poison_message_goes_straight_to_the_dlq_and_consumption_continues(
    env: RabbitEnv,
) -> None:
    topic = env.topic("poison")
    handled = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=FAST)
    async def handle(event: Event) -> None:
        handled.add(event.n)

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(topic, body(1))
    await publisher.publish(topic, b"{not json")
    await publisher.publish(topic, b'{"n": "not a number"}')
    await publisher.publish(topic, body(2))
    assert await handled.wait(2) == [1, 2]
    dead = await read_queue(env.url, f"{topic}.dlq", 2)
    assert [m.body for m in dead] == [b"{not json", b'{"n": "not a number"}']
    for message in dead:
        assert message.headers[DLQ_ERROR_TYPE] == "DecodeError"
        assert message.headers[DLQ_ATTEMPTS] == "1"  # no retry for what cannot be decoded
        assert str(message.headers[DLQ_REASON]).startswith("decode:")


async def test_custom_dlq_and_disabled_dlq(env: RabbitEnv) -> None:
    custom, dropped = env.topic("custom"), env.topic("dropped")
    handled = Collector()
    router = Router()

    @router.subscriber(custom, group="g", retry=1, dlq=env.topic("parking"))
    async def to_parking(event: Event) -> None:
        raise RuntimeError("no")

    @router.subscriber(dropped, group="g", retry=1, dlq="")
    async def dropping(event: Event) -> None:
        handled.add(event.n)
        raise RuntimeError("no")

    server = await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(custom, body(1))
    await publisher.publish(dropped, body(2))
    (parked,) = await read_queue(env.url, env.topic("parking"), 1)
    assert parked.headers[DLQ_ORIGINAL_TOPIC] == custom
    await handled.wait(1)
    await asyncio.sleep(0.1)
    await server.stop(5)
    assert await queue_depth(env.url, f"g.{dropped}") == 0, "acked and dropped, as opted out"


async def test_batch_handler_gets_lists_and_an_undecodable_message_is_dead_lettered_alone(
    env: RabbitEnv,
) -> None:
    topic = env.topic("batch")
    batches = Collector()
    router = Router()

    @router.subscriber(topic, group="g", batch=10)
    async def handle(events: list[Event]) -> None:
        batches.add([e.n for e in events])

    server = await env.serve(router)
    publisher = await env.connected()
    for n in range(5):
        await publisher.publish(topic, body(n))
    await publisher.publish(topic, b"garbage")
    for n in range(5, 10):
        await publisher.publish(topic, body(n))
    deadline = time.monotonic() + 10
    while sum(len(b) for b in batches.items) < 10 and time.monotonic() < deadline:
        await batches.wait(len(batches.items) + 1)
    assert sorted(n for b in batches.items for n in b) == list(range(10))
    assert max(len(b) for b in batches.items) > 1, "messages arrive in batches"
    (dead,) = await read_queue(env.url, f"{topic}.dlq", 1)
    assert dead.body == b"garbage"
    await server.stop(5)
    assert await queue_depth(env.url, f"g.{topic}") == 0


async def test_an_unreadable_attempt_header_from_another_producer_counts_as_a_first_delivery(
    env: RabbitEnv,
) -> None:
    topic = env.topic("foreign")
    attempts = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(event: Event, message: Message) -> None:
        attempts.add((event.n, message.attempt))

    server = await env.serve(router)
    connection = await aio_pika.connect(env.url)
    async with connection:
        exchange = await (await connection.channel()).get_exchange(env.exchange)
        for n, attempt in ((1, "not a number"), (2, "2")):
            message = aio_pika.Message(body(n), headers={"x-pykratos-attempt": attempt})
            await exchange.publish(message, routing_key=topic)
    assert sorted(await attempts.wait(2)) == [(1, 1), (2, 2)]
    await server.stop(5)
    assert await queue_depth(env.url, f"g.{topic}") == 0, "both acked, none left stuck"
