"""Delivery on a real Redis: groups, broadcast, order, headers, retries and dead letters."""

from __future__ import annotations

import asyncio
import random

import pytest
from pydantic import BaseModel

from framework.broker import DLQ_ATTEMPTS, DLQ_ERROR_TYPE, DLQ_REASON, Message, Router
from framework.broker.policy import DLQ_ORIGINAL_TOPIC, RetryPolicy
from framework.broker.workers import worker_for as lane_for
from tests.redis.helpers import Collector, RedisEnv

pytestmark = pytest.mark.redis


class Event(BaseModel):
    n: int
    key: str = ""


def body(n: int, key: str = "") -> bytes:
    return Event(n=n, key=key).model_dump_json().encode()


async def test_publish_returns_the_entry_id_and_the_entry_holds_exact_bytes(
    env: RedisEnv,
) -> None:
    broker = await env.connected()
    payload = bytes(range(256)) * 4
    headers = {"trace": "abc", "odd": b"\xc3\x28\xff".decode("utf-8", "surrogateescape")}
    result = await broker.publish("bin", payload, key=b"\x00k\xff", headers=headers)
    [(entry_id, fields)] = await env.entries("bin")
    assert result.message_id == entry_id and result.topic == "bin"
    assert fields == {
        b"body": payload,
        b"key": b"\x00k\xff",
        b"h:trace": b"abc",
        b"h:odd": b"\xc3\x28\xff",
    }


async def test_body_key_and_headers_reach_the_handler_byte_exact(env: RedisEnv) -> None:
    got = Collector()
    router = Router()

    @router.subscriber("raw", group="g")
    async def handle(message: Message) -> None:
        got.add(message)

    await env.serve(router)
    broker = await env.connected()
    big = random.randbytes(1024 * 1024)
    odd = b"\xc3\x28".decode("utf-8", "surrogateescape")
    sent = await broker.publish("raw", big, key=b"\xfe", headers={"x": odd, "y": "ü"})
    [message] = await got.wait(1)
    assert message.body == big and message.key == b"\xfe"
    assert message.headers == {"x": odd, "y": "ü"}
    assert message.headers["x"].encode("utf-8", "surrogateescape") == b"\xc3\x28"
    assert message.id == sent.message_id and message.attempt == 1
    assert message.topic == "raw"


async def test_a_group_splits_the_messages_and_two_groups_each_get_all(env: RedisEnv) -> None:
    a1, a2, b = Collector(), Collector(), Collector()

    def router_for(group: str, sink: Collector) -> Router:
        router = Router()

        @router.subscriber("orders", group=group)
        async def handle(event: Event) -> None:
            sink.add(event.n)
            await asyncio.sleep(0.001)  # let the other member of the group take some

        return router

    await env.serve(router_for("a", a1))
    await env.serve(router_for("a", a2))
    await env.serve(router_for("b", b))
    broker = await env.connected()
    for n in range(200):
        await broker.publish("orders", body(n))
    await b.wait(200)
    for _ in range(200):  # group "a" finishes too; an event per message would be overkill
        if len(a1.items) + len(a2.items) >= 200:
            break
        await asyncio.sleep(0.05)
    assert sorted(a1.items + a2.items) == list(range(200)), "each message once in the group"
    assert a1.items and a2.items, "both members of group a got a share"
    assert sorted(b.items) == list(range(200))


async def test_a_new_group_starts_at_the_beginning_unless_start_id_says_new_only(
    env: RedisEnv,
) -> None:
    broker = await env.connected()
    await broker.publish("early", body(1))
    everything, new_only = Collector(), Collector()
    router = Router()

    @router.subscriber("early", group="all")
    async def from_start(event: Event) -> None:
        everything.add(event.n)

    @router.subscriber("early", group="new", start_id="$")
    async def from_now(event: Event) -> None:
        new_only.add(event.n)

    await env.serve(router)
    await broker.publish("early", body(2))
    assert await everything.wait(2) == [1, 2]
    assert await new_only.wait(1) == [2]


async def test_broadcast_gives_every_instance_every_message_from_subscribe_on(
    env: RedisEnv,
) -> None:
    broker = await env.connected()
    await broker.publish("news", body(0))  # before anyone listened: not delivered
    sinks = [Collector(), Collector()]
    for sink in sinks:
        router = Router()

        @router.subscriber("news", broadcast=True)
        async def handle(event: Event, sink: Collector = sink) -> None:
            sink.add(event.n)

        await env.serve(router)
    for n in range(1, 6):
        await broker.publish("news", body(n))
    for sink in sinks:
        assert await sink.wait(5) == [1, 2, 3, 4, 5]
    groups = await env.admin.xinfo_groups(env.key("news"))
    assert groups == [], "broadcast reads without a consumer group"


