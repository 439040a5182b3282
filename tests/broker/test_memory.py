from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest

from framework.broker import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    BrokerServer,
    MemoryBroker,
    Message,
    Publisher,
    RetryPolicy,
    Router,
    SubscriberProcessor,
    UnsupportedOptionError,
)
from framework.middleware import Handler, Middleware
from framework.transport import from_context
from tests.broker.helpers import Collector

FAST = RetryPolicy(max_attempts=3, backoff=0.0)


class Paid(pydantic.BaseModel):
    order_id: int


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(partitions=4)
    await broker.connect()
    yield broker
    await broker.close()


async def serve(broker: MemoryBroker, *routers: Router, **kw: Any) -> BrokerServer:
    server = BrokerServer(broker, list(routers), **kw)
    await server.start()
    return server


async def test_publish_then_consume_with_a_model(broker: MemoryBroker) -> None:
    router = Router()
    got = Collector()

    @router.subscriber("payments", group="orders")
    async def on_paid(event: Paid, message: Message) -> None:
        got.add((event.order_id, message.key, message.headers.get("h")))

    server = await serve(broker, router)
    publisher = Publisher(broker)
    result = await publisher.publish("payments", Paid(order_id=1), key="k", headers={"h": "v"})
    assert result.topic == "payments" and result.offset == 0
    # An int key is sent as its decimal text, so it orders with the equivalent str key.
    await publisher.publish("payments", Paid(order_id=2), key=7)
    assert sorted(await got.wait(2)) == [(1, b"k", "v"), (2, b"7", None)]
    await server.stop(5)


async def test_decode_failure_goes_to_the_dlq_with_reason_and_no_retry(
    broker: MemoryBroker,
) -> None:
    router = Router()
    handled: list[int] = []
    dead = Collector()

    @router.subscriber("payments", group="orders", retry=FAST)
    async def on_paid(event: Paid) -> None:
        handled.append(event.order_id)

    @router.subscriber("payments.dlq", group="ops")
    async def on_dead(message: Message) -> None:
        dead.add(message)

    server = await serve(broker, router)
    await broker.publish("payments", b'{"order_id": "nope"}', key=b"a")
    await broker.publish("payments", b'{"order_id": 2}', key=b"a")
    (letter,) = await dead.wait(1)
    assert letter.body == b'{"order_id": "nope"}'
    assert letter.key == b"a"
    assert letter.headers[DLQ_REASON].startswith("decode: invalid Paid: order_id:")
    assert letter.headers[DLQ_ERROR_TYPE] == "DecodeError"
    assert letter.headers[DLQ_ATTEMPTS] == "1"
    assert letter.headers[DLQ_ORIGINAL_TOPIC] == "payments"
    await server.stop(5)
    assert handled == [2]  # the stream kept flowing after the poison message


async def test_failing_handler_is_retried_then_dead_lettered_with_headers(
    broker: MemoryBroker,
) -> None:
    router = Router()
    attempts: list[int] = []
    dead = Collector()

    @router.subscriber("payments", group="orders", retry=FAST)
    async def on_paid(event: Paid, message: Message) -> None:
        attempts.append(message.attempt)
        raise ValueError(f"cannot charge {event.order_id}")

    @router.subscriber("payments.dlq", group="ops")
    async def on_dead(message: Message) -> None:
        dead.add(message)

    server = await serve(broker, router)
    published = await broker.publish("payments", b'{"order_id": 9}', headers={"trace": "t1"})
    (letter,) = await dead.wait(1)
    await server.stop(5)
    assert attempts == [1, 2, 3]
    assert letter.headers == {
        "trace": "t1",
        DLQ_REASON: "ValueError: cannot charge 9",
        DLQ_ERROR_TYPE: "ValueError",
        DLQ_ORIGINAL_TOPIC: "payments",
        DLQ_ORIGINAL_PARTITION: str(published.partition),
        DLQ_ORIGINAL_OFFSET: str(published.offset),
        DLQ_ATTEMPTS: "3",
    }
    # The dead message is committed: the group moved past it.
    assert broker.committed("payments", "orders")[published.partition] == 1  # type: ignore[index]


