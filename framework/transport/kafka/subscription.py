"""One running Kafka subscription: a group consumer, ordered workers, and safe commits.

Flow: a fetch task pulls records in batches (``getmany``) and routes them to
``spec.concurrency`` ordered :class:`~framework.transport.kafka.workers.Worker` lanes; each
worker runs the :class:`~framework.broker.broker.MessageProcessor` (decode, middleware,
handler, in-process retries), dead-letters ``DEAD`` results, then marks the offset finished
in the partition's :class:`~framework.transport.kafka.offsets.PartitionOffsets`. A commit task
commits the lowest unfinished offset of every partition every ``commit_interval`` seconds or
after ``commit_every`` finished messages.

Stopping and revocation (rebalance) are graceful: no new message is started at or beyond
the highest offset already started in each partition; messages in flight, and unstarted ones
below that offset (gaps left by per-key workers), are finished (within the stop timeout, or
``rebalance_drain_timeout``); then the offsets are committed and, on stop, the consumer
leaves the group.

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
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from operator import attrgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import InvalidSessionTimeoutError, KafkaConnectionError, KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from framework.transport.kafka.errors import KafkaJoinError, KafkaUnavailableError
from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import AutoOffsetReset, KafkaOptions, Ordering
from framework.transport.kafka.records import to_message
from framework.transport.kafka.workers import Router, Worker

__all__ = ["DeadLetter", "KafkaSubscription"]

#: Publishes a DEAD message to the dead-letter topic (``framework.broker.publisher.dead_letter``
#: bound to the broker and spec); raising means "not published, try again".
DeadLetter = Callable[[Message, ProcessResult], Awaitable[Any]]

_log = logging.getLogger("pykratos.kafka")
_offset = attrgetter("offset")
_DEAD = Outcome.DEAD
_MAX_BACKOFF = 5.0
# A stop must not hang on a dead broker: bounds for the final commit and the group leave.
_FINAL_COMMIT_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 5.0


async def _leave_generation_zero(consumer: AIOKafkaConsumer, group_id: str) -> None:
    """Send the LeaveGroup that aiokafka skips when the group generation is 0.

    aiokafka only leaves a group whose generation is > 0 (Kafka starts at 1); Tansu starts at
    0, so without this a restarted member waits several seconds for its predecessor's session
    to expire before the group forms again. Reaches into aiokafka internals, guarded so that
    another aiokafka version merely skips it.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    client = getattr(consumer, "_client", None)
    if coordinator is None or client is None:
        return
    generation = getattr(coordinator, "generation", None)
    member_id = getattr(coordinator, "member_id", "")
    node_id = getattr(coordinator, "coordinator_id", None)
    if generation != 0 or not member_id or node_id is None:
        return
    await coordinator.close()  # stops heartbeats first; consumer.stop() then skips it
    try:
        await client.send(node_id, LeaveGroupRequest(group_id, member_id))
    except KafkaError as exc:
        _log.debug("LeaveGroup for %r failed: %r", group_id, exc)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._subscription._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._subscription._on_assigned(assigned)


