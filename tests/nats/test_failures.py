"""Failures on a real NATS JetStream: retries by nak, dead letters, long handlers, crashes."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel

from framework.broker import Message, Router
from framework.broker.policy import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    RetryPolicy,
)
from tests.nats.helpers import Collector, NatsEnv

pytestmark = pytest.mark.nats


class Event(BaseModel):
    n: int


async def test_a_failing_handler_is_retried_by_nak_with_backoff_then_dead_lettered(
    env: NatsEnv,
) -> None:
    topic = env.topic("pay")
    attempts = Collector()
    dead = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=RetryPolicy(max_attempts=3, backoff=0.3))
    async def fail(event: Event, message: Message) -> None:
        attempts.add((message.attempt, time.monotonic()))
        raise ValueError(f"boom {event.n}")

    @router.subscriber(f"{topic}.dlq", group="dlq")
    async def on_dead(message: Message) -> None:
        dead.add(message)

    await env.serve(router)
    publisher = await env.connected()
    sent = await publisher.publish(topic, b'{"n": 7}', key=b"k1", headers={"h": "\udcff v"})
    (letter,) = await dead.wait(1)
    items = attempts.items
    assert [a for a, _ in items] == [1, 2, 3], "JetStream's delivery count is the attempt"
    assert items[1][1] - items[0][1] >= 0.25, "nak delay = backoff(1)"
    assert items[2][1] - items[1][1] >= 0.5, "nak delay = backoff(2)"
    assert letter.body == b'{"n": 7}' and letter.key == b"k1"
    assert letter.headers["h"] == "\udcff v", "the original headers, byte-exact"
    assert letter.headers[DLQ_REASON] == "ValueError: boom 7"
    assert letter.headers[DLQ_ERROR_TYPE] == "ValueError"
    assert letter.headers[DLQ_ORIGINAL_TOPIC] == topic
    assert letter.headers[DLQ_ATTEMPTS] == "3"
    assert letter.headers[DLQ_ORIGINAL_OFFSET] == str(sent.offset)
    await asyncio.sleep(0.6)  # a term-inated message is never redelivered
    assert len(attempts.items) == 3


async def test_an_undecodable_message_is_dead_lettered_at_once(env: NatsEnv) -> None:
    topic = env.topic("bad")
    handled = Collector()
    dead = Collector()
    router = Router()

    @router.subscriber(topic, group="g", retry=5)
    async def handle(event: Event) -> None:
        handled.add(event.n)

    @router.subscriber(f"{topic}.dlq", group="dlq")
    async def on_dead(message: Message) -> None:
        dead.add(message)

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(topic, b"not json")
    await publisher.publish(topic, b'{"n": 2}')
    (letter,) = await dead.wait(1)
    assert letter.body == b"not json"
    assert letter.headers[DLQ_REASON].startswith("decode: ")
    assert letter.headers[DLQ_ATTEMPTS] == "1"
    assert await handled.wait(1) == [2], "the stream keeps flowing"


async def test_dead_letters_of_a_wildcard_subscriber_go_under_the_concrete_subject(
    env: NatsEnv,
) -> None:
    root = env.topic("evt")
    dead = Collector()
    router = Router()

    @router.subscriber(f"{root}.*", group="g", retry=1)
    async def fail(event: Event) -> None:
        raise RuntimeError("no")

    @router.subscriber(f"{root}.*.dlq", group="dlq")
    async def on_dead(message: Message) -> None:
        dead.add((message.topic, message.headers[DLQ_ORIGINAL_TOPIC]))

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(f"{root}.created", b'{"n": 1}')
    assert await dead.wait(1) == [(f"{root}.created.dlq", f"{root}.created")]


async def test_a_long_handler_keeps_its_message_with_in_progress_acks(env: NatsEnv) -> None:
    topic = env.topic("long")
    deliveries = Collector()
    router = Router()

    @router.subscriber(topic, group="g", ack_wait=1.0)
    async def slow(event: Event, message: Message) -> None:
        deliveries.add(message.attempt)
        await asyncio.sleep(2.5)  # 2.5 x ack_wait: redelivered without +WPI

    await env.serve(router)
    await env.serve(router)  # a second instance would get a redelivery
    publisher = await env.connected()
    await publisher.publish(topic, b'{"n": 1}')
    await deliveries.wait(1)
    await asyncio.sleep(3.5)
    assert deliveries.items == [1], "delivered once: the in-progress acks held it"


async def test_a_crashed_consumer_s_message_is_redelivered_to_the_group(env: NatsEnv) -> None:
    topic = env.topic("crash")
    started = asyncio.Event()
    redelivered = Collector()
    doomed = Router()

    @doomed.subscriber(topic, group="g", ack_wait=1.0)
    async def hang(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes: the process "dies" meanwhile

    first = env.broker()
    await env.serve(doomed, broker=first)
    publisher = await env.connected()
    await publisher.publish(topic, b'{"n": 5}')
    await asyncio.wait_for(started.wait(), 10)
    # A crash: the connection goes away with no ack, nak or in-progress ack.
    for subscription in first.subscriptions:
        progress = subscription._progress  # type: ignore[union-attr]
        assert progress is not None
        progress.cancel()
    await first.client.close()

    survivor = Router()

    @survivor.subscriber(topic, group="g", ack_wait=1.0)
    async def handle(event: Event, message: Message) -> None:
        redelivered.add((event.n, message.attempt))

    await env.serve(survivor)
    assert await redelivered.wait(1, timeout=10) == [(5, 2)]
