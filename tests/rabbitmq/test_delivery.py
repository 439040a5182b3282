"""Delivery on a real RabbitMQ: delays, per-key order under concurrency, graceful stop."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import aio_pika
import pytest
from pydantic import BaseModel

from framework.broker import Message, Router
from framework.transport.rabbitmq.broker import MAX_DELAY_MS
from framework.transport.rabbitmq.consumer import worker_for
from framework.transport.rabbitmq.errors import TopologyError
from framework.transport.rabbitmq.topology import delay_bucket
from tests.rabbitmq.helpers import Collector, RabbitEnv

pytestmark = pytest.mark.rabbitmq


class Event(BaseModel):
    n: int
    key: str = ""


STUCK = worker_for(b"stuck", 4)


def body(n: int, key: str = "") -> bytes:
    return Event(n=n, key=key).model_dump_json().encode()


async def test_delayed_publish_arrives_after_the_delay_and_keeps_its_topic(
    env: RabbitEnv,
) -> None:
    topic = env.topic("remind")
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(event: Event, message: Message) -> None:
        got.add((event.n, time.monotonic(), message.topic, message.headers))

    await env.serve(router)
    publisher = await env.connected()
    env.queues.add(delay_bucket(env.delay_exchange, env.exchange, 600))
    sent = time.monotonic()
    await publisher.publish(topic, body(1), delay=0.6, headers={"h": "v"})
    await publisher.publish(topic, body(2))
    items = await got.wait(2, timeout=10)
    assert [i[0] for i in items] == [2, 1], "the undelayed message overtakes the delayed one"
    assert items[1][1] - sent >= 0.55
    assert items[1][2] == topic and items[1][3] == {"h": "v"}, "no internal header leaks"


async def test_a_delay_beyond_rabbitmqs_ttl_limit_is_refused_and_breaks_no_later_publish(
    env: RabbitEnv,
) -> None:
    # RabbitMQ refuses a queue TTL above ten years; the failed declaration used to close the
    # channel of every delayed publish, so the next valid ones failed too.
    topic = env.topic("far")
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    await env.serve(router)
    publisher = await env.connected()
    with pytest.raises(ValueError, match="RabbitMQ delays go up to"):
        await publisher.publish(topic, body(0), deliver_at=datetime(9999, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="RabbitMQ delays go up to"):
        await publisher.publish(topic, body(0), delay=MAX_DELAY_MS / 1000 + 1)
    env.queues.add(delay_bucket(env.delay_exchange, env.exchange, 100))
    await publisher.publish(topic, body(1), delay=0.1)
    assert await got.wait(1, timeout=10) == [1]


async def test_a_refused_delay_declaration_does_not_fail_the_next_delayed_publishes(
    env: RabbitEnv,
) -> None:
    # A bucket the server refuses (here: a queue of that name declared with other
    # arguments) closed the channel every delay bucket is declared on; the next delayed
    # publishes failed with ChannelInvalidStateError until aio-pika restored it.
    topic = env.topic("clash")
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    await env.serve(router)
    publisher = await env.connected()
    clash = delay_bucket(env.delay_exchange, env.exchange, 300)
    env.queues |= {clash, delay_bucket(env.delay_exchange, env.exchange, 100)}
    connection = await aio_pika.connect(env.url)
    async with connection:
        await (await connection.channel()).declare_queue(clash, durable=True)
    with pytest.raises(TopologyError):
        await publisher.publish(topic, body(0), delay=0.3)
    await publisher.publish(topic, body(1), delay=0.1)
    assert await got.wait(1, timeout=10) == [1]


async def test_messages_with_the_same_key_stay_in_order_under_concurrency(
    env: RabbitEnv,
) -> None:
    topic = env.topic("ordered")
    done = Collector()
    in_flight = 0
    most = 0
    router = Router()

    @router.subscriber(topic, group="g", concurrency=4)
    async def handle(event: Event) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(random.uniform(0, 0.004))
        in_flight -= 1
        done.add((event.key, event.n))

    await env.serve(router)
    publisher = await env.connected()
    keys = [f"user-{k}" for k in range(6)]
    await asyncio.gather(
        *(
            publisher.publish(topic, body(n, key), key=key.encode())
            for n in range(25)
            for key in keys
        )
    )
    items = await done.wait(150)
    for key in keys:
        sequence = [n for k, n in items if k == key]
        assert sequence == sorted(sequence), f"{key} handled out of order: {sequence}"
        assert len(sequence) == 25
    assert most > 1, "workers ran concurrently"


async def test_graceful_stop_acks_what_finished_and_leaves_the_rest(env: RabbitEnv) -> None:
    topic = env.topic("stop")
    handled = Collector()
    started = Collector()
    blocker = asyncio.Event()  # never set: the handler of message 100 cannot finish
    router = Router()

    @router.subscriber(topic, group="g", concurrency=4)
    async def handle(event: Event) -> None:
        started.add(event.n)
        if event.n == 100:
            await blocker.wait()
        if event.n == 200:
            await asyncio.sleep(0.3)  # in flight at stop, finishes within the timeout
        handled.add(event.n)

    # Keys whose worker is not the one blocked by message 100.
    free = [k for k in (b"k%d" % i for i in range(100)) if worker_for(k, 4) != STUCK][:11]
    server = await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(topic, body(100), key=b"stuck")
    await publisher.publish(topic, body(101), key=b"stuck")  # queued behind 100: not started
    for n in range(10):
        await publisher.publish(topic, body(n), key=free[n])
    await handled.wait(10)
    await publisher.publish(topic, body(200), key=free[10])
    await started.wait(12)
    begin = time.monotonic()
    await server.stop(1.0)
    assert time.monotonic() - begin < 5
    assert 200 in handled.items and 100 not in handled.items and 101 not in started.items

    # What finished was acked; 100 (cancelled) and 101 (never started) are redelivered.
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"g.{topic}", passive=True)
        assert queue.declaration_result.message_count == 2
        redelivered = []
        for _ in range(2):
            message = await queue.get(timeout=5)
            redelivered.append((Event.model_validate_json(message.body).n, message.redelivered))
            await message.ack()
    assert redelivered == [(100, True), (101, True)]