class KafkaSubscription:
    """A running subscription returned by :meth:`KafkaBroker.subscribe` (use :meth:`stop`)."""

    def __init__(
        self,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        options: KafkaOptions,
        dead_letter: DeadLetter,
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
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._workers = [Worker(i) for i in range(max(1, spec.concurrency))]
        self._router = Router(self._workers, ordering)
        self._assigned = asyncio.Event()
        self._space = asyncio.Event()  # set while fewer than max_buffered records wait
        self._space.set()
        self._buffered = 0
        self._resume_at = max(1, options.max_buffered // 2)
        self._finished = 0  # messages finished since the last commit request
        self._commit_now = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._drains: dict[PartitionOffsets, asyncio.Event] = {}  # revoked, still finishing
        self._closing = False
        self._stopped = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member currently owns."""
        return frozenset(self._partitions)

    async def start(self) -> None:
        """Join the group and start consuming; return once partitions are assigned.

        Raises :class:`KafkaUnavailableError` when the cluster cannot be reached and
        :class:`KafkaJoinError` when no assignment arrives within ``join_timeout``.
        """
        work = self._work_batch if self.spec.batch is not None else self._work
        for worker in self._workers:
            worker.task = asyncio.create_task(
                self._guarded(f"worker {worker.index}", work(worker)),
                name=f"kafka-worker-{worker.index}",
            )
        try:
            try:
                await self._join(self._options.session_timeout_ms)
            except InvalidSessionTimeoutError:
                _log.warning(
                    "broker rejected session_timeout_ms=%d for group %r (Apache Kafka's "
                    "group.min.session.timeout.ms); retrying with %d",
                    self._options.session_timeout_ms,
                    self.group_id,
                    self._options.fallback_session_timeout_ms,
                )
                await self._join(self._options.fallback_session_timeout_ms)
        except BaseException:
            await self.stop(0)
            raise
        for name, body in (("fetch", self._fetch_loop()), ("commit", self._commit_loop())):
            self._tasks.append(asyncio.create_task(self._guarded(name, body), name=f"kafka-{name}"))

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

    async def _join(self, session_timeout_ms: int) -> None:
        options = self._options
        consumer = AIOKafkaConsumer(
            bootstrap_servers=options.servers,
            client_id=options.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._auto_offset_reset,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=min(options.heartbeat_interval_ms, session_timeout_ms // 3),
            max_poll_interval_ms=options.max_poll_interval_ms,
            max_partition_fetch_bytes=options.max_partition_fetch_bytes,
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            request_timeout_ms=options.request_timeout_ms,
        )
        consumer.subscribe([self.spec.topic], listener=_Listener(self))
        self._consumer = consumer
        try:
            async with asyncio.timeout(options.join_timeout):
                await consumer.start()
                await self._assigned.wait()
                # Resolve where each partition starts now: with "latest", a message published
                # after subscribe() returned must not fall before a lazily resolved position.
                for tp in consumer.assignment():
                    await consumer.position(tp)
        except TimeoutError:
            await self._close_consumer()
            raise KafkaJoinError(
                f"consumer group {self.group_id!r} got no partition assignment for topic "
                f"{self.spec.topic!r} from {options.bootstrap_servers} within "
                f"{options.join_timeout:g}s"
            ) from None
        except KafkaConnectionError as exc:
            await self._close_consumer()
            raise KafkaUnavailableError(options.bootstrap_servers, exc) from exc
        except BaseException:
            await self._close_consumer()
            raise

    async def stop(self, timeout: float) -> None:
        """Stop fetching, give in-flight messages ``timeout`` seconds, commit what finished,
        leave the group. Unfinished messages stay uncommitted and will be redelivered."""
        if self._stopped:
            return
        self._stopped = True
        self._closing = True
        fetch_and_commit, self._tasks = self._tasks, []
        for task in fetch_and_commit:
            task.cancel()
        await asyncio.gather(*fetch_and_commit, return_exceptions=True)
        for state in self._partitions.values():
            state.close()  # workers still fill the gaps below what already started
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
        if self._consumer is not None and self._partitions:
            try:
                async with asyncio.timeout(_FINAL_COMMIT_TIMEOUT):
                    await self._commit(list(self._partitions.items()))
            except TimeoutError:
                _log.warning(
                    "%s: final commit for group %r timed out; finished messages since the "
                    "last commit will be redelivered",
                    self.spec.display_name,
                    self.group_id,
                )
        await self._close_consumer()

    async def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await _leave_generation_zero(consumer, self.group_id)
                    await consumer.stop()
            except Exception as exc:  # closing must not hide the original outcome
                _log.warning("error while closing Kafka consumer %r: %r", self.group_id, exc)

    # -- rebalance -------------------------------------------------------------------------

    def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self._partitions:
                self._partitions[tp] = PartitionOffsets()
        self._router.assign(self._partitions)
        _log.info(
            "%s: group %r assigned %s",
            self.spec.display_name,
            self.group_id,
            sorted(tp.partition for tp in self._partitions),
        )
        self._assigned.set()

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        states = [(tp, self._partitions.pop(tp)) for tp in revoked if tp in self._partitions]
        if not states:
            return
        draining = []
        for _, state in states:
            state.close()
            if not state.drained():
                draining.append(self._drains.setdefault(state, asyncio.Event()).wait())
        # In-flight messages of the revoked partitions (and unstarted gaps below them) get
        # rebalance_drain_timeout to finish, so that the commit covers them.
        if draining:
            try:
                async with asyncio.timeout(self._options.rebalance_drain_timeout):
                    await asyncio.gather(*draining)
            except TimeoutError:
                _log.warning(
                    "%s: in-flight messages of revoked partitions did not finish within "
                    "%.1fs; the new owner will process them again",
                    self.spec.display_name,
                    self._options.rebalance_drain_timeout,
                )
        for _, state in states:
            self._drains.pop(state, None)
        await self._commit(states)

    # -- fetching --------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        getmany = consumer.getmany
        partitions = self._partitions
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
            if self._closing:
                return False
            worker.wake.clear()
            await worker.wake.wait()
        return True

    def _finished_one(self, state: PartitionOffsets) -> None:
        # Off the hot path: a closed partition may have become drained.
        event = self._drains.get(state)
        if event is not None and state.drained():
            event.set()

    async def _work(self, worker: Worker) -> None:
        # The per-message hot path: keep the loop body to what each message needs.
        queue = worker.queue
        process = self._processor.process
        commit_every = self._options.commit_every
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
                        result = self._processor_failed(message, exc)
                    if result.outcome is _DEAD and not await self._dead(state, message, result):
                        break
                    finish(offset)
                    handled += 1
                    stop_at = state.stop_at  # closed while the handler ran?
                    if stop_at is not None:
                        self._finished_one(state)
            finally:
                self._release(len(records))
                # Counted per chunk (at most max_records); commit_interval covers slow chunks.
                self._finished += handled
                if self._finished >= commit_every:
                    self._commit_now.set()

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
                    if len(taken) >= policy.max_size or remaining <= 0 or self._closing:
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
            result = self._processor_failed(messages[0], exc)
        for (state, record), message in zip(items, messages, strict=True):
            if result.outcome is _DEAD and not await self._dead(state, message, result):
                return
            state.finish(record.offset)
            if state.stop_at is not None:
                self._finished_one(state)
        self._finished += len(items)
        if self._finished >= self._options.commit_every:
            self._commit_now.set()

    def _processor_failed(self, message: Message, exc: Exception) -> ProcessResult:
        # A processor reports handler failures as results; an exception here is a bug in
        # the pipeline itself. Dead-letter the message rather than wedge the partition.
        _log.exception("%s: processor raised on %s", self.spec.display_name, message.id)
        return ProcessResult(
            _DEAD, message.attempt, f"processor error: {exc!r}", type(exc).__name__
        )

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

    # -- commits ---------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        interval = self._options.commit_interval
        wanted = self._commit_now
        while True:
            try:
                async with asyncio.timeout(interval):
                    await wanted.wait()
            except TimeoutError:
                pass
            wanted.clear()
            self._finished = 0
            await self._commit(list(self._partitions.items()))

    async def _commit(self, states: list[tuple[TopicPartition, PartitionOffsets]]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        async with self._commit_lock:
            offsets = {}
            for tp, state in states:
                offset = state.to_commit()
                if offset is not None:
                    offsets[tp] = (state, offset)
            if not offsets:
                return
            try:
                await consumer.commit({tp: offset for tp, (_, offset) in offsets.items()})
            except (KafkaError, OSError) as exc:
                # Not committed is safe (redelivery); the next commit carries the offsets.
                _log.warning(
                    "%s: offset commit for group %r failed: %r",
                    self.spec.display_name,
                    self.group_id,
                    exc,
                )
                return
            for state, offset in offsets.values():
                state.committed = offset