async def test_custom_dlq_topic_and_disabled_dlq(broker: MemoryBroker) -> None:
    router = Router()
    dead = Collector()
    no_dlq_calls: list[int] = []

    @router.subscriber("a", group="g", retry=1, dlq="a.failed")
    async def fail_a(event: Any) -> None:
        raise RuntimeError("a")

    @router.subscriber("b", group="g", retry=1, dlq="")
    async def fail_b(event: Any) -> None:
        no_dlq_calls.append(1)
        raise RuntimeError("b")

    @router.subscriber("a.failed", group="ops")
    async def on_dead(message: Message) -> None:
        dead.add(message.headers[DLQ_REASON])

    server = await serve(broker, router)
    await broker.publish("a", b"{}")
    pub_b = await broker.publish("b", b"{}")
    assert await dead.wait(1) == ["RuntimeError: a"]
    await server.stop(5)
    assert no_dlq_calls == [1]
    assert broker.committed("b", "g")[pub_b.partition] == 1  # type: ignore[index]


async def test_two_groups_on_one_topic_each_get_everything(broker: MemoryBroker) -> None:
    router = Router()
    billing, shipping = Collector(), Collector()

    @router.subscriber("orders", group="billing")
    async def bill(event: dict[str, int]) -> None:
        billing.add(event["n"])

    @router.subscriber("orders", group="shipping")
    async def ship(event: dict[str, int]) -> None:
        shipping.add(event["n"])

    server = await serve(broker, router)
    publisher = Publisher(broker)
    for n in range(50):
        await publisher.publish("orders", {"n": n}, key=str(n))
    assert sorted(await billing.wait(50)) == list(range(50))
    assert sorted(await shipping.wait(50)) == list(range(50))
    await server.stop(5)


async def test_two_members_of_one_group_split_the_messages(broker: MemoryBroker) -> None:
    first, second = Router(), Router()
    got = Collector()

    @first.subscriber("orders", group="workers")
    async def member_one(event: dict[str, int]) -> None:
        got.add(("one", event["n"]))

    @second.subscriber("orders", group="workers")
    async def member_two(event: dict[str, int]) -> None:
        got.add(("two", event["n"]))

    server = await serve(broker, first, second)
    publisher = Publisher(broker)
    for n in range(100):
        await publisher.publish("orders", {"n": n}, key=f"key-{n}")
    items = await got.wait(100)
    await server.stop(5)
    assert sorted(n for _, n in items) == list(range(100))  # each exactly once
    by_member = {member for member, _ in items}
    assert by_member == {"one", "two"}


async def test_a_member_leaving_hands_its_partitions_over(broker: MemoryBroker) -> None:
    first, second = Router(), Router()
    got = Collector()

    @first.subscriber("orders", group="workers")
    async def member_one(event: dict[str, int]) -> None:
        got.add(("one", event["n"]))

    @second.subscriber("orders", group="workers")
    async def member_two(event: dict[str, int]) -> None:
        got.add(("two", event["n"]))

    processors = BrokerServer(broker, [first, second]).processors()
    one = await broker.subscribe(processors[0].spec, processors[0])
    two = await broker.subscribe(processors[1].spec, processors[1])
    await two.stop(5)
    for n in range(20):
        await broker.publish("orders", b'{"n": %d}' % n, key=b"%d" % n)
    items = await got.wait(20)
    await one.stop(5)
    assert {member for member, _ in items} == {"one"}


async def test_broadcast_subscriptions_each_get_every_message(broker: MemoryBroker) -> None:
    got = Collector()

    async def reload_config(event: dict[str, int], message: Message) -> None:
        got.add((from_context().raw is message, event["v"]))  # type: ignore[union-attr]

    # The same handler mounted by two "instances": each needs its own subscription.
    instance_a, instance_b = Router(), Router()
    instance_a.subscriber("config-changed", broadcast=True)(reload_config)
    instance_b.subscriber("config-changed", broadcast=True)(reload_config)
    server = await serve(broker, instance_a, instance_b)
    for v in range(10):
        await Publisher(broker).publish("config-changed", {"v": v})
    items = await got.wait(20)
    await server.stop(5)
    assert sorted(v for _, v in items) == sorted(list(range(10)) * 2)
    assert all(same for same, _ in items)


