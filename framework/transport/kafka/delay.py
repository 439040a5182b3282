"""Delayed and scheduled delivery on Kafka: delay-level topics and a framework relay.

Kafka cannot hold a record back, and one FIFO delay topic would make a long delay at its
head hold back every shorter one behind it. So delayed records go through **levels**
(``<delay_topic_prefix>.<level>``, :class:`DelayLevels`):

* level 0 holds records due within ``HOLD`` (5 s) when written. The relay takes them into
  memory at once, forwards each to its topic on an event-loop timer when due (in due order,
  whatever their order in the partition) and commits a partition's offsets up to the first
  record not forwarded yet. So lateness is one produce and one consume, whatever the mix of
  delays.
* level ``k >= 1`` holds records with between ``HOLD * 2**(k-1)`` and ``HOLD * 2**k``
  seconds left when written. The relay takes a level-``k`` record when its time left falls
  to the level's lower bound and writes it to the level of its time left then (ending in
  level 0). Each record entered with at least the lower bound left, and one ahead of it in
  the partition entered earlier with less than twice that, so waiting behind the head never
  makes a record late; the head wait is a **pause** of the partition and a timer that
  **resumes** it when the head is due (the fetch keeps serving the other partitions):
  nothing sleeps or polls per record. A record takes at most one hop per level.

A delayed record carries the destination topic (:data:`TOPIC_HEADER`), its due time
(:data:`~framework.broker.schedule.DUE_HEADER`, epoch ms, rounded up) and the destination
partition (:data:`PARTITION_HEADER`) besides its own key, headers and body, which reach the
topic unchanged. The partition is chosen at publish, by the publisher's partitioner (a
custom one included) or its ``partition=``, so a delayed message lands where the same
message published at once would, whichever process relays it. A record without the header
(written before it existed), or naming a partition the topic no longer has, is placed by
its key (murmur2). ``Message.id``, ``topic/partition/offset``, is that of the final record.

The relay (:class:`DelayRelay`) is a group consumer of every level topic (group
``<delay_topic_prefix>.relay``: relays of all processes share the work). Forwarded records
are produced with acks=all whatever the broker's ``acks`` (as dead letters are), and
offsets committed only once the records before them are acknowledged: at-least-once (a
relay that dies in between forwards them again). At most ``MAX_HELD`` records are held in
memory; beyond that the level-0 partitions are paused. With no relay running, delayed
records wait in the level topics (within their retention) until one runs; none is dropped.
Who runs one: the broker's ``delay_relay`` option.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from framework.broker.schedule import DUE_HEADER, due_ms
from framework.transport.kafka import group
from framework.transport.kafka.options import KafkaOptions

__all__ = [
    "HOLD",
    "LEVELS",
    "MAX_DELAY",
    "MAX_HELD",
    "PARTITION_HEADER",
    "TOPIC_HEADER",
    "DelayLevels",
    "DelayRelay",
    "delay_headers",
]

log = logging.getLogger("pykratos.kafka")

#: Seconds within which a record is held in memory by the relay (level 0), and the unit of
#: the levels above it.
HOLD = 5.0
#: Number of levels: level ``LEVELS - 1`` starts at ``HOLD * 2**(LEVELS - 2)`` (about 243
#: days).
LEVELS = 24
#: The longest delay the levels hold without making a record late (about 485 days).
MAX_DELAY = HOLD * (1 << (LEVELS - 1))
#: Records a relay holds in memory at most before pausing the level-0 partitions.
MAX_HELD = 100_000
#: Header of a delayed record naming the topic it is for.
TOPIC_HEADER = "x-pykratos-delay-topic"
#: Header of a delayed record naming the partition of :data:`TOPIC_HEADER` it goes to.
PARTITION_HEADER = "x-pykratos-delay-partition"
_INTERNAL = frozenset({TOPIC_HEADER, DUE_HEADER, PARTITION_HEADER})
#: Seconds between a failed forward and the next attempt (the record stays uncommitted).
_RETRY = 1.0


class DelayLevels:
    """The level topics under ``prefix`` (see the module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.topics = [f"{prefix}.{level}" for level in range(LEVELS)]
        self._by_topic = {topic: level for level, topic in enumerate(self.topics)}

    def level_for(self, left: float) -> int:
        """The level of a record with ``left`` seconds to wait."""
        if left < HOLD:
            return 0
        return min(int(math.log2(left / HOLD)) + 1, LEVELS - 1)

    def level(self, topic: str) -> int:
        """The level of level topic ``topic``."""
        return self._by_topic[topic]

    def topic_for(self, left: float) -> str:
        """The topic of the level for ``left`` seconds."""
        return self.topics[self.level_for(left)]

    def take_at(self, level: int, due: float) -> float:
        """When the relay takes a record of ``level`` (>= 1) due at ``due``."""
        return due - HOLD * (1 << (level - 1))

    async def exist(self, options: KafkaOptions) -> bool:
        """Whether the level topics exist (a delayed record was ever published). Lists the
        topics (a metadata request for one named topic could auto-create it)."""
        admin = _admin(options)
        await admin.start()
        try:
            return self.topics[0] in await admin.list_topics()
        finally:
            await admin.close()

    async def ensure(self, options: KafkaOptions, partitions: int) -> None:
        """Create the level topics that do not exist yet (one request; safe to race), with
        ``delay_replication_factor`` replicas (by default 3, or fewer on a smaller cluster:
        a delayed record must survive a broker as any other)."""
        admin = _admin(options)
        await admin.start()
        try:
            replicas = options.delay_replication_factor
            if replicas is None:
                cluster = await admin.describe_cluster()
                replicas = max(1, min(3, len(cluster.get("brokers") or ())))
            response = await admin.create_topics(
                [NewTopic(topic, partitions, replicas) for topic in self.topics]
            )
            for topic, code, *rest in getattr(response, "topic_errors", ()):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise KafkaError(f"creating delay topic {topic!r} failed: {code} {rest}")
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()


def _admin(options: KafkaOptions) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=options.servers,
        client_id=options.client_id,
        request_timeout_ms=options.request_timeout_ms,
        **options.security_kwargs(),
    )


