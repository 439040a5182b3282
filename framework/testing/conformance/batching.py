"""The batching-publisher promise: ``broker.batch_publisher(...)`` on every broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from framework.broker.batching import BatchPublisherClosedError
from framework.broker.broker import PublishResult
from framework.broker.message import Message
from framework.broker.router import Router
from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.harness import Harness

__all__ = ["BatchingPromises"]

_KEYS = (b"k0", b"k1", b"k2", b"k3")
_MESSAGES = 200  # > max_pending: the submitter must be held back
_MAX_PENDING = 32
_CHUNK = 16


class BatchingPromises(ConformanceBase):
    """The batching publisher (go-queue's pusher, Sarama's async producer).

    Hook: :meth:`refused_message`, a message this broker refuses at publish.
    """

    async def refused_message(self, harness: Harness, topic: str) -> tuple[str, bytes]:
        """``(topic, body)`` of a message the broker refuses at publish, however it is
        published. Default: the empty topic (a broker must refuse it with a clear error);
        a broker that accepts an empty topic overrides it (e.g. Kafka: a body over the
        producer's ``max_request_size``)."""
        return "", b"refused: no topic"

    async def test_batch_publish(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add((message.key, message.body))

        await harness.serve(router)
        broker = await harness.publisher()
        refused_topic, refused_body = await self.refused_message(harness, topic)

        # Per-message results, back-pressure and a failing message in the middle of a chunk.
        batcher = broker.batch_publisher(
            chunk_size=_CHUNK, flush_interval=0.01, max_pending=_MAX_PENDING
        )
        futures: list[asyncio.Future[PublishResult]] = []
        most_pending = 0
        refused: asyncio.Future[PublishResult] | None = None
        odd: asyncio.Future[PublishResult] | None = None
        for i in range(_MESSAGES):
            key = _KEYS[i % len(_KEYS)]
            futures.append(await batcher.submit(topic, f"{key.decode()}:{i}".encode(), key=key))
            most_pending = max(most_pending, batcher.pending)
            if i == _MESSAGES // 2:
                refused = await batcher.submit(refused_topic, refused_body)
                # A header value no encoding can carry (a lone surrogate): a broker may refuse
                # it or carry it, but only this message's future may fail, not its chunk.
                odd = await batcher.submit(topic, b"odd header", headers={"x-odd": "\ud800"})
        try:  # refused at submit, before it could fail a chunk
            await batcher.submit(topic, b"odd", headers={"x-number": 1})  # type: ignore[dict-item]
        except TypeError:
            pass
        else:
            raise AssertionError("a header value that is not a str was accepted")
        assert most_pending <= _MAX_PENDING, (
            f"{most_pending} messages unresolved at once with max_pending={_MAX_PENDING}"
        )
        async with asyncio.timeout(self.timeout):
            results = await asyncio.gather(*futures)
            assert refused is not None and odd is not None
            error, odd_outcome = await asyncio.gather(refused, odd, return_exceptions=True)
        assert isinstance(error, Exception), f"the refused message got a result: {error!r}"
        odd_carried = not isinstance(odd_outcome, BaseException)
        assert all(r.topic == topic for r in results), "a result names another topic"
        _check_distinct(results)

        # The final flush: a buffer that no size or interval would send, then close.
        lingering = broker.batch_publisher(chunk_size=1000, flush_interval=3600.0)
        last = [await lingering.submit(topic, f"last:{i}".encode(), key=b"k0") for i in range(5)]
        await asyncio.wait_for(broker.close(), self.timeout)
        assert all(f.done() and not f.cancelled() and f.exception() is None for f in last), (
            "close() did not flush the buffered messages"
        )
        try:
            await lingering.submit(topic, b"too late")
        except BatchPublisherClosedError:
            pass
        else:
            raise AssertionError("submit after close was accepted")

        # Delivered once each, every key in submit order.
        total = _MESSAGES + len(last) + odd_carried
        await inbox.count(total, f"{total} messages")
        delivered = list(inbox.items)
        assert len(delivered) == total, f"{len(delivered) - total} message(s) delivered twice"
        for key in _KEYS:
            bodies = [body for got, body in delivered if got == key]
            expected = [f"{key.decode()}:{i}".encode() for i in range(_MESSAGES)
                        if _KEYS[i % len(_KEYS)] == key]  # fmt: skip
            if key == b"k0":
                expected += [f"last:{i}".encode() for i in range(len(last))]
            assert bodies == expected, f"key {key!r} out of order: {bodies[:10]!r}..."


def _check_distinct(results: Sequence[PublishResult]) -> None:
    """Each message got its own result: where the broker identifies messages (offset in a
    partition, message id), no two results share an identity."""
    seen: set[tuple[object, ...]] = set()
    for result in results:
        if result.offset is None and result.message_id is None:
            continue  # a broker that reports only the topic (MQTT)
        identity = (result.partition, result.offset, result.message_id)
        assert identity not in seen, f"two messages share the result {result!r}"
        seen.add(identity)