async def test_broadcast_starts_at_latest_and_groups_at_earliest(broker: MemoryBroker) -> None:
    router = Router()
    group_got, broadcast_got = Collector(), Collector()

    @router.subscriber("events", group="late-group")
    async def grouped(event: dict[str, str]) -> None:
        group_got.add(event["m"])

    @router.subscriber("events", broadcast=True)
    async def everyone(event: dict[str, str]) -> None:
        broadcast_got.add(event["m"])

    await broker.publish("events", b'{"m": "before"}')
    server = await serve(broker, router)
    await broker.publish("events", b'{"m": "after"}')
    assert sorted(await group_got.wait(2)) == ["after", "before"]
    assert await broadcast_got.wait(1) == ["after"]
    await server.stop(5)


async def test_auto_offset_reset_latest_option(broker: MemoryBroker) -> None:
    router = Router()
    got = Collector()

    @router.subscriber("events", group="fresh", auto_offset_reset="latest")
    async def handle(event: dict[str, str]) -> None:
        got.add(event["m"])

    await broker.publish("events", b'{"m": "old"}')
    server = await serve(broker, router)
    await broker.publish("events", b'{"m": "new"}')
    assert await got.wait(1) == ["new"]
    await server.stop(5)
    assert got.items == ["new"]


async def test_ordering_per_key_under_concurrency_8(broker: MemoryBroker) -> None:
    router = Router()
    got = Collector()
    running = 0
    peak = 0
    rng = random.Random(7)

    @router.subscriber("ledger", group="g", concurrency=8)
    async def handle(event: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        # Yield a varying number of times so workers interleave.
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        running -= 1
        got.add((event["key"], event["seq"]))

    server = await serve(broker, router)
    publisher = Publisher(broker)
    keys = [f"account-{i}" for i in range(24)]
    for seq in range(40):
        for key in keys:
            await publisher.publish("ledger", {"key": key, "seq": seq}, key=key)
    items = await got.wait(len(keys) * 40)
    await server.stop(5)
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, seq in items:
        per_key[key].append(seq)
    assert all(seqs == list(range(40)) for seqs in per_key.values()), per_key
    assert peak > 1  # the workers really ran concurrently


async def test_delayed_publish_is_delivered_later_without_blocking_others(
    broker: MemoryBroker,
) -> None:
    router = Router()
    got = Collector()
    loop = asyncio.get_running_loop()

    @router.subscriber("reminders", group="g")
    async def handle(event: dict[str, str]) -> None:
        got.add((event["m"], loop.time()))

    server = await serve(broker, router)
    start = loop.time()
    result = await Publisher(broker).publish("reminders", {"m": "later"}, delay=0.3)
    assert result.offset is None  # not in the log yet
    assert loop.time() - start < 0.1  # publish returned at once
    await Publisher(broker).publish("reminders", {"m": "now"})
    items = await got.wait(2)
    await server.stop(5)
    assert [m for m, _ in items] == ["now", "later"]
    assert items[1][1] - start >= 0.29


async def test_middleware_runs_with_the_memory_transport_context(broker: MemoryBroker) -> None:
    router = Router()
    seen = Collector()

    def spy(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = from_context()
            assert transport is not None
            seen.add((transport.kind, transport.operation, transport.endpoint, request))
            return await handler(request)

        return run

    mw: Middleware = spy

    @router.subscriber("payments", group="g")
    async def handle(event: Paid) -> None:
        pass

    server = await serve(broker, router, middlewares=[mw])
    await Publisher(broker).publish("payments", Paid(order_id=3))
    assert await seen.wait(1) == [("memory", "payments", "memory://default", Paid(order_id=3))]
    await server.stop(5)


async def test_graceful_stop_drains_an_in_flight_message(broker: MemoryBroker) -> None:
    router = Router()
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[int] = []

    @router.subscriber("jobs", group="g")
    async def handle(event: dict[str, int]) -> None:
        started.set()
        await release.wait()
        finished.append(event["n"])

    server = await serve(broker, router)
    published = await broker.publish("jobs", b'{"n": 1}')
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(server.stop(5))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # stop waits for the in-flight handler
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [1]
    assert broker.committed("jobs", "g")[published.partition] == 1  # type: ignore[index]


async def test_stop_timeout_cancels_and_the_message_is_redelivered(broker: MemoryBroker) -> None:
    first_started = asyncio.Event()
    cancelled: list[bool] = []
    got = Collector()

    router = Router()

    @router.subscriber("jobs", group="g")
    async def stuck(event: dict[str, int]) -> None:
        first_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    processor = SubscriberProcessor(router.subscribers[0], None, (), "memory")
    subscription = await broker.subscribe(processor.spec, processor)
    published = await broker.publish("jobs", b'{"n": 1}')
    await asyncio.wait_for(first_started.wait(), 5)
    await subscription.stop(0.05)
    assert cancelled == [True]
    assert broker.committed("jobs", "g")[published.partition] == 0  # type: ignore[index]

    # The same group, restarted, gets the unfinished message again.
    again = Router()

    @again.subscriber("jobs", group="g")
    async def healthy(event: dict[str, int], message: Message) -> None:
        got.add((event["n"], message.offset))

    processor = SubscriberProcessor(again.subscribers[0], None, (), "memory")
    subscription = await broker.subscribe(processor.spec, processor)
    assert await got.wait(1) == [(1, 0)]
    await subscription.stop(5)


async def test_batch_subscriber(broker: MemoryBroker) -> None:
    router = Router()
    batches = Collector()

    @router.subscriber("metrics", group="g", batch=10)
    async def handle(events: list[dict[str, int]]) -> None:
        batches.add([e["v"] for e in events])

    for v in range(25):
        await broker.publish("metrics", b'{"v": %d}' % v, key=b"same")
    server = await serve(broker, router)
    items = await batches.wait(3)
    await server.stop(5)
    assert [len(b) for b in items] == [10, 10, 5]
    assert [v for b in items for v in b] == list(range(25))


async def test_unknown_options_and_bad_values_are_refused(broker: MemoryBroker) -> None:
    router = Router()

    @router.subscriber("t", group="g", prefetch=10)
    async def handle(event: Any) -> None:
        pass

    processor = SubscriberProcessor(router.subscribers[0], None, (), "memory")
    with pytest.raises(UnsupportedOptionError, match=r"prefetch not supported by the memory"):
        await broker.subscribe(processor.spec, processor)

    bad = Router()

    @bad.subscriber("t", group="g", auto_offset_reset="newest")
    async def handle2(event: Any) -> None:
        pass

    processor = SubscriberProcessor(bad.subscribers[0], None, (), "memory")
    with pytest.raises(UnsupportedOptionError, match="auto_offset_reset must be one of"):
        await broker.subscribe(processor.spec, processor)


async def test_publish_needs_a_connected_broker() -> None:
    broker = MemoryBroker()
    with pytest.raises(RuntimeError, match="not connected"):
        await broker.publish("t", b"x")
    await broker.connect()
    await broker.close()
    with pytest.raises(RuntimeError, match="not connected"):
        await broker.publish("t", b"x")


async def test_consumed_messages_are_trimmed(broker: MemoryBroker) -> None:
    router = Router()
    got = Collector()

    @router.subscriber("t", group="g")
    async def handle(event: Any) -> None:
        got.add(event)

    server = await serve(broker, router)
    for n in range(40):
        await broker.publish("t", b"%d" % n)
    await got.wait(40)
    await server.stop(5)
    topic = broker._topics["t"]
    assert sum(len(p.log) for p in topic.partitions) == 0
    assert sum(p.base for p in topic.partitions) == 40


async def test_a_member_joining_while_another_stops_gets_everything_next(
    broker: MemoryBroker,
) -> None:
    old, new = Router(), Router()
    started = asyncio.Event()
    release = asyncio.Event()
    got = Collector()

    @old.subscriber("jobs", group="g")
    async def slow(event: dict[str, int]) -> None:
        started.set()
        await release.wait()
        got.add(("old", event["n"]))

    @new.subscriber("jobs", group="g")
    async def fresh(event: dict[str, int]) -> None:
        got.add(("new", event["n"]))

    processors = BrokerServer(broker, [old, new]).processors()
    first = await broker.subscribe(processors[0].spec, processors[0])
    await broker.publish("jobs", b'{"n": 0}')
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(first.stop(5))
    joining = asyncio.create_task(broker.subscribe(processors[1].spec, processors[1]))
    await asyncio.sleep(0.02)
    release.set()
    second = await asyncio.wait_for(joining, 5)
    await asyncio.wait_for(stopping, 5)
    for n in range(1, 9):
        await broker.publish("jobs", b'{"n": %d}' % n, key=b"%d" % n)
    items = await got.wait(9)
    await second.stop(5)
    assert items[0] == ("old", 0)
    assert sorted(items[1:]) == [("new", n) for n in range(1, 9)]