def delay_headers(
    headers: Iterable[tuple[str, bytes | None]],
    topic: str,
    due: float,
    partition: int | None = None,
) -> list[tuple[str, bytes | None]]:
    """The headers of a delayed record: the message's own plus its topic, due time and
    (when chosen) partition."""
    internal: list[tuple[str, bytes | None]] = [
        (TOPIC_HEADER, topic.encode()),
        (DUE_HEADER, str(due_ms(due)).encode()),
    ]
    if partition is not None:
        internal.append((PARTITION_HEADER, str(partition).encode()))
    return [*headers, *internal]


class _Delayed(NamedTuple):
    """What a delayed record's internal headers say, and its own headers without them."""

    topic: str | None
    due: float | None
    partition: int | None
    headers: list[tuple[str, bytes | None]]


def _read(headers: Sequence[tuple[str, bytes | None]] | None) -> _Delayed:
    topic: str | None = None
    due: float | None = None
    partition: int | None = None
    own: list[tuple[str, bytes | None]] = []
    for name, value in headers or ():
        if name not in _INTERNAL:
            own.append((name, value))
        elif value is None:
            continue
        elif name == TOPIC_HEADER:
            topic = value.decode("utf-8", "replace")
        elif name == DUE_HEADER:
            with contextlib.suppress(ValueError):
                due = int(value) / 1000
        else:
            with contextlib.suppress(ValueError):
                partition = int(value)
    return _Delayed(topic, due, partition, own)


class _Held:
    """Level-0 records of one partition taken into memory: forwarded when due, committed
    in offset order."""

    def __init__(self) -> None:
        self.forwarded: dict[int, bool] = {}  # offset -> forwarded, in offset order
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.commit: int | None = None  # next offset to commit, once it moved
        self.committed: int | None = None

    def done(self, offset: int) -> None:
        self.timers.pop(offset, None)
        if offset in self.forwarded:
            self.forwarded[offset] = True
        while self.forwarded:
            first = next(iter(self.forwarded))
            if not self.forwarded[first]:
                break
            del self.forwarded[first]
            self.commit = first + 1


