"""RabbitMQ's native batching publisher on a real RabbitMQ (see
:mod:`framework.transport.rabbitmq.batching`)."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from framework.broker import Message, Router
from framework.broker.batching import PipelinedPublisher
from framework.broker.broker import PublishResult
from framework.broker.policy import RetryPolicy
from framework.transport.rabbitmq import (
    PublishTimeoutError,
    RabbitBroker,
    TopologyError,
    UnroutableError,
)
from framework.transport.rabbitmq.batching import RabbitBatchingPublisher
from framework.transport.rabbitmq.publishing import ConfirmedPublisher
from tests.rabbitmq.helpers import Collector, RabbitEnv, rabbitmqctl, read_queue

pytestmark = pytest.mark.rabbitmq

KEYS = (b"a", b"b", b"c", b"d")


def _body(key: bytes, n: int) -> bytes:
    return f"{key.decode()}:{n}".encode()


async def _serve_collector(env: RabbitEnv, topic: str, **options: object) -> Collector:
    """A subscriber of ``topic`` collecting ``(key, body, message id)``."""
    seen = Collector()
    router = Router()

    @router.subscriber(topic, group="g", **options)  # type: ignore[arg-type]
    async def handle(message: Message) -> None:
        seen.add((message.key, message.body, message.id))

    await env.serve(router)
    return seen


async def test_each_message_gets_its_own_result_and_keys_keep_their_order(
    env: RabbitEnv,
) -> None:
    topic = env.topic("batch")
    seen = await _serve_collector(env, topic)
    broker = await env.connected()
    publisher = broker.batch_publisher(chunk_size=64, flush_interval=0.01)
    assert isinstance(publisher, RabbitBatchingPublisher)
    total = 600
    futures = [
        await publisher.submit(topic, _body(KEYS[n % 4], n), key=KEYS[n % 4], tag="blue")
        for n in range(total)
    ]
    async with asyncio.timeout(20):
        results: list[PublishResult] = await asyncio.gather(*futures)
    assert all(r.topic == topic for r in results)
    ids = [r.message_id for r in results]
    assert None not in ids and len(set(ids)) == total, "message ids missing or shared"

    await seen.wait(total, timeout=20)
    assert len(seen.items) == total
    # The result's message id is the one the consumer sees on that message.
    assert {body: mid for _, body, mid in seen.items} == {
        _body(KEYS[n % 4], n): ids[n] for n in range(total)
    }
    for key in KEYS:
        got = [body for k, body, _ in seen.items if k == key]
        assert got == [_body(key, n) for n in range(total) if KEYS[n % 4] == key]
    await publisher.close()


async def test_publish_on_the_same_channel_meanwhile_keeps_every_confirm_its_own(
    env: RabbitEnv,
) -> None:
    """``publish`` shares the batching publisher's confirm channel: the delivery tags of
    both stay in write order, so each confirm resolves its own message."""
    topic = env.topic("shared")
    seen = await _serve_collector(env, topic)
    broker = await env.connected()
    publisher = broker.batch_publisher(chunk_size=100, flush_interval=0.005)

    async def single(n: int) -> PublishResult:
        return await broker.publish(topic, _body(b"single", n), key=b"single")

    singles = [asyncio.ensure_future(single(n)) for n in range(50)]
    batched = [await publisher.submit(topic, _body(b"k", n), key=b"k") for n in range(1000)]
    async with asyncio.timeout(20):
        results = await asyncio.gather(*singles, *batched)
    assert len({r.message_id for r in results}) == 1050
    await seen.wait(1050, timeout=20)
    assert {mid for _, _, mid in seen.items} == {r.message_id for r in results}
    await publisher.close()


async def test_an_unroutable_message_fails_alone(env: RabbitEnv) -> None:
    topic, nowhere = env.topic("routed"), env.topic("nowhere")
    seen = await _serve_collector(env, topic)
    broker = await env.connected()  # mandatory by default
    publisher = broker.batch_publisher(chunk_size=50, flush_interval=0.01)
    futures = []
    for n in range(100):
        futures.append(await publisher.submit(topic, _body(b"k", n), key=b"k"))
        if n == 25:  # in the middle of the first chunk
            lost = await publisher.submit(nowhere, b"nobody listens")
    async with asyncio.timeout(20):
        results = await asyncio.gather(*futures)
        (error,) = await asyncio.gather(lost, return_exceptions=True)
    assert isinstance(error, UnroutableError), repr(error)
    assert len(results) == 100
    await seen.wait(100)
    assert [body for _, body, _ in seen.items] == [_body(b"k", n) for n in range(100)]
    await publisher.close()


async def test_a_missing_exchange_fails_its_messages_with_topology_error(env: RabbitEnv) -> None:
    broker = await env.connected()
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(env.exchange)  # known to the broker, gone on the server
    publisher = broker.batch_publisher(chunk_size=20, flush_interval=0.01)
    futures = [await publisher.submit(env.topic(), b"x") for _ in range(40)]
    async with asyncio.timeout(10):  # refused at once, not after publish_timeout (15 s)
        errors = await asyncio.gather(*futures, return_exceptions=True)
    # RabbitMQ closes the channel, then the connection (frames already written after the
    # close); the robust connection declares the broker's exchange again as it recovers, so
    # the later messages are refused as unroutable (no queue bound) instead: none is lost.
    assert isinstance(errors[0], TopologyError), errors[0]
    assert all(isinstance(e, TopologyError | UnroutableError) for e in errors), errors
    await publisher.close()


async def test_a_dead_letter_topic_goes_to_the_dead_letter_exchange(env: RabbitEnv) -> None:
    topic = env.topic("dl")
    router = Router()

    @router.subscriber(topic, group="g", retry=RetryPolicy(max_attempts=1))
    async def handle(message: Message) -> None:
        raise ValueError("unused")

    broker = env.broker()
    await env.serve(router, broker=broker)
    publisher = broker.batch_publisher(chunk_size=10, flush_interval=0.01)
    futures = [await publisher.submit(f"{topic}.dlq", f"dead:{n}".encode()) for n in range(3)]
    async with asyncio.timeout(10):
        await asyncio.gather(*futures)
    dead = await read_queue(env.url, f"{topic}.dlq", 3)
    assert [m.body for m in dead] == [b"dead:0", b"dead:1", b"dead:2"]
    await publisher.close()


async def test_a_nacked_message_is_published_again_until_publish_timeout(env: RabbitEnv) -> None:
    """A queue that refuses every message (full, ``reject-publish``) makes RabbitMQ nack it:
    never reported as published."""
    topic = env.topic("full")
    queue = f"full-{env.tag}"
    env.queues.add(queue)
    broker = await env.connected(publish_timeout=1.0)  # declares the exchange
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(env.exchange)
        declared = await channel.declare_queue(
            queue, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await declared.bind(exchange, routing_key=topic)
    publisher = broker.batch_publisher(chunk_size=5, flush_interval=0.01)
    futures = [await publisher.submit(topic, b"x") for _ in range(5)]
    async with asyncio.timeout(10):
        errors = await asyncio.gather(*futures, return_exceptions=True)
    for error in errors:
        assert isinstance(error, PublishTimeoutError), repr(error)
        assert "nacked" in str(error)
    await publisher.close()


async def test_a_connection_drop_mid_batch_loses_no_message_silently(
    vhost_url: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    vhost, url = vhost_url
    handed_over: list[BaseException] = []  # first attempts that were not acked
    publish_again = ConfirmedPublisher.publish

    async def spy(self: ConfirmedPublisher, **kwargs: Any) -> None:
        if kwargs.get("failed") is not None:
            handed_over.append(kwargs["failed"])
        await publish_again(self, **kwargs)

    monkeypatch.setattr(ConfirmedPublisher, "publish", spy)
    env = RabbitEnv(url)
    try:
        topic = env.topic("drop")
        seen = await _serve_collector(env, topic)
        broker = await env.connected()
        publisher = broker.batch_publisher(chunk_size=100, flush_interval=0.005)
        futures: list[asyncio.Future[PublishResult]] = []
        closing: asyncio.Future[str] | None = None
        after = 0
        async with asyncio.timeout(60):
            # Faster than RabbitMQ confirms, so that messages are in flight when the
            # connections close, and on until 1,000 more went after the drop.
            while after < 1000:
                n = len(futures)
                futures.append(await publisher.submit(topic, _body(b"k", n), key=b"k"))
                if n == 500:
                    closing = asyncio.ensure_future(
                        asyncio.to_thread(
                            rabbitmqctl, "close_all_connections", "-p", vhost, "batch drop test"
                        )
                    )
                if closing is not None and closing.done():
                    after += 1
                if n % 100 == 99:
                    await asyncio.sleep(0.01)
            assert closing is not None
            assert "Closed 0 connections" not in await closing
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert handed_over, "no message was in flight when the connections closed"
        failed = [o for o in outcomes if not isinstance(o, PublishResult)]
        # Every message ended one way or the other; with a 15 s publish_timeout, all confirmed.
        assert failed == [], failed[:3]
        confirmed = {_body(b"k", n) for n in range(len(futures))}
        # Every confirmed message delivered, at least once (a retried one may come twice).
        while missing := confirmed - {body for _, body, _ in seen.items}:
            await seen.wait(len(seen.items) + len(missing), timeout=30)
    finally:
        await env.aclose()


async def test_close_flushes_what_is_buffered(env: RabbitEnv) -> None:
    topic = env.topic("close")
    seen = await _serve_collector(env, topic)
    broker = await env.connected()
    lingering = broker.batch_publisher(chunk_size=1000, flush_interval=3600.0)
    futures = [await lingering.submit(topic, f"last:{n}".encode(), key=b"k") for n in range(5)]
    await asyncio.wait_for(broker.close(), 10)
    assert all(f.done() and f.exception() is None for f in futures)
    await seen.wait(5)
    assert [body for _, body, _ in seen.items] == [f"last:{n}".encode() for n in range(5)]


async def test_the_native_path_needs_confirms_and_a_connection(env: RabbitEnv) -> None:
    with pytest.raises(RuntimeError, match="not connected"):
        env.broker().batch_publisher()
    unconfirmed = await env.connected(publisher_confirms=False)
    assert isinstance(unconfirmed.batch_publisher(), PipelinedPublisher)
    broker: RabbitBroker = await env.connected()
    publisher = broker.batch_publisher()
    with pytest.raises(NotImplementedError, match="partition"):
        await publisher.submit(env.topic(), b"x", partition=0)
    await publisher.close()


async def test_the_one_write_path_is_taken_with_the_installed_aiormq(env: RabbitEnv) -> None:
    """Guard: the fast path relies on aiormq's channel internals (pyproject holds aiormq to
    the minor release it was built on). If an upgrade changed them, every message would
    silently take the slower per-message fallback: fail here instead."""
    from framework.transport.rabbitmq.batching import _writable

    broker: RabbitBroker = await env.connected()
    publisher = broker.batch_publisher()
    try:
        raw = await publisher._publisher.channel.get_underlay_channel()
        assert _writable(raw), (
            "aiormq's channel no longer has the confirm bookkeeping RabbitBatchingPublisher "
            "writes into: update framework/transport/rabbitmq/batching.py for this aiormq"
        )
    finally:
        await publisher.close()


class _SilentChannel:
    """A confirm channel whose broker never answers. ``bookkeeping``: with the aiormq
    attributes the batching publisher registers its messages in (else it publishes each
    message with ``basic_publish``)."""

    def __init__(self, *, bookkeeping: bool) -> None:
        self.published = 0
        if bookkeeping:
            self.publisher_confirms = True
            self.delivery_tag = 0
            self.confirmations: dict[int, asyncio.Future[Any]] = {}
            self.message_id_delivery_tag: dict[str, int] = {}
            self.write_queue: asyncio.Queue[Any] = asyncio.Queue()
            self.max_content_size = 1000
            self.number = 1
            self.is_closed = False
            self.lock = asyncio.Lock()
            self.create_future = asyncio.get_running_loop().create_future

    async def ready(self) -> None:
        return None

    async def get_underlay_channel(self) -> _SilentChannel:
        return self

    async def basic_publish(self, body: bytes, **kwargs: object) -> None:
        self.published += 1
        await asyncio.Event().wait()


class _FakeBroker:
    mandatory = True

    async def prepare_publish(self, topic: str) -> None:
        return None

    def exchange_for(self, topic: str) -> str:
        return "x"

    def forget_exchange(self, name: str) -> None:
        raise AssertionError("not a topology error")


@pytest.mark.parametrize("bookkeeping", [True, False], ids=["written", "basic_publish"])
async def test_a_confirm_that_never_comes_fails_at_publish_timeout(bookkeeping: bool) -> None:
    channel = _SilentChannel(bookkeeping=bookkeeping)
    confirmed = ConfirmedPublisher(channel, timeout=0.5)  # type: ignore[arg-type]
    publisher = RabbitBatchingPublisher(
        _FakeBroker(),  # type: ignore[arg-type]
        confirmed,
        chunk_size=10,
        flush_interval=0.001,
    )
    started = asyncio.get_running_loop().time()
    futures = [await publisher.submit("t", b"x" * 2500) for _ in range(3)]
    async with asyncio.timeout(5):
        errors = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(e, PublishTimeoutError) for e in errors), errors
    assert 0.5 <= asyncio.get_running_loop().time() - started < 2
    if bookkeeping:  # one write for the chunk, a delivery tag each; not published again
        assert channel.write_queue.qsize() == 1
        assert channel.delivery_tag == 3 and channel.published == 0
        assert channel.message_id_delivery_tag == {}  # forgotten with their confirms
    else:  # each message published once, then stopped at the deadline
        assert channel.published == 3
    await publisher.close(1)


async def test_a_body_larger_than_a_frame_arrives_whole(env: RabbitEnv) -> None:
    topic = env.topic("large")
    seen = await _serve_collector(env, topic)
    broker = await env.connected()
    body = bytes(range(256)) * 1200  # 307,200 bytes: three body frames at the default frame_max
    async with broker.batch_publisher(chunk_size=3, flush_interval=0.01) as publisher:
        futures = [await publisher.submit(topic, body[n:] + bytes([n])) for n in range(3)]
        await asyncio.wait_for(asyncio.gather(*futures), 10)
    await seen.wait(3)
    assert [got for _, got, _ in seen.items] == [body[n:] + bytes([n]) for n in range(3)]
