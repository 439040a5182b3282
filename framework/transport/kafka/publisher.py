"""A batching publisher for Kafka: go-queue's Pusher, with a result for every message.

:meth:`BatchingPublisher.submit` buffers a message and returns a future at once. The buffer
is sent when it holds ``chunk_size`` messages or ``flush_interval`` seconds after its first
message, whichever comes first. A chunk is written as one record batch per partition with
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

Chunks are sent one after another by a single task, so messages of one key keep their order.
At most ``max_pending`` messages wait for acknowledgement; ``submit`` waits beyond that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from framework.broker.broker import PublishResult
from framework.transport.kafka.partitioner import Partitioner
from framework.transport.kafka.records import encode_headers

__all__ = ["BatchingPublisher"]

_log = logging.getLogger("pykratos.kafka")

# (topic, body, key, headers, future, partition or None)
_Item = tuple[
    str,
    bytes,
    bytes | None,
    list[tuple[str, bytes]],
    "asyncio.Future[PublishResult]",
    int | None,
]


class BatchingPublisher:
    """Pipelines many publishes through one producer, reporting each message's result.

    Create it with :meth:`KafkaBroker.batch_publisher`. Use :meth:`submit` to pipeline
    (``futures = [await p.submit(...) for ...]``), :meth:`publish` to wait for one message,
    and :meth:`flush` / :meth:`close` (or ``async with``) to wait for everything buffered.

    Args:
        producer: a started aiokafka producer (the broker's).
        chunk_size: messages per chunk: a full chunk is sent at once.
        flush_interval: seconds a partial chunk waits before it is sent.
        max_pending: messages submitted but not yet acknowledged before ``submit`` waits.
        partitioner: the broker's partitioner (a default murmur2 one if not given).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
        partitioner: Partitioner | None = None,
    ) -> None:
        if chunk_size < 1 or flush_interval < 0 or max_pending < chunk_size:
            raise ValueError(
                "chunk_size must be >= 1, flush_interval >= 0 and max_pending >= chunk_size"
            )
        self._producer = producer
        self._chunk_size = chunk_size
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._partitioner = partitioner if partitioner is not None else Partitioner()
        self._buffer: list[_Item] = []
        self._timer: asyncio.TimerHandle | None = None
        self._chunks: asyncio.Queue[list[_Item]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._unacked: set[asyncio.Future[Any]] = set()  # batch futures awaiting the broker
        self._pending = 0  # messages submitted and not yet resolved
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API ------------------------------------------------------------------------

    async def submit(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[PublishResult]:
        """Buffer one message; the returned future resolves once the broker acknowledged it.

        Waits only while ``max_pending`` messages are unacknowledged (backpressure).
        ``partition`` chooses the partition (the future fails with ``ValueError`` if the
        topic has no such partition); by default the partitioner does.
        """
        # Re-checked after every wait: several submitters may wake at once, and close() may
        # have run meanwhile (a message buffered then would start a sender nobody stops).
        while True:
            if self._closed:
                raise RuntimeError("BatchingPublisher is closed")
            if self._pending < self._max_pending:
                break
            self._room.clear()
            await self._room.wait()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[PublishResult] = loop.create_future()
        self._pending += 1
        buffer = self._buffer
        encoded = encode_headers(headers) if headers else []
        buffer.append((topic, body, key, encoded, future, partition))
        if len(buffer) >= self._chunk_size:
            self._send_buffer()
        elif self._timer is None:
            self._timer = loop.call_later(self._flush_interval, self._send_buffer)
        return future

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        partition: int | None = None,
    ) -> PublishResult:
        """Submit one message and wait for its acknowledgement."""
        return await (await self.submit(topic, body, key=key, headers=headers, partition=partition))

    async def flush(self) -> None:
        """Send what is buffered and wait until every submitted message is resolved."""
        self._send_buffer()
        await self._chunks.join()
        while self._unacked:
            await asyncio.gather(*list(self._unacked), return_exceptions=True)

    async def close(self) -> None:
        """Flush, then refuse new messages. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.flush()
        finally:
            if self._sender is not None:
                self._sender.cancel()
                await asyncio.gather(self._sender, return_exceptions=True)
                self._sender = None

    async def __aenter__(self) -> BatchingPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals -------------------------------------------------------------------------

    def _settle(self, count: int) -> None:
        """``count`` submitted messages are resolved: make room for more."""
        self._pending -= count
        if self._pending < self._max_pending:
            self._room.set()

    def _fail(self, futures: Iterable[asyncio.Future[PublishResult]], exc: BaseException) -> None:
        count = 0
        for future in futures:
            if not future.done():
                future.set_exception(exc)
                count += 1
            elif future.cancelled():  # cancelled by its submitter: resolved all the same
                count += 1
        self._settle(count)

    def _send_buffer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, []
        self._chunks.put_nowait(chunk)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop(), name="kafka-batch-publisher")

    async def _send_loop(self) -> None:
        chunks = self._chunks
        while True:
            chunk = await chunks.get()
            try:
                await self._send_chunk(chunk)
            except Exception as exc:  # a bug, not a broker error: still report it
                _log.exception("batching publisher failed to send a chunk")
                self._fail((item[4] for item in chunk), exc)
            finally:
                chunks.task_done()

    async def _send_chunk(self, chunk: list[_Item]) -> None:
        by_topic: dict[str, list[_Item]] = {}
        for item in chunk:
            by_topic.setdefault(item[0], []).append(item)
        for topic, items in by_topic.items():
            try:
                known = sorted(await self._producer.partitions_for(topic))
            except Exception as exc:  # unknown/invalid topic: fail its messages only
                self._fail((item[4] for item in items), exc)
                continue
            choose = self._partitioner.for_chunk(topic, known)
            groups: dict[int, list[_Item]] = {}
            for item in items:
                wanted = item[5]
                try:
                    partition = choose(item[2]) if wanted is None else wanted
                    if partition not in known:
                        raise ValueError(
                            f"topic {topic!r} has partitions {known[0]}..{known[-1]}, got "
                            f"partition={partition}"
                        )
                except ValueError as exc:  # this message only (a custom partitioner's too)
                    self._fail((item[4],), exc)
                    continue
                groups.setdefault(partition, []).append(item)
            for partition, members in groups.items():
                await self._send_partition(topic, partition, members)

    async def _send_partition(self, topic: str, partition: int, items: list[_Item]) -> None:
        producer = self._producer
        batch = producer.create_batch()
        members: list[tuple[int, asyncio.Future[PublishResult]]] = []
        for _, body, key, headers, future, _ in items:
            metadata = batch.append(key=key, value=body, timestamp=None, headers=headers)
            if metadata is None and members:  # batch full: ship it, start the next one
                await self._ship(batch, topic, partition, members)
                batch = producer.create_batch()
                members = []
                metadata = batch.append(key=key, value=body, timestamp=None, headers=headers)
            if metadata is None:  # refused by an empty batch: cannot be sent at all
                error = MessageSizeTooLargeError(f"message of {len(body)} bytes refused")
                self._fail((future,), error)
                continue
            members.append((metadata.offset, future))
        if members:
            await self._ship(batch, topic, partition, members)

    async def _ship(
        self,
        batch: Any,
        topic: str,
        partition: int,
        members: list[tuple[int, asyncio.Future[PublishResult]]],
    ) -> None:
        try:
            acked = await self._producer.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            self._fail((future for _, future in members), exc)
            return
        self._unacked.add(acked)

        def resolve(done: asyncio.Future[Any]) -> None:
            try:
                settle(done)
            except Exception as exc:  # a bug here must not leave the futures pending forever
                _log.exception("batching publisher could not resolve a batch's results")
                remaining = [future for _, future in members if not future.done()]
                self._fail(remaining, exc)
                self._settle(len(members) - len(remaining))

        def settle(done: asyncio.Future[Any]) -> None:
            self._unacked.discard(done)
            exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
            if exc is not None:
                self._fail((future for _, future in members), exc)
                return
            metadata = done.result()
            # acks=0: the broker answers nothing, so there is no offset (aiokafka's batch
            # future then resolves to None).
            base = metadata.offset if metadata is not None and metadata.offset >= 0 else None
            # One callback per batch, not per message: this is the per-message hot path.
            for relative, future in members:
                if not future.done():
                    offset = None if base is None else base + relative
                    future.set_result(PublishResult(topic, partition, offset))
            self._settle(len(members))

        acked.add_done_callback(resolve)
