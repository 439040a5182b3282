"""Recovery on a real Redis: a dead consumer's entries, the delivery limit, slow handlers,
graceful stop and a connection dropped by the server."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import BaseModel

from framework.broker import DLQ_ATTEMPTS, DLQ_ERROR_TYPE, Message, Router
from framework.broker.policy import RetryPolicy
from framework.transport.redis.subscription import RedisSubscription
from tests.redis.helpers import Collector, RedisEnv

pytestmark = pytest.mark.redis

FAST_CLAIMS = {"claim_idle_ms": 300, "claim_interval": 0.05}


class Event(BaseModel):
    n: int


def body(n: int) -> bytes:
    return Event(n=n).model_dump_json().encode()


async def _dead_consumer_takes(env: RedisEnv, topic: str, group: str, count: int) -> None:
    """A consumer reads ``count`` entries of ``group`` and dies without acknowledging."""
    key = env.key(topic)
    await env.admin.xgroup_create(key, group, id="0", mkstream=True)
    read = await env.admin.xreadgroup(group, "dead", {key: ">"}, count=count)
    assert len(read[0][1]) == count


async def test_entries_left_pending_by_a_dead_consumer_are_claimed_and_handled(
    env: RedisEnv, caplog: pytest.LogCaptureFixture
) -> None:
    broker = await env.connected()
    for n in range(3):
        await broker.publish("jobs", body(n))
    await _dead_consumer_takes(env, "jobs", "workers", 3)
    got = Collector()
    router = Router()

    @router.subscriber("jobs", group="workers")
    async def handle(event: Event, message: Message) -> None:
        got.add((event.n, message.attempt))

    server = await env.serve(router, broker=env.broker(**FAST_CLAIMS))
    assert sorted(await got.wait(3)) == [(0, 2), (1, 2), (2, 2)], "attempt = delivery count"
    await server.stop(5)
    summary = await env.admin.xpending(env.key("jobs"), "workers")
    assert summary["pending"] == 0
    assert "claimed 3 entries" in caplog.text


async def test_an_entry_delivered_more_than_max_attempts_is_dead_lettered_unhandled(
    env: RedisEnv,
) -> None:
    broker = await env.connected()
    await broker.publish("poison", body(1))
    await _dead_consumer_takes(env, "poison", "g", 1)
    [(entry_id, _)] = await env.entries("poison")
    for _ in range(2):  # two more consumers took it and died: delivered 3 times
        await env.admin.xclaim(env.key("poison"), "g", "dead", 0, [entry_id])
    handled = Collector()
    router = Router()

    @router.subscriber("poison", group="g", retry=RetryPolicy(max_attempts=3))
    async def handle(event: Event) -> None:
        handled.add(event.n)

    await env.serve(router, broker=env.broker(**FAST_CLAIMS))
    [(_, fields)] = await env.wait_entries("poison.dlq", 1)
    assert fields[f"h:{DLQ_ERROR_TYPE}".encode()] == b"DeliveryLimitExceeded"
    assert fields[f"h:{DLQ_ATTEMPTS}".encode()] == b"3"
    assert handled.items == []


async def test_a_slow_handler_keeps_its_entry_while_another_consumer_claims(
    env: RedisEnv,
) -> None:
    started = Collector()
    release = asyncio.Event()
    router = Router()

    @router.subscriber("slow", group="g")
    async def handle(event: Event, message: Message) -> None:
        started.add((event.n, message.attempt))
        await release.wait()

    await env.serve(router, broker=env.broker(**FAST_CLAIMS))
    await env.serve(router, broker=env.broker(**FAST_CLAIMS))
    broker = await env.connected()
    await broker.publish("slow", body(1))
    await started.wait(1)
    await asyncio.sleep(1.0)  # over three times claim_idle_ms: the entry would be claimable
    assert started.items == [(1, 1)], "nobody claimed the running entry"
    release.set()


async def test_graceful_stop_finishes_running_work_and_returns_unstarted_entries(
    env: RedisEnv,
) -> None:
    started = Collector()
    release = asyncio.Event()
    router = Router()

    @router.subscriber("drain", group="g")
    async def handle(event: Event) -> None:
        started.add(event.n)
        await release.wait()

    broker = await env.connected()
    for n in range(5):
        await broker.publish("drain", body(n))
    server = await env.serve(router, broker=env.broker(claim_idle_ms=60_000))
    await started.wait(1)
    await server.stop_intake()
    stopping = asyncio.create_task(server.stop(10))
    await asyncio.sleep(0.1)
    assert not stopping.done(), "stop waits for the running handler"
    release.set()
    await stopping
    assert started.items == [0]
    key = env.key("drain")
    pending = await env.admin.xpending_range(key, "g", "-", "+", 10)
    # Four returned (one acked), their delivery count lowered so that the claim that takes
    # them counts the delivery that never ran only once.
    assert [p["times_delivered"] for p in pending] == [0, 0, 0, 0]
    assert all(p["time_since_delivered"] >= 60_000 for p in pending), "claimable at once"
    # Another consumer picks them up on its first claim round, as first attempts.
    again = Collector()
    other = Router()

    @other.subscriber("drain", group="g")
    async def resume(event: Event, message: Message) -> None:
        again.add((event.n, message.attempt))

    await env.serve(other, broker=env.broker(claim_idle_ms=60_000, claim_interval=0.05))
    assert sorted(await again.wait(4)) == [(1, 1), (2, 1), (3, 1), (4, 1)]


async def test_the_reader_recovers_after_the_server_kills_its_connection(
    env: RedisEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pykratos.redis")
    got = Collector()
    router = Router()

    @router.subscriber("kill", group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    consumer = env.broker(client_name=f"pykratos-test-kill-{env.tag}")
    await env.serve(router, broker=consumer)
    publisher = await env.connected()
    await publisher.publish("kill", body(1))
    await got.wait(1)
    clients = await env.admin.client_list()
    mine = [c["id"] for c in clients if c.get("name") == f"pykratos-test-kill-{env.tag}"]
    assert mine, "the consumer's connections carry its client name"
    for client_id in mine:
        await env.admin.client_kill_filter(_id=client_id)
    await publisher.publish("kill", body(2))
    await publisher.publish("kill", body(3))
    assert await got.wait(3, timeout=15) == [1, 2, 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    lost = [w for w in warnings if "cannot read" in w]
    back = [w for w in warnings if "reading" in w and "again" in w]
    assert len(lost) == 1 and len(back) == 1, warnings


async def test_a_deleted_group_is_recreated_and_reading_goes_on(env: RedisEnv) -> None:
    got = Collector()
    router = Router()

    @router.subscriber("gone", group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish("gone", body(1))
    await got.wait(1)
    await env.admin.unlink(env.key("gone"))  # as after a restart of a Redis without persistence
    await publisher.publish("gone", body(2))
    assert await got.wait(2, timeout=10) == [1, 2]


async def test_a_stream_redis_refuses_to_read_makes_the_subscription_unhealthy(
    env: RedisEnv,
) -> None:
    got = Collector()
    router = Router()

    @router.subscriber("typed-key", group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    server = await env.serve(router)
    [subscription] = server.broker.subscriptions  # type: ignore[attr-defined]
    assert server.health_problem is None
    key = env.key("typed-key")
    await env.admin.unlink(key)
    await env.admin.set(key, "not a stream")  # every XREADGROUP now fails with WRONGTYPE
    for _ in range(100):
        if server.health_problem:
            break
        await asyncio.sleep(0.05)
    assert "Redis refuses to read" in (server.health_problem or "")
    await env.admin.unlink(key)  # the group is recreated and reading goes on
    publisher = await env.connected()
    await publisher.publish("typed-key", body(5))
    assert await got.wait(1) == [5]
    assert subscription.health.problem is None and server.health_problem is None


async def test_an_entry_held_by_a_crashed_worker_is_claimed_again(
    env: RedisEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish = RedisSubscription._finish
    crashes = [RuntimeError("bug after the handler")]

    def crash_once(self: RedisSubscription, entry_id: str) -> None:
        if crashes:
            raise crashes.pop()
        finish(self, entry_id)

    monkeypatch.setattr(RedisSubscription, "_finish", crash_once)
    got = Collector()
    router = Router()

    @router.subscriber("crash", group="g")
    async def handle(event: Event, message: Message) -> None:
        got.add((event.n, message.attempt))

    server = await env.serve(router, broker=env.broker(**FAST_CLAIMS))
    publisher = await env.connected()
    await publisher.publish("crash", body(1))
    assert await got.wait(2) == [(1, 1), (1, 2)], "handled again after the worker restarted"
    await server.stop(5)
    assert (await env.admin.xpending(env.key("crash"), "g"))["pending"] == 0
