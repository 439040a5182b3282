"""One running Kafka subscription: a group consumer, ordered workers, and safe commits.

Flow: the consumer joins the group (:mod:`~framework.transport.kafka.group`); a fetch task
pulls records in batches (``getmany``) and routes them to ``spec.concurrency`` ordered
:class:`~framework.transport.kafka.workers.Worker` lanes; each worker runs the
:class:`~framework.broker.broker.MessageProcessor` (decode, middleware, handler, in-process
retries), dead-letters ``DEAD`` results, then marks the offset finished in the partition's
:class:`~framework.transport.kafka.offsets.PartitionOffsets`. The
:class:`~framework.transport.kafka.commits.Committer` commits the lowest unfinished offset of
every partition every ``commit_interval`` seconds or after ``commit_every`` finished messages.

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
from collections.abc import Callable, Coroutine, Iterable
from operator import attrgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult
from framework.broker.message import Message
from framework.broker.processor import DeadLetterSink
from framework.broker.subscriber import SubscriberSpec
from framework.observer import LagReading, current_observer
from framework.transport.kafka import group
from framework.transport.kafka.assignment import Assignment
from framework.transport.kafka.commits import Committer
from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import AutoOffsetReset, KafkaOptions, Ordering
from framework.transport.kafka.records import to_message
from framework.transport.kafka.workers import Router, Worker

__all__ = ["KafkaSubscription"]

_log = logging.getLogger("pykratos.kafka")
_offset = attrgetter("offset")
_DEAD = Outcome.DEAD
_MAX_BACKOFF = 5.0


class KafkaSubscription:
    """A running subscription returned by :meth:`KafkaBroker.subscribe` (use :meth:`stop`).

    Args:
        spec: the subscriber.
        processor: decodes and handles each message (or batch).
        options: the broker's options.
        dead_letter: publishes a ``DEAD`` message to the dead-letter topic
            (``framework.broker.publisher.dead_letter`` bound to the broker and spec); raising
            means "not published, try again".
        group_id: the consumer group to join.
        auto_offset_reset: where the group starts without a committed offset.
        ordering: how records are routed to workers (see :mod:`framework.transport.kafka.workers`).
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
        self._workers = [Worker(i) for i in range(max(1, spec.concurrency))]
        self._router = Router(self._workers, ordering)
        label = spec.display_name
        self._assignment = Assignment(self._router, label, options.rebalance_drain_timeout)
        self._committer = Committer(
            label, group_id, interval=options.commit_interval, every=options.commit_every
        )
        self._space = asyncio.Event()  # set while fewer than max_buffered records wait
        self._space.set()
        self._buffered = 0
        self._resume_at = max(1, options.max_buffered // 2)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._fetch_task: asyncio.Task[None] | None = None
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
        for worker in self._workers:
            worker.task = asyncio.create_task(
                self._guarded(f"worker {worker.index}", work(worker)),
                name=f"kafka-worker-{worker.index}",
            )
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
        loops = (
            ("fetch", self._fetch_loop(consumer)),
            ("commit", self._committer.run(consumer, self._assignment.partitions)),
        )
        for name, body in loops:
            self._tasks.append(asyncio.create_task(self._guarded(name, body), name=f"kafka-{name}"))
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

    async def _guarded(self, what: str, body: Coroutine[Any, Any, None]) -> None:
        # Expected failures are handled inside each loop; this only makes a bug loud.
        try:
            await body
        except Exception:
            _log.exception(
                "%s: Kafka %s task crashed; partitions it served stop progressing",
                self.spec.display_name,
                what,
            )
            raise

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
        workers = [w.task for w in self._workers if w.task is not None]
        for worker in self._workers:
            worker.wake.set()
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
        route = self._router.route
        space = self._space
        limit = self._options.max_buffered
        timeout_ms = self._options.fetch_timeout_ms
        max_records = self._options.max_records
        backoff = 0.1
        while True:
            if self._buffered >= limit:
                space.clear()
                await space.wait()
                continue
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
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
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
                self._buffered += len(records)
                route(tp, state, records)

    def _release(self, count: int) -> None:
        self._buffered -= count
        if self._buffered < self._resume_at:
            self._space.set()

    # -- workers ---------------------------------------------------------------------------

    async def _next_chunk(self, worker: Worker) -> bool:
        """Wait until ``worker`` has queued work; False once closing with nothing queued."""
        while not worker.queue:
            if self._stopping:
                return False
            worker.wake.clear()
            await worker.wake.wait()
        return True

    async def _work(self, worker: Worker) -> None:
        # The per-message hot path: keep the loop body to what each message needs.
        queue = worker.queue
        process = self._processor.process
        check_drained = self._assignment.check_drained
        while await self._next_chunk(worker):
            state, records = queue.popleft()
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
            finally:
                self._release(len(records))
                # Counted per chunk (at most max_records); commit_interval covers slow chunks.
                self._committer.finished(handled)

    async def _work_batch(self, worker: Worker) -> None:
        policy = self.spec.batch
        assert policy is not None
        queue = worker.queue
        loop = asyncio.get_running_loop()
        while await self._next_chunk(worker):
            taken: list[tuple[PartitionOffsets, Any]] = []
            deadline = loop.time() + policy.max_wait
            try:
                # Fill a batch from this worker's queue, waiting at most max_wait for more.
                while True:
                    while queue and len(taken) < policy.max_size:
                        state, records = queue.popleft()
                        room = policy.max_size - len(taken)
                        if len(records) > room:
                            queue.appendleft((state, records[room:]))
                            records = records[:room]
                        taken.extend((state, record) for record in records)
                    remaining = deadline - loop.time()
                    if len(taken) >= policy.max_size or remaining <= 0 or self._stopping:
                        break
                    worker.wake.clear()
                    try:
                        async with asyncio.timeout(remaining):
                            await worker.wake.wait()
                    except TimeoutError:
                        break
                live = [
                    (state, record)
                    for state, record in taken
                    if state.stop_at is None or record.offset < state.stop_at
                ]
                if live:
                    await self._handle_batch(live)
            finally:
                self._release(len(taken))

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
