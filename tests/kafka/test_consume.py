"""Consuming through BrokerServer + Router on a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from framework.broker import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    BatchPolicy,
    BrokerServer,
    Message,
    RetryPolicy,
    Router,
)
from framework.transport.kafka import KafkaBroker, KafkaSubscription
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import Waiter, create_topic, read_topic

pytestmark = pytest.mark.kafka


class Event(BaseModel):
    id: int
    key: str = ""
    seq: int = 0
    fail: bool = False


def event(id: int, **fields: object) -> bytes:
    return Event(id=id, **fields).model_dump_json().encode()  # type: ignore[arg-type]


def subscriptions(server: BrokerServer) -> list[KafkaSubscription]:
    return [s for s in server._subscriptions if isinstance(s, KafkaSubscription)]


async def test_two_members_of_one_group_split_the_partitions(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("split"), unique("group")
    await create_topic(bootstrap, topic, 4)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    total = Waiter()

    def member(name: str) -> BrokerServer:
        router = Router()

        @router.subscriber(topic, group=group)
        async def handle(ev: Event) -> None:
            seen[name].append(ev.id)
            total.add()

        # No periodic commit within the test: only the revocation can commit a's work.
        kafka = KafkaBroker(
            bootstrap, client_id=name, commit_interval=60, commit_every=10**6, **FAST_JOIN
        )
        return BrokerServer(kafka, [router])

    async def publish(ids: range) -> None:
        publisher = broker.batch_publisher()
        futures = [await publisher.submit(topic, event(i), key=b"k%d" % i) for i in ids]
        await asyncio.gather(*futures)

    a, b = member("a"), member("b")
    await a.start()
    try:
        await publish(range(100))
        await total.wait_for(100)  # a alone: all four partitions
        await b.start()  # the group rebalances: a commits its work and gives up two partitions
        # b's join fixed the split; a takes its half when it re-syncs, even if after this.
        await publish(range(100, 300))
        await total.wait_for(300)
        (sub_a,), (sub_b,) = subscriptions(a), subscriptions(b)
        assert len(sub_a.assignment) == len(sub_b.assignment) == 2
        assert not sub_a.assignment & sub_b.assignment
    finally:
        await asyncio.gather(a.stop(5), b.stop(5))
    assert seen["a"] and [i for i in seen["b"] if i >= 100]
    # Each message once: what a handled before the rebalance was committed on revocation.
    assert sorted(seen["a"] + seen["b"]) == list(range(300))


async def test_two_groups_each_get_every_message(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("fanout")
    got: dict[str, list[int]] = defaultdict(list)
    both = Waiter()
    router = Router()

    @router.subscriber(topic, group=unique("billing"))
    async def billing(ev: Event) -> None:
        got["billing"].append(ev.id)
        both.add()

    @router.subscriber(topic, group=unique("shipping"))
    async def shipping(ev: Event) -> None:
        got["shipping"].append(ev.id)
        both.add()

    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        for i in range(50):
            await broker.publish(topic, event(i))
        await both.wait_for(100)
    finally:
        await server.stop(5)
    assert sorted(got["billing"]) == list(range(50))
    assert sorted(got["shipping"]) == list(range(50))


async def test_failures_and_undecodable_messages_go_to_the_dlq_with_headers(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("payments"), unique("g")
    attempts: dict[int, int] = defaultdict(int)
    handled = Waiter()
    router = Router()

    @router.subscriber(topic, group=group, retry=RetryPolicy(max_attempts=2, backoff=0.0))
    async def handle(ev: Event) -> None:
        attempts[ev.id] += 1
        if ev.fail:
            raise ValueError(f"cannot pay {ev.id}")
        handled.add()

    # Same key: one partition, so the good message comes after both bad ones.
    failing = await broker.publish(topic, event(1, fail=True), key=b"k", headers={"tenant": "t1"})
    garbage = await broker.publish(topic, b"{not json", key=b"k")
    await broker.publish(topic, event(2), key=b"k")

    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        await handled.wait_for(1)  # the stream kept flowing past both bad messages
        dead = await read_topic(bootstrap, f"{topic}.dlq", 2)
    finally:
        await server.stop(5)
    assert attempts == {1: 2, 2: 1}

    by_body = {record.value: record for record in dead}
    failed = by_body[event(1, fail=True)]
    headers = {k: v.decode() for k, v in failed.headers}
    assert headers[DLQ_REASON] == "ValueError: cannot pay 1"
    assert headers[DLQ_ERROR_TYPE] == "ValueError"
    assert headers[DLQ_ORIGINAL_TOPIC] == topic
    assert headers[DLQ_ORIGINAL_PARTITION] == str(failing.partition)
    assert headers[DLQ_ORIGINAL_OFFSET] == str(failing.offset)
    assert headers[DLQ_ATTEMPTS] == "2"
    assert headers["tenant"] == "t1"  # the original headers are kept
    assert failed.key == b"k"

    undecodable = {k: v.decode() for k, v in by_body[b"{not json"].headers}
    assert undecodable[DLQ_REASON].startswith("decode: ")
    assert undecodable[DLQ_ATTEMPTS] == "1"
    assert undecodable[DLQ_ORIGINAL_OFFSET] == str(garbage.offset)

    # Dead-lettered messages were committed like handled ones: a restart sees none of them.
    again: list[int] = []
    sentinel = asyncio.Event()
    router2 = Router()

    @router2.subscriber(topic, group=group)
    async def after_restart(ev: Event) -> None:
        again.append(ev.id)
        if ev.id == 99:
            sentinel.set()

    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router2])
    await server.start()
    try:
        await broker.publish(topic, event(99), key=b"k")
        async with asyncio.timeout(10):
            await sentinel.wait()
    finally:
        await server.stop(5)
    assert again == [99]


@pytest.mark.parametrize("ordering", ["auto", "partition"])
async def test_order_is_kept_under_concurrency(
    ordering: str, broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("ordered")
    await create_topic(bootstrap, topic, 2)
    keys = [f"user-{i}" for i in range(8)]
    count = 400
    seqs: dict[str, list[int]] = defaultdict(list)
    partitions: dict[int, list[int]] = defaultdict(list)
    in_flight = peak = 0
    done = Waiter()
    rng = random.Random(1)
    router = Router()

    @router.subscriber(topic, group=unique("g"), concurrency=4, ordering=ordering)
    async def handle(ev: Event, message: Message) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        seqs[ev.key].append(ev.seq)
        assert message.partition is not None and message.offset is not None
        partitions[message.partition].append(message.offset)
        await asyncio.sleep(rng.random() / 1000)
        in_flight -= 1
        done.add()

    async with broker.batch_publisher(chunk_size=50) as publisher:
        futures = []
        for i in range(count):
            key = keys[i % len(keys)]
            body = event(i, key=key, seq=i // len(keys))
            futures.append(await publisher.submit(topic, body, key=key.encode()))
        await asyncio.gather(*futures)

    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        await done.wait_for(count)
    finally:
        await server.stop(5)
    for key in keys:
        assert seqs[key] == list(range(count // len(keys))), key  # per-key order
    if ordering == "partition":
        assert peak <= 2  # one worker per partition
        for offsets in partitions.values():
            assert offsets == sorted(offsets)  # per-partition order
    else:
        # 4 workers on 2 partitions: "auto" switches to key order, using all of them.
        assert peak > 2


async def test_batch_handler_gets_lists(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("batches")
    sizes: list[int] = []
    ids: list[int] = []
    done = Waiter()
    router = Router()

    @router.subscriber(topic, group=unique("g"), batch=BatchPolicy(max_size=50, max_wait=0.05))
    async def handle(events: list[Event]) -> None:
        sizes.append(len(events))
        ids.extend(ev.id for ev in events)
        done.add(len(events))

    async with broker.batch_publisher() as publisher:
        await asyncio.gather(*[await publisher.submit(topic, event(i)) for i in range(120)])
    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        await done.wait_for(120)
    finally:
        await server.stop(5)
    assert sorted(ids) == list(range(120))
    assert max(sizes) <= 50
    assert max(sizes) > 1


async def test_broadcast_gives_every_instance_every_new_message(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("config-changed")
    await broker.publish(topic, event(-1))  # before start: broadcast starts at "latest"
    got: dict[str, list[int]] = {"one": [], "two": []}
    both = Waiter()

    def instance(name: str) -> BrokerServer:
        router = Router()

        @router.subscriber(topic, broadcast=True)
        async def handle(ev: Event) -> None:
            got[name].append(ev.id)
            both.add()

        return BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])

    one, two = instance("one"), instance("two")
    await asyncio.gather(one.start(), two.start())
    try:
        groups = {s.group_id for server in (one, two) for s in subscriptions(server)}
        assert len(groups) == 2  # a group per instance
        for i in range(20):
            await broker.publish(topic, event(i), key=b"k%d" % i)
        await both.wait_for(40)
    finally:
        await asyncio.gather(one.stop(5), two.stop(5))
    assert sorted(got["one"]) == sorted(got["two"]) == list(range(20))