async def test_messages_with_the_same_key_stay_in_order_under_concurrency(
    env: RedisEnv,
) -> None:
    done = Collector()
    router = Router()
    keys = [f"k{i}" for i in range(8)]
    assert len({lane_for(k.encode(), 4) for k in keys}) > 1, "keys spread over lanes"

    @router.subscriber("ordered", group="g", concurrency=4)
    async def handle(event: Event) -> None:
        await asyncio.sleep(random.random() / 500)
        done.add((event.key, event.n))

    await env.serve(router)
    broker = await env.connected()
    for n in range(400):
        key = keys[n % len(keys)]
        await broker.publish("ordered", body(n, key), key=key.encode())
    items = await done.wait(400, timeout=20)
    for key in keys:
        seen = [n for k, n in items if k == key]
        assert seen == sorted(seen) and len(seen) == 50


async def test_a_failing_handler_is_retried_then_dead_lettered_with_reason_fields(
    env: RedisEnv,
) -> None:
    attempts = Collector()
    router = Router()

    @router.subscriber(
        "pay", group="g", retry=RetryPolicy(max_attempts=3, backoff=0.01, multiplier=1)
    )
    async def handle(event: Event, message: Message) -> None:
        attempts.add(message.attempt)
        raise ValueError(f"boom {event.n}")

    server = await env.serve(router)
    broker = await env.connected()
    await broker.publish("pay", body(7), key=b"k", headers={"h": "v"})
    assert await attempts.wait(3) == [1, 2, 3]
    [(_, fields)] = await env.wait_entries("pay.dlq", 1)
    assert fields[b"body"] == body(7) and fields[b"key"] == b"k" and fields[b"h:h"] == b"v"
    assert fields[f"h:{DLQ_REASON}".encode()] == b"ValueError: boom 7"
    assert fields[f"h:{DLQ_ERROR_TYPE}".encode()] == b"ValueError"
    assert fields[f"h:{DLQ_ATTEMPTS}".encode()] == b"3"
    assert fields[f"h:{DLQ_ORIGINAL_TOPIC}".encode()] == b"pay"
    await server.stop(5)
    pending = await env.admin.xpending(env.key("pay"), "g")
    assert pending["pending"] == 0, "the dead-lettered entry is acknowledged"


async def test_an_undecodable_message_goes_to_the_dlq_at_once_and_the_stream_flows(
    env: RedisEnv,
) -> None:
    got = Collector()
    router = Router()

    @router.subscriber("typed", group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    await env.serve(router)
    broker = await env.connected()
    await broker.publish("typed", b"not json")
    await broker.publish("typed", body(2))
    assert await got.wait(1) == [2]
    [(_, fields)] = await env.wait_entries("typed.dlq", 1)
    assert fields[b"body"] == b"not json"
    assert fields[f"h:{DLQ_ATTEMPTS}".encode()] == b"1"
    assert fields[f"h:{DLQ_REASON}".encode()].startswith(b"decode:")


async def test_trimming_on_publish(env: RedisEnv) -> None:
    exact = await env.connected(maxlen=5, approximate_trim=False)
    for n in range(20):
        await exact.publish("trim", body(n))
    assert await env.admin.xlen(env.key("trim")) == 5
    approximate = await env.connected(maxlen=10)
    for n in range(500):
        await approximate.publish("trim-approx", body(n))
    assert 10 <= await env.admin.xlen(env.key("trim-approx")) < 500
    await env.admin.xadd(env.key("trim-age"), {"body": b"old"}, id="1-1")
    await exact.publish("trim-age", body(1), minid_age=3600)
    assert [f[b"body"] for _, f in await env.entries("trim-age")] == [body(1)]


async def test_a_batch_handler_gets_lists_and_every_entry_is_acknowledged(env: RedisEnv) -> None:
    sizes = Collector()
    seen: list[int] = []
    router = Router()

    @router.subscriber("metrics", group="g", batch=10)
    async def handle(events: list[Event]) -> None:
        seen.extend(e.n for e in events)
        sizes.add(len(events))

    broker = await env.connected()
    for n in range(25):
        await broker.publish("metrics", body(n))
    server = await env.serve(router)
    for _ in range(100):
        if len(seen) >= 25:
            break
        await sizes.wait(len(sizes.items) + 1)
    assert sorted(seen) == list(range(25))
    assert max(sizes.items) == 10
    await server.stop(5)
    assert (await env.admin.xpending(env.key("metrics"), "g"))["pending"] == 0
