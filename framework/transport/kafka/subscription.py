"""One running Kafka subscription: a group consumer, ordered workers, and safe commits.

Flow: the consumer joins the group (:mod:`~framework.transport.kafka.group`); a fetch task
pulls records in batches (``getmany``) and routes them to ordered lanes
(:mod:`~framework.transport.kafka.workers`), served by ``spec.concurrency`` workers; each
worker runs the
:class:`~framework.broker.broker.MessageProcessor` (decode, middleware, handler, in-process
retries), dead-letters ``DEAD`` results, then marks the offset finished in the partition's
:class:`~framework.transport.kafka.offsets.PartitionOffsets`. The
:class:`~framework.transport.kafka.commits.Committer` commits the lowest unfinished offset of
every partition every ``commit_interval`` seconds or after ``commit_every`` finished messages.

Back-pressure is per partition (:mod:`~framework.transport.kafka.backpressure`): at most
``max_buffered`` fetched records wait for the workers; a partition whose handler is slow or
blocked and keeps that buffer full is paused alone (``consumer.pause``) until it caught up,
while the others keep being fetched. Its lane holds one worker, never the others.

Stopping and revocation (rebalance, :mod:`~framework.transport.kafka.assignment`) are
graceful: no new message is started at or beyond the highest offset already started in each
partition; messages in flight, and unstarted ones below that offset (gaps left by per-key
workers), are finished (within the stop timeout, or ``rebalance_drain_timeout``); then the
offsets are committed and, on stop, the consumer leaves the group.

Delivery is at-least-once. What a restarted (or new) owner gets again:

* after a graceful stop or a revocation that finished in time: nothing that finished;
* messages still running when that timeout expired (cancelled), and everything after
  them in their partition that was already handled;
* after a crash: additionally what finished since the last commit, at most
  ``commit_interval`` seconds or ``commit_every`` messages' worth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from functools import partial
from operator import attrgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult
from framework.broker.health import Health, keep_running
from framework.broker.message import Message
from framework.broker.processor import DeadLetterSink
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tag_matches
from framework.observer import LagReading, current_observer
from framework.transport.kafka import group
from framework.transport.kafka.assignment import Assignment
from framework.transport.kafka.backpressure import Backpressure
from framework.transport.kafka.commits import Committer
from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import AutoOffsetReset, KafkaOptions, Ordering
from framework.transport.kafka.records import to_message
from framework.transport.kafka.workers import Lane, Lanes

__all__ = ["KafkaSubscription"]

_log = logging.getLogger("pykratos.kafka")
_offset = attrgetter("offset")
_DEAD = Outcome.DEAD
_MAX_BACKOFF = 5.0
# Consecutive failed fetches (group coordinator errors and the like, which aiokafka does not
# retry by itself) after which the subscription reports itself unhealthy.
_FETCH_FAILURES_UNHEALTHY = 5


class KafkaSubscription:
    """A running subscription returned by :meth:`KafkaBroker.subscribe` (use :meth:`stop`).

    Args:
        spec: the subscriber.
        processor: decodes and handles each message (or batch).
        options: the broker's options.
        dead_letter: publishes a ``DEAD`` message to the dead-letter topic (a
            :class:`~framework.transport.kafka.deadletter.KafkaDeadLetter`, which handles
            permanent refusals itself); raising means "transient failure, try again".
        group_id: the consumer group to join.
        auto_offset_reset: where the group starts without a committed offset.
        ordering: how records are routed to workers (see :mod:`framework.transport.kafka.workers`).

    Its fetch, commit and worker tasks are restarted if they ever end on their own (logged
    at WARNING); :attr:`health` fails while one keeps dying or fetches keep failing.
    """

    def __init__(
        self,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        options: KafkaOptions,
        dead_letter: DeadLetterSink,
        *,
        group_id: str,
        auto_offset_reset: AutoOffsetReset,
        ordering: Ordering,
    ) -> None:
        self.spec = spec
        self.group_id = group_id
        self._processor = processor
        self._options = options
        self._dead_letter = dead_letter
        self._auto_offset_reset = auto_offset_reset
        self._consumer: AIOKafkaConsumer | None = None
        self._lanes = Lanes(spec.concurrency, ordering)
        self._workers: list[asyncio.Task[None]] = []
        label = spec.display_name
        self._assignment = Assignment(self._lanes, label, options.rebalance_drain_timeout)
        self._committer = Committer(
            label, group_id, interval=options.commit_interval, every=options.commit_every
        )
        self._backpressure = Backpressure(
            self._assignment.partitions,
            limit=options.max_buffered,
            pause_after=options.pause_after,
            label=label,
        )
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._fetch_task: asyncio.Task[None] | None = None
        self.health = Health(spec.display_name)
        self._stop_lag: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member currently owns."""
        return frozenset(self._assignment.partitions)

    async def start(self) -> None:
        """Join the group and start consuming; return once partitions are assigned.

        Raises :class:`~framework.transport.kafka.errors.KafkaUnavailableError` when the
        cluster cannot be reached and :class:`~framework.transport.kafka.errors.KafkaJoinError`
        when no assignment arrives within ``join_timeout``.
        """
        work = self._work_batch if self.spec.batch is not None else self._work
        for index in range(self._lanes.concurrency):
            self._workers.append(self._keep_running(f"worker {index}", work))
        try:
            self._consumer = consumer = await group.join(
                self._options,
                group_id=self.group_id,
                topic=self.spec.topic,
                auto_offset_reset=self._auto_offset_reset,
                on_assigned=self._on_assigned,
                on_revoked=self._on_revoked,
            )
        except BaseException:
            await self.stop(0)
            raise
        self._tasks.append(self._keep_running("fetch", partial(self._fetch_loop, consumer)))
        self._tasks.append(
            self._keep_running(
                "commit",
                partial(self._committer.run, consumer, self._assignment.partitions),
            )
        )
        self._fetch_task = self._tasks[0]
        observer = current_observer()
        if observer is not None:
            self._stop_lag = observer.lag_source(self._lag)

    def _lag(self) -> list[LagReading]:
        """Per owned partition: the high watermark of the last fetch minus the offset a commit
        may reach (what is neither processed nor skipped). Read at metrics collection."""
        consumer = self._consumer
        if consumer is None:
            return []
        readings: list[LagReading] = []
        for tp, state in list(self._assignment.partitions.items()):
            highwater = consumer.highwater(tp)
            position = state.committable
            if position is None:
                position = state.committed
            if highwater is None or position is None:
                continue
            readings.append(
                ("kafka", tp.topic, self.group_id, tp.partition, max(0, highwater - position))
            )
        return readings

    def _keep_running(self, what: str, body: Any) -> asyncio.Task[None]:
        # Expected failures are handled inside each loop; an end nobody asked for is a bug:
        # logged at WARNING with its stack, and the loop starts again. A crashed worker's
        # unfinished records stay uncommitted (redelivered after a restart or rebalance).
        return keep_running(
            body,
            what=f"{self.spec.display_name}: Kafka {what} task",
            stopping=lambda: self._stopping,
            logger=_log,
            health=self.health,
        )

    async def stop_intake(self) -> None:
        """Stop fetching at once (the member stays in the group); records already fetched
        are handled by :meth:`stop`, those not fetched stay for the group. Idempotent."""
        fetch, self._fetch_task = self._fetch_task, None
        if fetch is not None:
            fetch.cancel()
            await asyncio.gather(fetch, return_exceptions=True)

    async def stop(self, timeout: float) -> None:
        """Stop fetching, give in-flight messages ``timeout`` seconds, commit what finished,
        leave the group. Unfinished messages stay uncommitted and will be redelivered."""
        if self._stopping:
            return
        self._stopping = True
        if self._stop_lag is not None:
            self._stop_lag()
            self._stop_lag = None
        fetch_and_commit, self._tasks = self._tasks, []
        for task in fetch_and_commit:
            task.cancel()
        await asyncio.gather(*fetch_and_commit, return_exceptions=True)
        self._assignment.close()
        workers = self._workers
        self._lanes.close(len(workers))  # each worker finishes the lanes queued, then returns
        if workers:
            _, late = await asyncio.wait(workers, timeout=max(timeout, 0))
            if late:
                _log.warning(
                    "%s: %d worker(s) still busy after %.1fs, cancelling; their messages "
                    "stay uncommitted and will be redelivered",
                    self.spec.display_name,
                    len(late),
                    timeout,
                )
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        consumer = self._consumer
        if consumer is not None:
            partitions = self._assignment.partitions
            if partitions:
                await self._committer.commit_final(consumer, list(partitions.items()))
            self._consumer = None
            await group.leave(consumer, self.group_id)

    # -- rebalance -------------------------------------------------------------------------

    def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._assignment.assign(assigned)
        _log.info(
            "%s: group %r assigned %s",
            self.spec.display_name,
            self.group_id,
            sorted(tp.partition for tp in self._assignment.partitions),
        )

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        states = await self._assignment.revoke(revoked)
        if states:
            await self._committer.commit(self._consumer, states)

    # -- fetching --------------------------------------------------------------------------

    async def _fetch_loop(self, consumer: AIOKafkaConsumer) -> None:
        getmany = consumer.getmany
        partitions = self._assignment.partitions  # updated in place by rebalances
        route = self._lanes.route
        backpressure = self._backpressure
        backpressure.consumer = consumer
        added = backpressure.added
        timeout_ms = self._options.fetch_timeout_ms
        max_records = self._options.max_records
        backoff = 0.1
        failures = 0
        while True:
            if backpressure.buffered >= self._options.max_buffered:
                await backpressure.wait_for_room()
            try:
                batches = await getmany(timeout_ms=timeout_ms, max_records=max_records)
            except Exception as exc:
                _log.error(
                    "%s: fetch from %r failed, retrying in %.1fs: %r",
                    self.spec.display_name,
                    self.spec.topic,
                    backoff,
                    exc,
                )
                failures += 1
                if failures >= _FETCH_FAILURES_UNHEALTHY:
                    self.health.fail("fetch", f"{failures} fetches in a row failed: {exc!r}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if failures:
                failures = 0
                self.health.ok("fetch")
            backoff = 0.1
            for tp, records in batches.items():
                state = partitions.get(tp)
                if state is None or state.stop_at is not None or not records:
                    continue
                if not state.accepts(records[0].offset):  # stale data from before a rebalance
                    records = [r for r in records if state.accepts(r.offset)]
                    if not records:
                        continue
                state.track(map(_offset, records))
                added(state, len(records))
                route(tp, state, records)

    # -- workers ---------------------------------------------------------------------------

    async def _work(self) -> None:
        # The per-message hot path: keep the loop body to what each message needs.
        lanes = self._lanes
        process = self._processor.process
        check_drained = self._assignment.check_drained
        carry: Lane | None = None
        while True:
            lane = carry if carry is not None else await lanes.take()
            if lane is None:
                return
            state, records = lane.queue.popleft()
            finish = state.finish
            handled = 0
            stop_at = state.stop_at
            try:
                for record in records:
                    offset = record.offset
                    if stop_at is not None and offset >= stop_at:
                        break
                    if offset > state.started:
                        state.started = offset
                    message = to_message(record)
                    try:
                        result = await process(message)
                    except Exception as exc:
                        result = ProcessResult.processor_failed(self.spec, exc, message.attempt)
                    if result.outcome is _DEAD and not await self._dead(state, message, result):
                        break
                    finish(offset)
                    handled += 1
                    stop_at = state.stop_at  # closed while the handler ran?
                    if stop_at is not None:
                        check_drained(state)  # off the hot path: only once closed
            except BaseException:
                self._abandon([lane])
                raise
            finally:
                self._backpressure.released(state, len(records))
                # Counted per chunk (at most max_records); commit_interval covers slow chunks.
                self._committer.finished(handled)
            # One chunk per turn, so busy lanes share the workers; once stopping, a worker
            # finishes the lane it holds (lanes queued again would come after the close).
            carry = lane if lanes.release(lane, keep=self._stopping) else None

    async def _work_batch(self) -> None:
        policy = self.spec.batch
        assert policy is not None
        lanes = self._lanes
        loop = asyncio.get_running_loop()
        carry: list[Lane] = []
        while True:
            if carry:
                owned = carry
            else:
                first = await lanes.take()
                if first is None:
                    return
                owned = [first]
            taken: list[tuple[PartitionOffsets, Any]] = []
            deadline = loop.time() + policy.max_wait
            try:
                # Fill a batch from the lanes this worker holds, taking more ready lanes
                # while there is room, waiting at most max_wait for more records.
                while True:
                    for lane in owned:
                        queue = lane.queue
                        while queue and len(taken) < policy.max_size:
                            state, records = queue.popleft()
                            room = policy.max_size - len(taken)
                            if len(records) > room:
                                queue.appendleft((state, records[room:]))
                                records = records[:room]
                            taken.extend((state, record) for record in records)
                    if len(taken) >= policy.max_size or self._stopping:
                        break
                    more = lanes.take_nowait()
                    if more is not None:
                        owned.append(more)
                        continue
                    if not await lanes.wait_arrival(deadline):
                        break
                live = [
                    (state, record)
                    for state, record in taken
                    if state.stop_at is None or record.offset < state.stop_at
                ]
                if live:
                    await self._handle_batch(live)
            except BaseException:
                self._abandon(owned)
                raise
            finally:
                counts: dict[PartitionOffsets, int] = {}
                for state, _ in taken:
                    counts[state] = counts.get(state, 0) + 1
                for state, count in counts.items():
                    self._backpressure.released(state, count)
            carry = [lane for lane in owned if lanes.release(lane, keep=self._stopping)]

    def _abandon(self, owned: list[Lane]) -> None:
        # A worker that dies (a bug, or a cancellation nobody asked for) hands its lanes
        # back, so the worker that replaces it goes on with their next records. What it
        # held in hand stays unfinished: the partition's commit waits at that offset until
        # a rebalance or restart redelivers it.
        for lane in owned:
            self._lanes.release(lane)

    async def _handle_batch(self, items: list[tuple[PartitionOffsets, Any]]) -> None:
        for state, record in items:
            if record.offset > state.started:
                state.started = record.offset
        messages = [to_message(record) for _, record in items]
        try:
            result = await self._processor.process_batch(messages)
        except Exception as exc:
            result = ProcessResult.processor_failed(self.spec, exc, messages[0].attempt)
        for (state, record), message in zip(items, messages, strict=True):
            if result.outcome is _DEAD and not await self._dead(state, message, result):
                return
            state.finish(record.offset)
            if state.stop_at is not None:
                self._assignment.check_drained(state)
        self._committer.finished(len(items))

    async def _dead(self, state: PartitionOffsets, message: Message, result: ProcessResult) -> bool:
        """Dead-letter ``message``, retrying until published; False if the partition was
        revoked or the subscription is stopping (the message then stays unfinished)."""
        if not tag_matches(self.spec.tags, message):
            return True  # in a failed batch, but filtered out by the subscriber's tags
        delay = self._options.dlq_retry_backoff
        while True:
            try:
                await self._dead_letter(message, result)
                return True
            except Exception as exc:
                if state.stop_at is not None:
                    _log.error(
                        "%s: cannot dead-letter %s (%r); left uncommitted for redelivery",
                        self.spec.display_name,
                        message.id,
                        exc,
                    )
                    return False
                _log.error(
                    "%s: cannot dead-letter %s, retrying in %.1fs (the partition waits): %r",
                    self.spec.display_name,
                    message.id,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
