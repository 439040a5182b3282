"""NATS delayed messages: they wait in the delay stream until a relay runs, then reach their
subject with their id, key and headers; several relays share the work."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from framework.broker import Message, Router
from framework.transport.nats.delay import HOLD
from tests.nats.helpers import Collector, NatsEnv

pytestmark = pytest.mark.nats


async def test_delayed_messages_wait_for_a_relay_and_keep_id_key_and_headers(
    env: NatsEnv,
) -> None:
    topic = env.topic("later")
    inbox = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(message: Message) -> None:
        inbox.add(message)

    await env.serve(router, broker=env.broker(delay_relay=False))
    publisher = await env.connected()
    headers = {"x-text": "grüße", "x-binary": b"\xc3\x28".decode("utf-8", "surrogateescape")}
    result = await publisher.publish(topic, b"body", key=b"\x00k", headers=headers, delay=0.05)
    soon = datetime.now(UTC) + timedelta(seconds=0.05)
    for n in range(20):
        await publisher.publish(topic, b"%d" % n, deliver_at=soon)
    await asyncio.sleep(0.5)
    assert inbox.items == [], "relayed although no relay runs"
    relays = [await env.connected(delay_relay=True) for _ in range(2)]
    messages = await inbox.wait(21)
    await asyncio.sleep(0.3)  # a message relayed twice would arrive by now
    assert len(inbox.items) == 21
    [first] = [m for m in messages if m.body == b"body"]
    assert first.id == result.message_id
    assert first.key == b"\x00k"
    assert first.headers == headers
    assert sum(relay.relay.relayed for relay in relays if relay.relay) == 21


@pytest.mark.slow
async def test_a_message_beyond_the_hold_window_is_nakked_then_relayed_on_time(
    env: NatsEnv,
) -> None:
    topic = env.topic("far")
    inbox = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(message: Message) -> None:
        inbox.add((message.body, time.time()))

    await env.serve(router)  # its broker runs the relay
    publisher = await env.connected()
    far = time.time() + HOLD + 1.0
    await publisher.publish(topic, b"far", delay=HOLD + 1.0)
    await publisher.publish(topic, b"near", delay=0.2)
    [(first, _), (second, at_second)] = await inbox.wait(2, timeout=HOLD + 20)
    assert (first, second) == (b"near", b"far")
    assert at_second >= far