class DelayRelay:
    """Forwards the records of the level topics when due (see the module docstring).

    Args:
        options: the broker's options (connection, consumer timings, commit interval).
        levels: the level topics.
        producer: returns the broker's acks=all producer (forwarding goes through it).
        partitions: partitions of each level topic created by :meth:`start`.
    """

    def __init__(
        self,
        options: KafkaOptions,
        levels: DelayLevels,
        producer: Callable[[], AIOKafkaProducer],
        *,
        partitions: int,
    ) -> None:
        self._options = options
        self._levels = levels
        self._producer = producer
        self._partitions = partitions
        self.group_id = f"{levels.prefix}.relay"
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Task[None] | None = None
        self._used = asyncio.Event()  # the level topics are known to exist
        self._timers: dict[TopicPartition, asyncio.TimerHandle] = {}  # paused heads
        self._held: dict[TopicPartition, _Held] = {}
        self._held_count = 0
        self._held_paused = False
        self._forwarding: set[asyncio.Task[None]] = set()
        #: records forwarded to their topic since start (for tests and health).
        self.relayed = 0

    @property
    def running(self) -> bool:
        """Whether the relay runs."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    @property
    def held(self) -> int:
        """Records held in memory until due."""
        return self._held_count

    def start_soon(self, *, when_used: bool = False) -> None:
        """Start in the background (a subscribe does not wait for the relay's own group
        join), retrying while the cluster refuses; idempotent. With ``when_used``, wait
        first until the level topics exist (checked every ``delay_check_interval``
        seconds), so that services which never see a delayed record neither create the
        topics nor join the relay group."""
        if not when_used:
            self._used.set()
        if not self._tasks and self._starting is None:
            self._starting = asyncio.create_task(
                self._start_retrying(), name="kafka-delay-relay-start"
            )

    async def _start_retrying(self) -> None:
        interval = self._options.delay_check_interval
        while not self._tasks:
            try:
                if self._used.is_set() or await self._levels.exist(self._options):
                    await self.start()
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kafka delay relay could not start (%r); retrying", exc)
            # Woken at once when this broker creates the topics (start_soon()).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._used.wait()

    async def start(self) -> None:
        """Create the level topics, join the relay group and start relaying."""
        if self._tasks:
            return
        await self._levels.ensure(self._options, self._partitions)
        self._consumer = consumer = await group.join(
            self._options,
            group_id=self.group_id,
            topic=self._levels.topics,
            auto_offset_reset="earliest",
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
        )
        self._tasks = [
            asyncio.create_task(self._run(consumer), name="pykratos-kafka-delay"),
            asyncio.create_task(self._commit_loop(consumer), name="pykratos-kafka-delay-commit"),
        ]

    async def stop(self) -> None:
        """Stop relaying, commit what was forwarded and leave the group; records held and
        not forwarded yet are forwarded by the relay that gets their partition next."""
        starting, self._starting = self._starting, None
        tasks, self._tasks = self._tasks, []
        for task in [t for t in (starting, *tasks) if t is not None]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit(consumer)
        for task in list(self._forwarding):
            task.cancel()
        if self._forwarding:
            await asyncio.wait(self._forwarding)
        self._drop(list(self._held))
        if consumer is not None:
            await group.leave(consumer, self.group_id)

    # -- group membership ----------------------------------------------------------------

    def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # A partition taken from this member and given back starts unpaused, from its
        # committed offset; nothing of it is held any more.
        del assigned

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        for tp in revoked:
            timer = self._timers.pop(tp, None)
            if timer is not None:
                timer.cancel()
        consumer = self._consumer
        if consumer is not None:
            with contextlib.suppress(Exception):  # the next owner forwards them again
                await self._commit(consumer, revoked)
        self._drop(revoked)

    def _drop(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            held = self._held.pop(tp, None)
            if held is None:
                continue
            for timer in held.timers.values():
                timer.cancel()
            self._held_count -= sum(1 for done in held.forwarded.values() if not done)

    # -- the loop --------------------------------------------------------------------------

    def _resume(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self._timers.pop(tp, None)
        with contextlib.suppress(Exception):  # revoked meanwhile
            consumer.resume(tp)

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        options = self._options
        while True:
            try:
                batch = await consumer.getmany(
                    timeout_ms=options.fetch_timeout_ms, max_records=options.max_records
                )
                for tp, records in batch.items():
                    if self._levels.level(tp.topic) == 0:
                        self._hold(consumer, tp, records)
                    else:
                        await self._descend(consumer, tp, records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kafka delay relay: %r; forwarding again from the last commit", exc)
                await asyncio.sleep(_RETRY)
                with contextlib.suppress(Exception):
                    await self._rewind(consumer)

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        # What a level >= 1 partition fetched past its last commit was maybe not forwarded:
        # fetch it again (level 0 keeps what it holds; its forwards retry by themselves).
        for tp in consumer.assignment():
            if self._levels.level(tp.topic) == 0:
                continue
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    def _hold(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Any) -> None:
        held = self._held.get(tp)
        if held is None:
            held = self._held[tp] = _Held()
        loop = asyncio.get_running_loop()
        now = time.time()
        for record in records:
            delayed = _read(record.headers)
            held.forwarded[record.offset] = False
            if delayed.topic is None or delayed.due is None:
                _log_foreign(tp, record.offset)
                held.done(record.offset)
                continue
            self._held_count += 1
            wait = delayed.due - now
            if wait <= 0:
                self._forward(held, tp, record, delayed)
            else:
                held.timers[record.offset] = loop.call_at(
                    loop.time() + wait, self._forward, held, tp, record, delayed
                )
        if self._held_count > MAX_HELD and not self._held_paused:
            self._held_paused = True
            for level_zero in self._held:
                with contextlib.suppress(Exception):
                    consumer.pause(level_zero)

    def _forward(self, held: _Held, tp: TopicPartition, record: Any, delayed: _Delayed) -> None:
        held.timers.pop(record.offset, None)
        task = asyncio.create_task(self._send_until_acked(held, tp, record, delayed))
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

    async def _send_until_acked(
        self, held: _Held, tp: TopicPartition, record: Any, delayed: _Delayed
    ) -> None:
        topic, headers = delayed.topic, delayed.headers
        assert topic is not None  # _hold forwards only records with a topic
        while True:
            try:
                producer = self._producer()
                future = await producer.send(
                    topic,
                    record.value,
                    key=record.key,
                    partition=await _existing(producer, topic, delayed.partition),
                    headers=headers or None,
                )
                await future
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # stays uncommitted; never dropped
                log.warning("kafka delay relay: forwarding to %r failed (%r); retrying", topic, exc)
                await asyncio.sleep(_RETRY)
        if self._held.get(tp) is held:  # not revoked meanwhile
            held.done(record.offset)
            self._held_count -= 1
            self.relayed += 1
            if self._held_paused and self._held_count < MAX_HELD // 2:
                self._held_paused = False
                consumer = self._consumer
                for level_zero in self._held:
                    if consumer is not None:
                        with contextlib.suppress(Exception):
                            consumer.resume(level_zero)

    async def _descend(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Any) -> None:
        level = self._levels.level(tp.topic)
        loop = asyncio.get_running_loop()
        producer = self._producer()
        sent: list[asyncio.Future[Any]] = []
        commit: int | None = None
        now = time.time()
        for record in records:
            delayed = _read(record.headers)
            topic, due = delayed.topic, delayed.due
            if topic is None or due is None:
                _log_foreign(tp, record.offset)
                commit = record.offset + 1
                continue
            take_at = self._levels.take_at(level, due)
            if take_at > now:
                # The head is not due: fetch it again once it is; nothing busy-waits.
                consumer.seek(tp, record.offset)
                consumer.pause(tp)
                previous = self._timers.pop(tp, None)
                if previous is not None:
                    previous.cancel()
                self._timers[tp] = loop.call_at(
                    loop.time() + (take_at - now), self._resume, consumer, tp
                )
                break
            headers = delayed.headers
            # One level down at least (a record taken right at the boundary would otherwise
            # go back to its own level).
            lower = min(self._levels.level_for(due - now), level - 1)
            sent.append(
                await producer.send(
                    self._levels.topics[lower],
                    record.value,
                    key=record.key,
                    headers=delay_headers(headers, topic, due, delayed.partition),
                )
            )
            commit = record.offset + 1
        if sent:
            await asyncio.gather(*sent)  # acknowledged before anything is committed
        if commit is not None:
            await consumer.commit({tp: commit})

    # -- commits ---------------------------------------------------------------------------

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        interval = min(self._options.commit_interval, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._commit(consumer)
            except Exception as exc:  # committed later; forwarded twice at worst
                log.warning("kafka delay relay: commit failed (%r)", exc)

    async def _commit(
        self, consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition] | None = None
    ) -> None:
        """Commit how far each held partition's records are forwarded in offset order."""
        offsets: dict[TopicPartition, int] = {}
        for tp in list(self._held) if tps is None else tps:
            held = self._held.get(tp)
            if held is not None and held.commit is not None and held.commit != held.committed:
                offsets[tp] = held.commit
        if offsets:
            await consumer.commit(offsets)
            for tp, offset in offsets.items():
                held = self._held.get(tp)
                if held is not None:
                    held.committed = offset


async def _existing(producer: AIOKafkaProducer, topic: str, partition: int | None) -> int | None:
    """``partition`` if ``topic`` still has it, else ``None`` (placed by key): a topic may
    have been recreated with fewer partitions while the record waited."""
    if partition is None:
        return None
    known = producer.client.cluster.partitions_for_topic(topic)  # cached metadata: no wait
    if known is None:
        known = await producer.partitions_for(topic)
    return partition if partition in known else None


def _log_foreign(tp: TopicPartition, offset: int) -> None:
    log.error(
        "kafka delay relay: record %s/%d/%d has no %s/%s header (not written by a pykratos "
        "publisher); skipped",
        tp.topic,
        tp.partition,
        offset,
        TOPIC_HEADER,
        DUE_HEADER,
    )
