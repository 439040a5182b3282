"""An embedded, in-process broker with the semantics of the real ones.

:class:`MemoryBroker` is the reference service's default broker and the fast way to test
subscribers; it is not a mock. Like Kafka it has topics of N partitions (a key always maps to
the same partition), consumer groups (each group gets every message; members of a group split
the partitions), broadcast subscriptions (a private group per subscription), per-key ordering
with ``concurrency`` workers, and at-least-once delivery: a message is committed only when it
and every message before it in its partition finished (handled, or dead-lettered after the
processor's retries, or when the processing pipeline itself raised); whatever is unfinished
when a subscription stops is delivered again to the group. ``publish(delay=...)`` and
``publish(deliver_at=...)`` defer delivery without blocking anything.

Everything lives in this process: messages do not survive it. So a graceful stop *drains*:
a stopping subscription keeps consuming until every subscription of the broker has finished
everything published to it (including what handlers publish to one another meanwhile), within
the stop timeout, and logs how many messages it could not finish.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, get_args

from framework.broker.acks import Acks
from framework.broker.broker import (
    Broker,
    MessageProcessor,
    Outcome,
    ProcessResult,
    PublishResult,
    Subscription,
)
from framework.broker.health import Health, keep_running
from framework.broker.lanes import LaneScheduler
from framework.broker.memlog import Cursor, Record, Topic
from framework.broker.message import Message
from framework.broker.options import AutoOffsetReset, check_options, option_choice
from framework.broker.publisher import dead_letter
from framework.broker.schedule import due_time, remaining
from framework.broker.signature import handler_name
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tagged_headers
from framework.checks import check_counts

__all__ = ["MAX_PARTITIONS", "MemoryBroker"]

#: The most partitions a memory topic has: each is a log and a cursor per group, allocated
#: when the topic is first used, so a typo (``10**30``) must fail at construction, not there.
MAX_PARTITIONS = 65_536

_log = logging.getLogger("pykratos.broker.memory")
# Messages of one partition fetched ahead of its handlers: bounds memory per partition (a
# full partition stops being fetched; the others go on).
_PREFETCH = 256
# Seconds between attempts to dead-letter a message whose dead-letter publish failed.
_DLQ_RETRY_BACKOFF = 0.1
_DLQ_MAX_BACKOFF = 5.0

_Item = tuple[Cursor, Message]


class _Group:
    """A consumer group on one topic: one cursor per partition, shared by its members."""

    def __init__(self, topic: Topic, start: str, ephemeral: bool) -> None:
        self.ephemeral = ephemeral
        self.members: list[_Consumer] = []
        self.lock = asyncio.Lock()  # one rebalance at a time
        self.cursors = [
            Cursor(p, p.base if start == "earliest" else p.end) for p in topic.partitions
        ]
        for cursor in self.cursors:
            cursor.partition.cursors.append(cursor)

    def forget(self) -> None:
        """Stop retaining messages for this group (a broadcast group that ended)."""
        for cursor in self.cursors:
            cursor.partition.cursors.remove(cursor)
            cursor.partition.trim()

    async def rebalance(self) -> None:
        """Give partition ``i`` to member ``i % len(members)``.

        A moving partition is first revoked: its old owner stops fetching it and finishes what
        it already took, then the new owner starts at the committed offset. So a key is never
        processed by two members at once and its order survives the move.
        """
        members = [member for member in self.members if not member.stopping]
        moves = [
            (cursor, members[i % len(members)] if members else None)
            for i, cursor in enumerate(self.cursors)
        ]
        moves = [(cursor, owner) for cursor, owner in moves if cursor.owner is not owner]
        await asyncio.gather(
            *(cursor.owner.revoke(cursor) for cursor, _ in moves if cursor.owner is not None)
        )
        for cursor, owner in moves:
            # A member may have begun stopping while revocations ran: leave the partition
            # unowned, its own leave() rebalances again right after this one.
            if owner is not None and not owner.stopping:
                owner.assign(cursor)


class _Consumer:
    """One subscription: a member of a group, with ``concurrency`` workers.

    A fetch task per assigned partition queues messages on lanes (one per key; keyless
    messages spread over ``concurrency`` lanes of their partition), and the workers take turns
    on the lanes (:class:`~framework.broker.lanes.LaneScheduler`): one key is handled by one
    worker at a time, in order, and a key whose handler blocks holds one worker and nothing
    else. A partition with :data:`_PREFETCH` messages queued or running is not fetched until
    one finishes; the other partitions go on. A worker or fetch task that ends on its own (a
    bug) is logged at WARNING and restarted; :attr:`health` fails while one keeps dying.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        group: _Group,
    ) -> None:
        self._broker = broker
        self._spec = spec
        self._processor = processor
        self.group = group
        self._concurrency = max(1, spec.concurrency)
        self._lanes: LaneScheduler[_Item] = LaneScheduler()
        self._fetchers: dict[Cursor, asyncio.Task[None]] = {}
        self._rotation = itertools.count()
        self._draining = False
        self.stopping = False  # set once drained: the member no longer takes partitions
        self.health = Health(spec.display_name)
        label = spec.display_name
        work = self._work if spec.batch is None else self._work_batches
        self._workers = [
            self._keep_running(f"memory:{label}:worker-{i}", work) for i in range(self._concurrency)
        ]

    def _keep_running(self, what: str, body: Any) -> asyncio.Task[None]:
        # A revoked fetcher is cancelled, which keep_running lets through.
        return keep_running(
            body, what=what, stopping=lambda: self.stopping, logger=_log, health=self.health
        )

    # -- partition assignment ---------------------------------------------------------------

    def assign(self, cursor: Cursor) -> None:
        cursor.owner = self
        self._fetchers[cursor] = self._keep_running(
            f"memory:{self._spec.display_name}:fetch-{cursor.partition.index}",
            partial(self._fetch, cursor),
        )

    async def revoke(self, cursor: Cursor) -> None:
        fetcher = self._fetchers.pop(cursor, None)
        if fetcher is not None:
            fetcher.cancel()
            await asyncio.wait([fetcher])
        await cursor.idle()
        cursor.rewind()
        cursor.owner = None

    async def _fetch(self, cursor: Cursor) -> None:
        partition = cursor.partition
        topic = partition.topic
        index = partition.index
        lanes = self._lanes
        count = self._concurrency
        rotation = self._rotation
        while True:
            if cursor.inflight >= _PREFETCH:
                await cursor.below(_PREFETCH)
                continue
            offset = cursor.position
            if offset >= partition.end:
                await partition.wait()
                continue
            record = partition.get(offset)
            message = Message(
                record.body,
                topic,
                record.key,
                dict(record.headers) if record.headers else {},
                record.id,
                index,
                offset,
                None,
                record.timestamp,
            )
            key = record.key
            lane = (index, key) if key is not None else (index, None, next(rotation) % count)
            lanes.put(lane, (cursor, message))
            # No await since the put: no worker can have taken the message yet.
            cursor.dispatched(offset)

    # -- workers ---------------------------------------------------------------------------

    async def _work(self) -> None:
        process = self._processor.process
        settled = self._broker._settled
        lanes = self._lanes
        while True:
            lane = await lanes.take()
            if lane is None:
                return
            cursor, message = lane.queue.popleft()
            try:
                try:
                    result = await process(message)
                except Exception as exc:
                    # The pipeline itself failed (not the handler): dead-letter it like Kafka
                    # and RabbitMQ do, rather than leave it pending forever.
                    result = ProcessResult.processor_failed(self._spec, exc, message.attempt)
                if result.outcome is Outcome.DEAD:
                    await self._dead_letter(message, result)
                cursor.finish(message.offset)  # type: ignore[arg-type]
            finally:
                # One message per turn: busy keys share the workers fairly.
                lanes.release(lane)
                cursor.release()
                if not cursor.inflight:
                    settled()

    async def _work_batches(self) -> None:
        assert self._spec.batch is not None
        max_size = self._spec.batch.max_size
        max_wait = self._spec.batch.max_wait
        loop = asyncio.get_running_loop()
        lanes = self._lanes
        while True:
            first = await lanes.take()
            if first is None:
                return
            owned = [first]
            batch: list[_Item] = []
            deadline = loop.time() + max_wait
            try:
                # Fill a batch from the lanes this worker holds, taking more ready lanes
                # while there is room, waiting at most max_wait for more messages.
                while True:
                    for lane in owned:
                        while lane.queue and len(batch) < max_size:
                            batch.append(lane.queue.popleft())
                    if len(batch) >= max_size or self._draining:
                        break
                    more = lanes.take_nowait()
                    if more is not None:
                        owned.append(more)
                        continue
                    if not await lanes.wait_arrival(deadline):
                        break
                await self._handle_batch(batch)
            finally:
                for lane in owned:
                    lanes.release(lane)
                for cursor, _ in batch:
                    cursor.release()
                self._broker._settled()

    async def _handle_batch(self, batch: list[tuple[Cursor, Message]]) -> None:
        messages = [message for _, message in batch]
        try:
            result = await self._processor.process_batch(messages)
        except Exception as exc:
            result = ProcessResult.processor_failed(self._spec, exc, messages[0].attempt)
        if result.outcome is Outcome.DEAD:
            for message in messages:
                await self._dead_letter(message, result)
        for cursor, message in batch:
            cursor.finish(message.offset)  # type: ignore[arg-type]

    async def _dead_letter(self, message: Message, result: ProcessResult) -> None:
        """Dead-letter ``message``, retrying with backoff until it is published.

        Meanwhile this worker (so the keys it serves) waits, as a Kafka partition does: the
        message is never finished without its dead letter. A stop that runs out of time
        cancels the wait; the message then stays uncommitted.
        """
        delay = _DLQ_RETRY_BACKOFF
        while True:
            try:
                await dead_letter(self._broker, self._spec, message, result)
                return
            except Exception as exc:
                _log.error(
                    "%s: cannot dead-letter message %s from %s, retrying in %.1fs "
                    "(later messages of its worker wait): %r",
                    self._spec.display_name,
                    message.id,
                    message.topic,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _DLQ_MAX_BACKOFF)

    # -- stop --------------------------------------------------------------------------------

    def unfinished(self) -> int:
        """Messages of this member's partitions published but not finished yet."""
        return sum(cursor.partition.end - cursor.committed for cursor in self._fetchers)

    async def stop(self, timeout: float) -> None:
        """Drain within ``timeout``, then stop fetching, let the workers end, leave the group.

        The memory log does not outlive the process, so this subscription keeps consuming
        until the whole broker is drained (:meth:`MemoryBroker.drain`); there is no separate
        intake to stop. Messages still unfinished at the deadline (queued, or running and
        then cancelled) are counted in a WARNING and stay uncommitted: another member of the
        group gets them, if there is one.
        """
        if self._draining:
            return
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0)
        drained = await self._broker.drain(max(deadline - loop.time(), 0))
        unfinished = 0 if drained else self.unfinished()
        self.stopping = True
        fetchers = list(self._fetchers.values())
        for fetcher in fetchers:
            fetcher.cancel()
        if fetchers:
            await asyncio.wait(fetchers)
        # Empty once drained; at the deadline, what is still queued will not start.
        for cursor, _ in self._lanes.drop_queued():
            cursor.release()
        self._lanes.close(self._concurrency)  # idle workers exit, busy ones after their turn
        _, busy = await asyncio.wait(self._workers, timeout=max(deadline - loop.time(), 0))
        for worker in busy:
            worker.cancel()
        if busy:
            await asyncio.wait(busy)
        if unfinished:
            _log.warning(
                "%s: stop timeout (%.1fs): %d message(s) not finished (%d cancelled in a "
                "handler); they stay uncommitted for the group, and are lost if the process "
                "exits before another member takes them",
                self._spec.display_name,
                timeout,
                unfinished,
                len(busy),
                extra={"subscriber": self._spec.display_name, "topic": self._spec.topic},
            )
        await self._broker._leave(self)


