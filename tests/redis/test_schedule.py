"""The Redis schedule: delayed entries wait in a sorted set and movers put them into the
streams when due, each exactly once, byte-exact, even with several movers at once."""

from __future__ import annotations

import asyncio

import pytest

from framework.broker import Message, Router
from framework.transport.redis.schedule import ScheduleKeys
from tests.redis.helpers import Collector, RedisEnv

pytestmark = pytest.mark.redis


async def test_several_movers_move_each_entry_once_and_byte_exact(env: RedisEnv) -> None:
    publisher = await env.connected(delay_relay=False)
    movers = [await env.connected(delay_relay=True) for _ in range(3)]
    headers = {"x-text": "grüße", "x-binary": b"\xc3\x28".decode("utf-8", "surrogateescape")}
    for n in range(150):
        await publisher.publish("sched", b"%d" % n, key=b"\x00k", headers=headers, delay=0.3)
    entries = await env.wait_entries("sched", 150)
    await asyncio.sleep(0.3)  # a second move would show up as a 151st entry by now
    entries = await env.entries("sched")
    assert sorted(int(fields[b"body"]) for _, fields in entries) == list(range(150))
    assert all(fields[b"key"] == b"\x00k" for _, fields in entries)
    assert all(fields[b"h:x-binary"] == b"\xc3\x28" for _, fields in entries)
    assert sum(mover.mover.moved for mover in movers if mover.mover) == 150
    keys = ScheduleKeys(env.prefix)
    assert await env.admin.zcard(keys.schedule) == 0
    assert [key async for key in env.admin.scan_iter(match=keys.entry_prefix + "*")] == []


async def test_entries_wait_in_the_schedule_until_a_mover_runs(env: RedisEnv) -> None:
    publisher = await env.connected()  # no subscription: runs no mover
    await publisher.publish("waits", b"later", delay=0.05)
    await asyncio.sleep(0.3)
    assert await env.admin.exists(env.key("waits")) == 0
    assert await env.admin.zcard(ScheduleKeys(env.prefix).schedule) == 1
    inbox = Collector()
    router = Router()

    @router.subscriber("waits", group="g")
    async def handle(message: Message) -> None:
        inbox.add(message.body)

    await env.serve(router)  # subscribing starts the mover (delay_relay=None)
    assert await inbox.wait(1) == [b"later"]


async def test_a_scheduled_publish_refuses_its_own_trimming(env: RedisEnv) -> None:
    broker = await env.connected()
    with pytest.raises(ValueError, match="trimmed by the broker's policy"):
        await broker.publish("trim", b"x", delay=1.0, maxlen=10)
