"""Delivery on a real NATS JetStream: groups, broadcast, wildcards, order, headers, replies."""

from __future__ import annotations

import asyncio
import random

import pytest
from pydantic import BaseModel

from framework.broker import Message, Router
from framework.transport.nats import NatsBroker
from tests.nats.helpers import Collector, NatsEnv

pytestmark = pytest.mark.nats


class Event(BaseModel):
    n: int
    key: str = ""


def body(n: int, key: str = "") -> bytes:
    return Event(n=n, key=key).model_dump_json().encode()


async def test_publish_waits_for_the_stream_and_a_group_gets_each_message_once(
    env: NatsEnv,
) -> None:
    topic = env.topic("orders")
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(event: Event, message: Message) -> None:
        got.add((event.n, message.attempt, message.offset))

    publisher = await env.connected()
    first = await publisher.publish(topic, body(0))
    assert first.offset == 1 and first.message_id, "the PubAck's stream sequence"
    server = await env.serve(router)
    for n in range(1, 20):
        await publisher.publish(topic, body(n))
    items = await got.wait(20)
    assert sorted(i[0] for i in items) == list(range(20))
    assert {i[1] for i in items} == {1}
    assert sorted(i[2] for i in items) == list(range(1, 21)), "offset: the stream sequence"
    (subscription,) = server.broker.subscriptions  # type: ignore[attr-defined]
    await wait_acked(publisher, subscription.stream, subscription.durable)


async def wait_acked(broker: NatsBroker, stream: str, durable: str) -> None:
    """Wait until the consumer has nothing pending nor unacknowledged (acks are sent
    without waiting for the server, which applies them a moment later)."""
    async with asyncio.timeout(5):
        while True:
            info = await broker.jetstream.consumer_info(stream, durable)
            if info.num_ack_pending == 0 and info.num_pending == 0:
                return
            await asyncio.sleep(0.05)


async def test_two_instances_of_a_group_split_and_two_groups_each_get_everything(
    env: NatsEnv,
) -> None:
    topic = env.topic("split")
    handled = Collector()
    other_group = Collector()

    def instance(index: int) -> Router:
        router = Router()

        @router.subscriber(topic, group="shared", fetch_batch=5, prefetch=5)
        async def handle(event: Event) -> None:
            await asyncio.sleep(0.005)  # leave room for the other instance's pulls
            handled.add((index, event.n))

        return router

    audit = Router()

    @audit.subscriber(topic, group="audit")
    async def record(event: Event) -> None:
        other_group.add(event.n)

    await env.serve(instance(0))
    await env.serve(instance(1))
    await env.serve(audit)
    publisher = await env.connected()
    total = 200
    await asyncio.gather(*(publisher.publish(topic, body(n)) for n in range(total)))
    await other_group.wait(total)
    items = await handled.wait(total)
    split = [sorted(n for i, n in items if i == index) for index in (0, 1)]
    assert sorted(split[0] + split[1]) == list(range(total)), "each message exactly once"
    assert split[0] and split[1], "both instances took part"
    assert sorted(other_group.items) == list(range(total))


async def test_broadcast_reaches_every_instance_over_core_nats(env: NatsEnv) -> None:
    topic = env.topic("news")
    seen = [Collector(), Collector()]

    def instance(index: int) -> Router:
        router = Router()

        @router.subscriber(topic, broadcast=True)
        async def handle(event: Event) -> None:
            seen[index].add(event.n)

        return router

    await env.serve(instance(0))
    await env.serve(instance(1))
    publisher = await env.connected()
    for n in range(5):
        await publisher.publish(topic, body(n))
    for collector in seen:
        assert sorted(await collector.wait(5)) == list(range(5))


async def test_subject_wildcards_match_one_token_or_the_rest(env: NatsEnv) -> None:
    root = env.topic("shop")
    one = Collector()
    rest = Collector()
    router = Router()

    @router.subscriber(f"{root}.*", group="star")
    async def on_star(event: Event, message: Message) -> None:
        one.add((message.topic, event.n))

    @router.subscriber(f"{root}.>", group="tail", dlq=f"dead.{env.tag}")
    async def on_tail(event: Event, message: Message) -> None:
        rest.add((message.topic, event.n))

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish(f"{root}.created", body(1))
    await publisher.publish(f"{root}.eu.paid", body(2))
    assert sorted(await rest.wait(2)) == [(f"{root}.created", 1), (f"{root}.eu.paid", 2)]
    assert await one.wait(1) == [(f"{root}.created", 1)]
    await asyncio.sleep(0.2)
    assert len(one.items) == 1, "'*' matches exactly one token"


