"""Delayed and scheduled delivery on Kafka: delay-level topics and a framework relay.

Kafka cannot hold a record back, and one FIFO delay topic would make a long delay at its
head hold back every shorter one behind it. So delayed records go through **levels**
(``<delay_topic_prefix>.<level>``, :class:`DelayLevels`): level 0 holds records due within
``BASE`` (0.1 s); level ``k >= 1`` holds records with between ``BASE * 2**(k-1)`` and
``BASE * 2**k`` seconds left when they were written. The relay takes a level-``k`` record
when its time left falls below the level's lower bound ``BASE * 2**(k-1)`` and writes it to
the level of its time left then (or to its topic once due). Within one level every record is
taken no later than its due time (each record entered with at least the lower bound left,
and a record ahead of it in the partition entered earlier with less than twice that), so
head-of-line waits never make a record late; only level 0 releases exactly on time, with at
most ``BASE`` of head-of-line wait. A record takes at most one hop per level.

A delayed record carries the destination topic (:data:`TOPIC_HEADER`) and its due time
(:data:`~framework.broker.schedule.DUE_HEADER`, epoch ms) besides its own key, headers and
body, which reach the topic unchanged (its key picks the partition as a direct publish
would; its ``Message.id``, ``topic/partition/offset``, is that of the final record).

The relay (:class:`DelayRelay`) is a group consumer of every level topic (group
``<delay_topic_prefix>.relay``: relays of all processes share the work). It never sleeps per
record: when the head record of a partition is not due, it seeks back to it and
**pauses** the partition, and a timer **resumes** it when the head is due; the fetch keeps
waiting on the other partitions. Forwarded records are produced with the broker's producer
(``acks`` as configured, ``"all"`` by default) and the offsets committed only once every one
of them is acknowledged: at-least-once (a relay that dies in between forwards them again).
With no relay running, delayed records wait in the level topics (within their retention)
until one runs; none is dropped. Who runs one: the broker's ``delay_relay`` option.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from framework.broker.schedule import DUE_HEADER, due_ms
from framework.transport.kafka import group
from framework.transport.kafka.options import KafkaOptions

__all__ = [
    "BASE",
    "LEVELS",
    "MAX_DELAY",
    "TOPIC_HEADER",
    "DelayLevels",
    "DelayRelay",
    "delay_headers",
]

log = logging.getLogger("pykratos.kafka")

#: Seconds of level 0 (and the unit of the levels above it).
BASE = 0.1
#: Number of levels: level ``LEVELS - 1`` starts at ``BASE * 2**(LEVELS - 2)`` (about 155
#: days).
LEVELS = 28
#: The longest delay the levels hold without making a record late (about 310 days).
MAX_DELAY = BASE * 2 ** (LEVELS - 1)
#: Header of a delayed record naming the topic it is for.
TOPIC_HEADER = "x-pykratos-delay-topic"
_INTERNAL = frozenset({TOPIC_HEADER, DUE_HEADER})


class DelayLevels:
    """The level topics under ``prefix`` (see the module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.topics = [f"{prefix}.{level}" for level in range(LEVELS)]
        self._by_topic = {topic: level for level, topic in enumerate(self.topics)}

    def level_for(self, left: float) -> int:
        """The level of a record with ``left`` seconds to wait."""
        if left < BASE:
            return 0
        return min(int(math.log2(left / BASE)) + 1, LEVELS - 1)

    def topic_for(self, left: float) -> str:
        """The topic of the level for ``left`` seconds."""
        return self.topics[self.level_for(left)]

    def take_at(self, topic: str, due: float) -> float:
        """When the relay takes a record of level topic ``topic`` due at ``due``."""
        level = self._by_topic[topic]
        return due if level == 0 else due - BASE * 2 ** (level - 1)

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
        """Create the level topics that do not exist yet (one request; safe to race)."""
        admin = _admin(options)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(topic, partitions, 1) for topic in self.topics]
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
    headers: Iterable[tuple[str, bytes]], topic: str, due: float
) -> list[tuple[str, bytes]]:
    """The headers of a delayed record: the message's own plus its topic and due time."""
    return [
        *headers,
        (TOPIC_HEADER, topic.encode()),
        (DUE_HEADER, str(due_ms(due)).encode()),
    ]


