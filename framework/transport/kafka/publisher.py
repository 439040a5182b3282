"""Kafka's batching publisher: one record batch per partition per chunk.

:class:`BatchingPublisher` is :class:`framework.broker.batching.BatchingPublisher` (chunking,
``flush_interval``, ``max_pending`` back-pressure, per-message futures, the final flush)
with Kafka's send path: a chunk is written as one record batch per partition with
aiokafka's ``create_batch``/``send_batch`` (far cheaper per message than ``send``), and each
message's future resolves to its own :class:`~framework.broker.broker.PublishResult`
(partition and offset) once the broker acknowledged the batch (at the broker's configured
``acks``: a ``with_acks`` level does not apply here; at ``acks="none"`` once sent, with no
offset), or fails with the error of its batch.

Partitioning is the broker's :class:`~framework.transport.kafka.partitioner.Partitioner`, as
in :meth:`KafkaBroker.publish`: a keyed message goes to ``toPositive(murmur2(key)) %
partitions`` (the Java client's default) or to the custom partitioner's choice, so a key always
lands on the same partition whichever way it was published; ``partition=`` overrides it.
Keyless messages of one chunk go to one partition, the next in turn (or a random one) at each
chunk (as the Java client's "sticky" partitioner: fewer, larger batches).

Chunks are shipped one after another by the base's single sender task and aiokafka keeps one
batch in flight per partition, so messages of one key keep their order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from framework.broker import batching
from framework.broker.batching import PendingMessage
from framework.broker.broker import PublishResult
from framework.transport.kafka.partitioner import Partitioner
from framework.transport.kafka.records import encode_headers

__all__ = ["BatchingPublisher"]

_log = logging.getLogger("pykratos.kafka")

# More than a record batch's header and one record's framing: below this a record fits.
_RECORD_OVERHEAD = 512


class BatchingPublisher(batching.BatchingPublisher):
    """Pipelines many publishes through one producer, reporting each message's result.

    Create it with :meth:`KafkaBroker.batch_publisher`. Use :meth:`submit` to pipeline
    (``futures = [await p.submit(...) for ...]``), :meth:`publish` to wait for one message,
    and :meth:`flush` / :meth:`close` (or ``async with``) to wait for everything buffered.

    A record over ``max_request_size`` fails alone with ``MessageSizeTooLargeError``, as
    with :meth:`KafkaBroker.publish` (a record batch would otherwise carry it). A
    ``partition=`` the topic does not have (or a custom partitioner's invalid choice) fails
    that message alone with ``ValueError``.

    Args:
        producer: a started aiokafka producer (the broker's).
        max_request_size: the producer's ``max_request_size`` (bytes).
        partitioner: the broker's partitioner (a default murmur2 one if not given).
        **kwargs: ``chunk_size``, ``flush_interval``, ``max_pending``, ``close_timeout``
            (see :class:`framework.broker.batching.BatchingPublisher`).
    """

    accepts_partition: ClassVar[bool] = True

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        max_request_size: int = 1024 * 1024,
        partitioner: Partitioner | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "kafka-batch-publisher")
        super().__init__(**kwargs)
        self._producer = producer
        self._max_request_size = max_request_size
        self._partitioner = partitioner if partitioner is not None else Partitioner()
        self._unacked: set[asyncio.Future[Any]] = set()  # batch futures awaiting the broker

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        by_topic: dict[str, list[PendingMessage]] = {}
        for item in chunk:
            by_topic.setdefault(item.topic, []).append(item)
        for topic, items in by_topic.items():
            try:
                known = sorted(await self._producer.partitions_for(topic))
            except Exception as exc:  # unknown/invalid topic: fail its messages only
                self.reject(items, exc)
                continue
            choose = self._partitioner.for_chunk(topic, known)
            groups: dict[int, list[PendingMessage]] = {}
            for item in items:
                wanted = item.partition
                try:
                    partition = choose(item.key) if wanted is None else wanted
                    if partition not in known:
                        raise ValueError(
                            f"topic {topic!r} has partitions {known[0]}..{known[-1]}, got "
                            f"partition={partition}"
                        )
                except Exception as exc:  # this message only (a custom partitioner's too)
                    self.reject((item,), exc)
                    continue
                groups.setdefault(partition, []).append(item)
            for partition, members in groups.items():
                await self._send_partition(topic, partition, members)

    async def abort(self) -> None:
        # The acknowledgements still awaited resolve nothing any more (already failed).
        self._unacked.clear()

    async def _send_partition(
        self, topic: str, partition: int, items: list[PendingMessage]
    ) -> None:
        producer = self._producer
        batch = producer.create_batch()
        members: list[tuple[int, PendingMessage]] = []
        limit = self._max_request_size
        for item in items:
            body, key = item.body, item.key
            try:  # a header no encoding can carry fails its message alone
                headers = encode_headers(item.headers) if item.headers else []
            except (ValueError, TypeError) as exc:
                self.reject((item,), exc)
                continue
            # The exact estimate only near the limit: this is the per-message hot path.
            rough = len(body) + (len(key) if key else 0) + sum(len(n) + len(v) for n, v in headers)
            if rough + _RECORD_OVERHEAD > limit:
                size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, body, headers)
                if size > limit:
                    self.reject((item,), MessageSizeTooLargeError(
                        f"record of {size} bytes to {topic!r} is larger than max_request_size "
                        f"({limit} bytes)"
                    ))  # fmt: skip
                    continue
            metadata = batch.append(key=key, value=body, timestamp=None, headers=headers)
            if metadata is None and members:  # batch full: ship it, start the next one
                await self._ship(batch, topic, partition, members)
                batch = producer.create_batch()
                members = []
                metadata = batch.append(key=key, value=body, timestamp=None, headers=headers)
            if metadata is None:  # refused by an empty batch: cannot be sent at all
                error = MessageSizeTooLargeError(f"message of {len(body)} bytes refused")
                self.reject((item,), error)
                continue
            members.append((metadata.offset, item))
        if members:
            await self._ship(batch, topic, partition, members)

    async def _ship(
        self,
        batch: Any,
        topic: str,
        partition: int,
        members: list[tuple[int, PendingMessage]],
    ) -> None:
        try:
            acked = await self._producer.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            self.reject((item for _, item in members), exc)
            return
        self._unacked.add(acked)

        def resolve(done: asyncio.Future[Any]) -> None:
            try:
                settle(done)
            except Exception as exc:  # a bug here must not leave the futures pending forever
                _log.exception("%s: could not resolve a batch's results", self.name)
                self.reject((item for _, item in members), exc)

        def settle(done: asyncio.Future[Any]) -> None:
            self._unacked.discard(done)
            exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
            if exc is not None:
                self.reject((item for _, item in members), exc)
                return
            metadata = done.result()
            # acks=0: the broker answers nothing, so there is no offset (aiokafka's batch
            # future then resolves to None).
            base = metadata.offset if metadata is not None and metadata.offset >= 0 else None
            # One callback per batch, not per message: this is the per-message hot path.
            for relative, item in members:
                offset = None if base is None else base + relative
                self.resolve(item, PublishResult(topic, partition, offset))

        acked.add_done_callback(resolve)