async def test_messages_with_the_same_key_stay_in_order_under_concurrency(
    env: NatsEnv,
) -> None:
    topic = env.topic("ordered")
    done = Collector()
    in_flight = most = 0
    router = Router()

    @router.subscriber(topic, group="g", concurrency=4)
    async def handle(event: Event) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(random.uniform(0, 0.004))
        in_flight -= 1
        done.add((event.key, event.n))

    publisher = await env.connected()
    keys = [f"user-{k}" for k in range(6)]
    for n in range(25):
        for key in keys:
            await publisher.publish(topic, body(n, key), key=key.encode())
    await env.serve(router)  # everything is waiting: the lanes really run concurrently
    items = await done.wait(25 * len(keys))
    for key in keys:
        assert [n for k, n in items if k == key] == list(range(25)), key
    assert most > 1, "different keys ran concurrently"


async def test_headers_key_and_binary_body_arrive_byte_exact(env: NatsEnv) -> None:
    topic = env.topic("raw")
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(message: Message) -> None:
        got.add(message)

    await env.serve(router)
    publisher = await env.connected()
    payload = bytes(range(256)) * 64
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "text": "héllo wörld",
        "latin1": b"caf\xe9 \xc3\x28".decode("utf-8", "surrogateescape"),
        "spaces": "  padded  ",
        "lines": "a\r\nb",
        "empty": "",
    }
    key = b"\x00\xffkey"
    await publisher.publish(topic, payload, key=key, headers=headers)
    (message,) = await got.wait(1)
    assert message.body == payload
    assert message.key == key
    assert message.headers == headers, "values round-trip, internal headers are hidden"
    raw = message.raw.headers
    assert raw["text"] == "héllo wörld", "plain text stays readable by other NATS clients"


async def test_a_core_subscriber_that_returns_a_value_answers_the_request(
    env: NatsEnv,
) -> None:
    subject = env.topic("rpc")
    router = Router()

    @router.subscriber(subject, group="calc", jetstream=False)
    async def double(event: Event) -> Event:
        return Event(n=event.n * 2)

    await env.serve(router)
    client = await env.connected()
    answer = await client.request(subject, body(21), timeout=5)
    assert Event.model_validate_json(answer) == Event(n=42)


async def test_stop_gives_back_unstarted_messages_and_finishes_the_running_one(
    env: NatsEnv,
) -> None:
    topic = env.topic("drain")
    started = asyncio.Event()
    release = asyncio.Event()
    first_done = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        first_done.add(event.n)

    publisher = await env.connected()
    for n in range(10):
        await publisher.publish(topic, body(n))
    server = await env.serve(router)
    await asyncio.wait_for(started.wait(), 10)
    await server.stop_intake()
    stopping = asyncio.create_task(server.stop(10))
    await asyncio.sleep(0.1)
    assert not stopping.done(), "stop waits for the running handler"
    release.set()
    await stopping
    assert first_done.items == [0]

    rest = Collector()
    second = Router()

    @second.subscriber(topic, group="g")
    async def fast(event: Event, message: Message) -> None:
        rest.add((event.n, message.attempt))

    await env.serve(second)
    items = await rest.wait(9, timeout=5)  # nak'ed, not waiting for ack_wait (30 s)
    assert sorted(n for n, _ in items) == list(range(1, 10))
    await asyncio.sleep(0.3)
    assert len(rest.items) == 9, "the finished message was acked, not redelivered"


async def test_a_batch_handler_gets_lists_and_every_message_is_acked(env: NatsEnv) -> None:
    topic = env.topic("batch")
    batches = Collector()
    router = Router()

    @router.subscriber(topic, group="g", batch=10)
    async def handle(events: list[Event]) -> None:
        batches.add([e.n for e in events])

    publisher = await env.connected()
    for n in range(30):
        await publisher.publish(topic, body(n))
    server = await env.serve(router)
    async with asyncio.timeout(10):
        while sum(len(b) for b in batches.items) < 30:
            await batches.wait(len(batches.items) + 1)
    assert sorted(n for b in batches.items for n in b) == list(range(30))
    assert max(len(b) for b in batches.items) > 1, "lists, not one message at a time"
    (subscription,) = server.broker.subscriptions  # type: ignore[attr-defined]
    await wait_acked(publisher, subscription.stream, subscription.durable)