class MemoryBroker(Broker):
    """An in-process broker: partitions, consumer groups, broadcast, delays, DLQ.

    Args:
        partitions: partitions per topic, 1 to 65536 (:data:`MAX_PARTITIONS`): the unit of
            parallelism across group members.
        name: shown in the endpoint ``memory://<name>``.

    Subscriber options: ``auto_offset_reset`` (``"earliest"``, the default for groups: a new
    group starts with the oldest retained message; ``"latest"``, the default for broadcast:
    only messages published after subscribing). Messages are retained until every group of
    their topic has committed them; a topic nobody subscribed to keeps everything.
    """

    kind = "memory"
    supported_options = frozenset({"auto_offset_reset"})
    #: In process every level appends before ``publish`` returns: nothing to wait for.
    acks_levels: ClassVar[Mapping[Acks, str]] = {
        "none": "emulated: appended before publish returns, as at every level",
        "leader": "emulated: appended before publish returns, as at every level",
        "all": "native",
    }

    def __init__(self, *, partitions: int = 4, name: str = "default") -> None:
        check_counts("MemoryBroker", maximum=MAX_PARTITIONS, partitions=partitions)
        self.partitions = partitions
        self.name = name
        self._topics: dict[str, Topic] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._consumers: set[_Consumer] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._ids = itertools.count(1)
        self._connected = False
        self._settle: asyncio.Event | None = None  # set when a drain may have completed

    @property
    def endpoint(self) -> str:
        """``memory://<name>``."""
        return f"memory://{self.name}"

    async def connect(self) -> None:
        """Open the broker (idempotent)."""
        self._connected = True

    async def close(self) -> None:
        """Flush batching publishers, stop remaining subscriptions at once and drop pending
        delayed messages."""
        if not self._connected:
            return
        await self.close_batch_publishers()
        self._connected = False
        for consumer in list(self._consumers):
            await consumer.stop(0)
        if self._timers:
            _log.warning(
                "memory broker closed with %d delayed message(s) undelivered", len(self._timers)
            )
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    def _check_connected(self) -> None:
        if not self._connected:
            raise RuntimeError(
                "MemoryBroker is not connected: await broker.connect() first "
                "(a BrokerServer does it on start)"
            )

    def _topic(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = Topic(name, self.partitions)
        return topic

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        deliver_at: datetime | None = None,
        partition: int | None = None,
        tag: str | None = None,
    ) -> PublishResult:
        """Append to the topic, or schedule it ``delay`` seconds later or at ``deliver_at``
        (an event-loop timer: lost if the broker closes first, logged); returns at once.

        ``PublishResult.offset`` is ``None`` for a scheduled message (it has none yet).
        ``partition`` (``0 <= partition < partitions``) chooses the partition, else the key
        does (see :meth:`Topic.partition_for`). Every acknowledgement level appends before
        returning: in process, there is nothing to wait for and nothing to lose.

        Raises:
            ValueError: an empty topic, a bad delay or deliver_at, a partition the topic
                lacks.
        """
        headers = tagged_headers(headers, tag)
        self._check_connected()
        if not topic:
            raise ValueError("topic must be a non-empty string")
        wait = remaining(due_time(delay, deliver_at))
        log = self._topic(topic)
        if partition is None:
            chosen = log.partition_for(key)
        elif (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not (0 <= partition < len(log.partitions))
        ):
            raise ValueError(
                f"topic {topic!r} has partitions 0..{len(log.partitions) - 1}, "
                f"got partition={partition!r}"
            )
        else:
            chosen = log.partitions[partition]
        record = Record(
            body, key, dict(headers) if headers else {}, str(next(self._ids)), time.time()
        )
        if wait > 0:
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None

            def deliver() -> None:
                if timer is not None:
                    self._timers.discard(timer)
                chosen.append(record)

            timer = loop.call_later(wait, deliver)
            self._timers.add(timer)
            return PublishResult(topic, chosen.index, None, record.id)
        offset = chosen.append(record)
        return PublishResult(topic, chosen.index, offset, record.id)

    # -- consuming ---------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriberSpec, processor: MessageProcessor) -> Subscription:
        """Join ``spec``'s group (a private one for broadcast) and start consuming."""
        self._check_connected()
        check_options(spec, self.supported_options, self.kind)
        start = option_choice(
            spec,
            "auto_offset_reset",
            get_args(AutoOffsetReset),
            "latest" if spec.broadcast else "earliest",
        )
        topic = self._topic(spec.topic)
        if spec.broadcast:
            group = _Group(topic, start, ephemeral=True)
        else:
            name = spec.group or handler_name(spec.handler)
            group = self._groups.get((spec.topic, name)) or _Group(topic, start, ephemeral=False)
            self._groups[(spec.topic, name)] = group
        consumer = _Consumer(self, spec, processor, group)
        self._consumers.add(consumer)
        async with group.lock:
            group.members.append(consumer)
            await group.rebalance()
        return consumer

    async def _leave(self, consumer: _Consumer) -> None:
        group = consumer.group
        async with group.lock:
            group.members.remove(consumer)
            await group.rebalance()
        self._consumers.discard(consumer)
        if group.ephemeral:
            group.forget()
        self._settled()

    # -- draining ----------------------------------------------------------------------------

    def drained(self) -> bool:
        """True when every subscription has finished everything published to its partitions."""
        for consumer in self._consumers:
            for cursor in consumer._fetchers:
                if cursor.inflight or cursor.committed < cursor.partition.end:
                    return False
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until :meth:`drained`, at most ``timeout`` seconds; return whether it is.

        Subscriptions keep consuming meanwhile, so messages that handlers publish to other
        subscribed topics while draining are drained too.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0)
        while not self.drained():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            settle = self._settle
            if settle is None:
                settle = self._settle = asyncio.Event()
            try:
                async with asyncio.timeout(remaining):
                    await settle.wait()
            except TimeoutError:
                return self.drained()
            if self._settle is settle:
                self._settle = None  # spent: the next wait needs a fresh event
        return True

    def _settled(self) -> None:
        # Called when a partition's in-flight count fell to zero or a member left: the only
        # moments the broker can become drained. One attribute check when nobody drains.
        settle = self._settle
        if settle is not None:
            settle.set()

    def committed(self, topic: str, group: str) -> dict[int, int]:
        """Committed offset per partition of ``group`` on ``topic`` (for tests and health)."""
        found = self._groups.get((topic, group))
        if found is None:
            return {}
        return {cursor.partition.index: cursor.committed for cursor in found.cursors}

    def __repr__(self) -> str:
        return f"MemoryBroker(name={self.name!r}, partitions={self.partitions})"
