"""A NATS connection dropped by the server: the broker reconnects, pulls and publishes again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from framework.broker import Router
from tests.nats.helpers import Collector, NatsEnv, Proxy

pytestmark = pytest.mark.nats


@pytest.fixture
async def proxy(nats_server_url: str) -> AsyncIterator[Proxy]:
    target = urlsplit(nats_server_url)
    cuttable = Proxy(target.hostname or "", target.port or 4222)
    try:
        yield cuttable
    finally:
        await cuttable.close()


async def test_pulls_and_publishes_resume_after_the_connection_drops(
    env: NatsEnv, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykratos.nats")
    topic = env.topic("resume")
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(body: bytes) -> None:
        got.add(body)

    url = await proxy.start()
    consumer = env.broker(url)
    await env.serve(router, broker=consumer)
    publisher = env.broker(url)
    await publisher.connect()
    await publisher.publish(topic, b"before")
    assert await got.wait(1) == [b"before"]

    proxy.cut()  # as when the server drops the clients
    await publisher.publish(topic, b"after")  # waits for the reconnect and its PubAck
    assert await got.wait(2, timeout=15) == [b"before", b"after"]
    assert proxy.connections >= 4, "both clients came back"

    messages = [r.getMessage() for r in caplog.records if r.name == "pykratos.nats"]
    assert sum(m.startswith("disconnected from NATS") for m in messages) == 2, messages
    assert sum(m.startswith("reconnected to NATS") for m in messages) == 2, messages
    pull_failures = [m for m in messages if "cannot pull" in m]
    assert len(pull_failures) <= 1, "a pull failure is logged once per outage"


async def test_a_deleted_consumer_is_reported_once_and_not_asked_in_a_hot_loop(
    env: NatsEnv, caplog: pytest.LogCaptureFixture
) -> None:
    topic = env.topic("gone")
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(body: bytes) -> None: ...

    server = await env.serve(router)
    (subscription,) = server.broker.subscriptions  # type: ignore[attr-defined]
    puller = subscription._puller
    requests = 0
    request = puller.request

    async def counted(batch: int) -> None:
        nonlocal requests
        requests += 1
        await request(batch)

    puller.request = counted
    reported = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "cannot pull" in record.getMessage():
                reported.set()

    watch = Watch()
    logging.getLogger("pykratos.nats").addHandler(watch)
    try:
        await server.broker.jetstream.delete_consumer(env.stream, subscription.durable)  # type: ignore[attr-defined]
        await asyncio.wait_for(reported.wait(), 10)
        before = requests
        await asyncio.sleep(1.5)
    finally:
        logging.getLogger("pykratos.nats").removeHandler(watch)
    assert requests - before <= 6, f"{requests - before} pull requests in 1.5 s"
    failures = [r for r in caplog.records if "cannot pull" in r.getMessage()]
    assert len(failures) == 1