def _read(headers: Sequence[tuple[str, bytes | None]]) -> tuple[str | None, float | None]:
    topic: str | None = None
    due: float | None = None
    for name, value in headers:
        if value is None:
            continue
        if name == TOPIC_HEADER:
            topic = value.decode("utf-8", "replace")
        elif name == DUE_HEADER:
            with contextlib.suppress(ValueError):
                due = int(value) / 1000
    return topic, due


class DelayRelay:
    """Forwards the records of the level topics when due (see the module docstring).

    Args:
        options: the broker's options (connection, consumer timings, ``delay_partitions``).
        levels: the level topics.
        producer: returns the broker's producer (forwarding goes through it).
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
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._used = asyncio.Event()  # the level topics are known to exist
        self._timers: dict[TopicPartition, asyncio.TimerHandle] = {}
        #: records forwarded to their topic since start (for tests and health).
        self.relayed = 0

    @property
    def running(self) -> bool:
        """Whether the relay's task is running."""
        return self._task is not None and not self._task.done()

    def start_soon(self, *, when_used: bool = False) -> None:
        """Start in the background (a subscribe does not wait for the relay's own group
        join), retrying while the cluster refuses; idempotent. With ``when_used``, wait
        first until the level topics exist (checked every ``delay_check_interval``
        seconds), so that services which never see a delayed record neither create the
        topics nor join the relay group."""
        if not when_used:
            self._used.set()
        if self._task is None and self._starting is None:
            self._starting = asyncio.create_task(
                self._start_retrying(), name="kafka-delay-relay-start"
            )

    async def _start_retrying(self) -> None:
        interval = self._options.delay_check_interval
        while self._task is None:
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
        if self._task is not None:
            return
        await self._levels.ensure(self._options, self._partitions)
        self._consumer = await group.join(
            self._options,
            group_id=self.group_id,
            topic=self._levels.topics,
            auto_offset_reset="earliest",
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
        )
        self._task = asyncio.create_task(self._run(self._consumer), name="pykratos-kafka-delay")

    async def stop(self) -> None:
        """Stop relaying and leave the group (forwarded records are committed already)."""
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await group.leave(consumer, self.group_id)

    def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # A partition taken from this member and given back starts unpaused; its timer (if
        # any) is gone with the revocation.
        del assigned

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            timer = self._timers.pop(tp, None)
            if timer is not None:
                timer.cancel()

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
                if batch:
                    await self._relay(consumer, batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kafka delay relay: %r; forwarding again from the last commit", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self._rewind(consumer)

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        # What was fetched past the last commit was maybe not forwarded: fetch it again.
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    async def _relay(self, consumer: AIOKafkaConsumer, batch: Mapping[TopicPartition, Any]) -> None:
        producer = self._producer()
        loop = asyncio.get_running_loop()
        sent: list[asyncio.Future[Any]] = []
        commits: dict[TopicPartition, int] = {}
        delivered = 0
        now = time.time()
        for tp, records in batch.items():
            for record in records:
                topic, due = _read(record.headers or ())
                if topic is None or due is None:
                    log.error(
                        "kafka delay relay: record %s/%d/%d has no %s/%s header; dropped",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        TOPIC_HEADER,
                        DUE_HEADER,
                    )
                    commits[tp] = record.offset + 1
                    continue
                take_at = self._levels.take_at(tp.topic, due)
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
                left = due - now
                headers = [(n, v) for n, v in record.headers or () if n not in _INTERNAL]
                if left > 0:
                    destination = self._levels.topic_for(left)
                    headers = delay_headers(headers, topic, due)
                else:
                    destination = topic
                sent.append(
                    await producer.send(
                        destination,
                        record.value,
                        key=record.key,
                        headers=headers or None,
                        partition=None,
                    )
                )
                delivered += left <= 0
                commits[tp] = record.offset + 1
        if sent:
            await asyncio.gather(*sent)  # acknowledged before anything is committed
        self.relayed += delivered
        if commits:
            await consumer.commit(commits)
