"""Connection loss on a real RabbitMQ: ``rabbitmqctl close_all_connections`` mid-traffic.

It runs in a private virtual host so only this test's connections are closed.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from pydantic import BaseModel

from framework.broker import Message, Router
from framework.transport.rabbitmq import PublishFailedError
from tests.rabbitmq.helpers import RabbitEnv, rabbitmqctl
from tests.services import amqp_url

pytestmark = pytest.mark.rabbitmq

N = 300


class Event(BaseModel):
    n: int


async def test_consumer_resubscribes_and_no_confirmed_message_is_lost(
    vhost_url: tuple[str, str],
) -> None:
    vhost, url = vhost_url
    env = RabbitEnv(url)
    try:
        topic = env.topic("survive")
        handled: set[int] = set()
        channels: set[int] = set()
        all_handled = asyncio.Event()
        router = Router()

        @router.subscriber(topic, group="g", concurrency=2)
        async def handle(event: Event, message: Message) -> None:
            handled.add(event.n)
            channels.add(id(message.raw.channel))
            if len(handled) == N:
                all_handled.set()

        await env.serve(router)
        publisher = await env.connected()
        confirmed: list[int] = []
        halfway = asyncio.Event()

        async def produce() -> None:
            for n in range(N):
                await publisher.publish(topic, Event(n=n).model_dump_json().encode())
                confirmed.append(n)
                if n == 100:
                    halfway.set()
                if n > 100:
                    await asyncio.sleep(0.005)  # keep publishing while connections close

        producer = asyncio.create_task(produce())
        async with asyncio.timeout(30):
            await halfway.wait()
            out = await asyncio.to_thread(
                rabbitmqctl, "close_all_connections", "-p", vhost, "pykratos reconnect test"
            )
            await producer  # publishes retried across the reconnect: none raised
            assert confirmed == list(range(N))
            await all_handled.wait()  # every confirmed message handled at least once
        assert "Closed 0 connections" not in out
        assert len(channels) >= 2, "deliveries came on a new channel after the reconnect"
    finally:
        await env.aclose()


async def test_publish_fails_after_publish_timeout_when_the_broker_stays_away(
    rabbit_url: str,
) -> None:
    vhost = f"pykratos-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    deleted = False
    env = RabbitEnv(amqp_url(vhost))
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        publisher = await env.connected(mandatory=False, publish_timeout=1.0)
        await publisher.publish(env.topic(), b"{}")  # works while the vhost exists
        # Deleting the vhost drops the connection and every reconnect is refused.
        await asyncio.to_thread(rabbitmqctl, "delete_vhost", vhost)
        deleted = True
        started = time.monotonic()
        with pytest.raises(PublishFailedError, match="not confirmed within 1s"):
            await publisher.publish(env.topic(), b"{}")
        assert time.monotonic() - started < 6
    finally:
        await env.aclose()
        if not deleted:
            rabbitmqctl("delete_vhost", vhost)
