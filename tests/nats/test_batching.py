"""NATS' batching publisher (one reply subscription, a PubAck per message): an error PubAck
fails its message alone, and a dropped connection loses nor doubles anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import nats
import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from framework.broker.batching import PipelinedPublisher
from framework.transport.nats import PublishFailedError
from framework.transport.nats.errors import MessageTooLargeError
from tests.nats.helpers import NatsEnv, Proxy

pytestmark = pytest.mark.nats


@pytest.fixture
async def proxy(nats_server_url: str) -> AsyncIterator[Proxy]:
    target = urlsplit(nats_server_url)
    cuttable = Proxy(target.hostname or "", target.port or 4222)
    try:
        yield cuttable
    finally:
        await cuttable.close()


async def test_an_error_puback_fails_its_message_alone(env: NatsEnv) -> None:
    topic = env.topic("full")
    full = f"{env.stream}_full"
    env.streams.add(full)
    client = await nats.connect(env.url)
    try:
        await client.jetstream().add_stream(StreamConfig(
            name=full, subjects=[topic], max_msgs=3, discard=DiscardPolicy.NEW,
            storage=StorageType.MEMORY,
        ))  # fmt: skip
    finally:
        await client.close()
    broker = await env.connected()
    async with broker.batch_publisher(chunk_size=5) as publisher:
        futures = [await publisher.submit(topic, b"%d" % i) for i in range(5)]
        outcomes = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
        with pytest.raises(NotImplementedError, match="partition"):  # refused, not ignored
            await publisher.submit(topic, b"pinned", partition=0)
    assert [o.offset for o in outcomes[:3]] == [1, 2, 3]  # type: ignore[union-attr]
    for refused in outcomes[3:]:
        assert isinstance(refused, PublishFailedError), refused
        assert "refused by JetStream" in str(refused)


async def test_without_jetstream_publish_it_pipelines_core_publishes(env: NatsEnv) -> None:
    # Level "none": the batching publisher must not turn it into PubAck-confirmed publishes.
    broker = await env.connected(jetstream_publish=False)
    topic = env.topic("core")
    async with broker.batch_publisher(chunk_size=4) as publisher:
        assert isinstance(publisher, PipelinedPublisher)
        futures = [await publisher.submit(topic, b"%d" % i, key=b"k") for i in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*futures), 30)
    assert [r.offset for r in results] == [None] * 4  # a core publish has no sequence
    client = await nats.connect(env.url)
    try:
        js = client.jetstream()
        for _ in range(100):  # unconfirmed: stored a moment after the publish returned
            if (await js.stream_info(broker.stream)).state.messages >= 4:
                break
            await asyncio.sleep(0.05)
        assert (await js.stream_info(broker.stream)).state.messages == 4
    finally:
        await client.close()


@pytest.mark.slow
async def test_a_dropped_connection_neither_loses_nor_doubles(env: NatsEnv, proxy: Proxy) -> None:
    topic = env.topic("drop")
    broker = env.broker(url=await proxy.start())
    await broker.connect()
    publisher = broker.batch_publisher(chunk_size=20, flush_interval=0.001)
    futures = []
    for i in range(200):
        futures.append(await publisher.submit(topic, b"%d" % i, key=b"k%d" % (i % 4)))
        if i == 100:
            proxy.cut()
    results = await asyncio.wait_for(asyncio.gather(*futures), 30)
    await publisher.close(5)
    client = await nats.connect(env.url)
    try:
        info = await client.jetstream().stream_info(env.stream)
    finally:
        await client.close()
    assert info.state.messages == 200, "a message was lost or stored twice"
    assert len({r.offset for r in results}) == 200


async def test_an_oversized_or_malformed_message_fails_alone(env: NatsEnv) -> None:
    """Over max_payload (by its body, or by its headers: the server would drop the
    connection) or to a malformed subject: refused before sending, alone, as a ValueError
    (permanent for the outbox); the rest of the chunk is published."""
    broker = await env.connected()
    topic = env.topic("sizes")
    limit = broker._client.max_payload  # type: ignore[union-attr]
    async with broker.batch_publisher(chunk_size=10) as publisher:
        futures = [
            await publisher.submit(topic, b"first"),
            await publisher.submit(topic, b"x" * (limit + 1)),
            await publisher.submit(topic, b"small", headers={"x-big": "h" * limit}),
            await publisher.submit(f"{topic} space", b"bad subject"),
            await publisher.submit(f"{topic}..empty", b"bad subject"),
            await publisher.submit(topic, b"last"),
        ]
        outcomes = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
    assert [o.offset for o in (outcomes[0], outcomes[5])] == [1, 2]  # type: ignore[union-attr]
    for refused in outcomes[1:5]:
        assert isinstance(refused, ValueError), refused
    assert isinstance(outcomes[1], MessageTooLargeError) and "max_payload" in str(outcomes[1])
    assert isinstance(outcomes[2], MessageTooLargeError)
    # publish() refuses them at once too, and the connection is still there.
    with pytest.raises(MessageTooLargeError):
        await broker.publish(topic, b"small", headers={"x-big": "h" * limit})
    with pytest.raises(ValueError, match="non-empty tokens"):
        await broker.publish(f"{topic} space", b"x")
    assert (await broker.publish(topic, b"after")).offset == 3
