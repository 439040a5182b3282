"""One running Redis Streams subscription: read, dispatch to ordered workers, acknowledge.

Flow (clustering subscriber, one consumer group): a reader task loops on ``XREADGROUP GROUP
<group> <consumer> COUNT <n> BLOCK <ms> STREAMS <stream> >``, sending the ``XACK`` of the
entries finished since its last read in the same pipeline (:mod:`~framework.transport.redis.
acks`). Entries go to ``spec.concurrency`` worker lanes, chosen by the message key (a stable
CRC-32, so messages with the same key are handled one after the other, in order); keyless
ones go round-robin. A worker runs the :class:`~framework.broker.broker.MessageProcessor`
(decode, middleware, handler, in-process retries with the spec's backoff), dead-letters a
``DEAD`` result to ``<stream>.dlq`` (a copy with the DLQ headers as ``h:`` fields), then
marks the entry finished. At most ``prefetch`` entries are read and not finished.

Per-key order holds for the entries one consumer reads; an entry recovered from a dead
consumer is handled when it is claimed, after later entries with the same key that other
consumers already handled (as with any redelivery).

Recovery: every ``claim_interval`` seconds a ticker keeps the entries this consumer holds
fresh (``XCLAIM ... JUSTID``, which resets their idle time, so a slow handler keeps its
entry) and claims entries idle for ``claim_idle_ms`` on other consumers (``XAUTOCLAIM``: a
consumer that died). A claimed entry's attempt number is its delivery count
(``XPENDING``): an entry that keeps killing its consumers is dead-lettered once that count
exceeds ``retry.max_attempts``, without running the handler again.

Broadcast subscribers read with plain ``XREAD`` from the entry after the stream's last one
at subscribe time: every instance gets every entry, nothing is acknowledged, and after a
reconnect reading resumes after the last entry seen (no gap, unlike Pub/Sub).

Reconnection: a dropped connection (``CLIENT KILL``, a Redis restart) makes the read fail;
the reader logs one WARNING, retries every ``reconnect_interval`` seconds, recreates the
group if it vanished, and logs one WARNING when reading works again.

Stop: ``stop_intake`` ends reading (after the read in progress, at most ``block_ms``);
``stop`` lets running handlers finish within the timeout, acknowledges what finished, and
returns the entries read but not started: they are marked idle (``XCLAIM ... IDLE``, the
delivery count unchanged) so another consumer claims them on its next round. Entries still
running when the timeout expires stay pending and are claimed after ``claim_idle_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult
from framework.broker.health import Health, keep_running
from framework.broker.message import Message
from framework.broker.processor import DeadLetterSink
from framework.broker.subscriber import SubscriberSpec
from framework.broker.workers import WorkerChooser, fill_batch, stop_workers
from framework.transport.redis.acks import Acks
from framework.transport.redis.entries import to_message
from framework.transport.redis.errors import StreamGroupError
from framework.transport.redis.options import RedisOptions, StreamSettings

__all__ = ["RedisSubscription"]

log = logging.getLogger("pykratos.redis")

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_BACKOFF = 5.0


class RedisSubscription:
    """A running subscription returned by :meth:`RedisBroker.subscribe` (use :meth:`stop`).

    Attributes:
        settings: the stream, group and limits it reads with.
        consumer: its consumer name in the group (unique per subscription).
        health: fails while the group cannot be recreated or a task keeps dying (a lost
            connection is not a health problem: every instance would go unready at once).
    """

    def __init__(
        self,
        *,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        options: RedisOptions,
        settings: StreamSettings,
        client: Redis,
        dead_letter: DeadLetterSink,
        consumer: str,
        on_stopped: Callable[[RedisSubscription], None] | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.consumer = consumer
        self.health = Health(spec.display_name)
        self._processor = processor
        self._options = options
        self._client = client
        self._dead_letter = dead_letter
        self._on_stopped = on_stopped
        self._topic = spec.topic
        self._group = settings.group
        self._acks = (
            None
            if settings.group is None
            else Acks(
                client,
                settings.stream,
                settings.group,
                batch=options.ack_batch,
                interval=options.ack_interval,
            )
        )
        self._inflight: dict[str, float] = {}  # entry id -> when taken (monotonic)
        self._room = asyncio.Event()
        self._room.set()
        self._lanes: list[asyncio.Queue[Message | None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._choose = WorkerChooser()
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._last_id = "0-0"  # broadcast: last entry seen
        self._connected = True
        self._intake_stopped = False
        self._stopping = False

    # -- start -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the group if missing (or find the stream's end for broadcast), then start
        the workers, the reader and the claim ticker."""
        if self._group is None:
            self._last_id = await self._stream_end()
        else:
            await self._ensure_group()
        work = self._work if self.spec.batch is None else self._work_batches
        for n in range(self.spec.concurrency):
            lane: asyncio.Queue[Message | None] = asyncio.Queue()
            self._lanes.append(lane)
            held: list[str] = []  # the entries this worker is handling
            self._workers.append(
                self._supervised(
                    partial(work, lane, held),
                    f"[{n}]",
                    lambda: self._stopping,
                    on_restart=partial(self._release, held),
                )
            )
        intake_stopped = lambda: self._intake_stopped  # noqa: E731
        self._reader = self._supervised(self._read_loop, ":read", intake_stopped)
        if self._group is not None:
            self._ticker = self._supervised(self._tick_loop, ":claim", intake_stopped)

    def _supervised(
        self,
        body: Callable[[], Any],
        suffix: str,
        stopping: Callable[[], bool],
        on_restart: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        # A task ended by a bug is logged and started again (framework.broker.health).
        return keep_running(
            body,
            what=f"{self.spec.display_name}{suffix}",
            stopping=stopping,
            logger=log,
            health=self.health,
            on_restart=on_restart,
        )

    def _release(self, held: list[str]) -> None:
        """Forget the entries a crashed worker held: no longer kept fresh, they are claimed
        again (by any consumer, this one included) once idle for ``claim_idle_ms``."""
        for entry_id in held:
            self._inflight.pop(entry_id, None)
        held.clear()
        self._room.set()

    async def _ensure_group(self) -> None:
        settings = self.settings
        assert settings.group is not None
        try:
            await self._client.xgroup_create(
                settings.stream, settings.group, id=settings.start_id, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return  # exists: it keeps its position
            raise StreamGroupError(
                f"cannot create consumer group {settings.group!r} on stream "
                f"{settings.stream!r} at {settings.start_id!r}: {exc}"
            ) from exc
        log.info(
            "created consumer group %s on %s at %s",
            settings.group,
            settings.stream,
            settings.start_id,
        )

    async def _stream_end(self) -> str:
        try:
            last: Any = await self._client.xrevrange(self.settings.stream, count=1)
        except ResponseError as exc:
            raise StreamGroupError(f"cannot read stream {self.settings.stream!r}: {exc}") from exc
        return last[0][0].decode() if last else "0-0"

    # -- reading -----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        prefetch = self.settings.prefetch
        read_count = self._options.read_count
        while not self._intake_stopped:
            room = prefetch - len(self._inflight)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                reply = await self._read(min(read_count, room))
            except _RETRYABLE as exc:
                self._lost(exc)
                await asyncio.sleep(self._options.reconnect_interval)
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc) and self._group is not None:
                    # The stream or the group was deleted (or Redis restarted empty).
                    log.warning("%s: group %s vanished, recreating it", self.consumer, self._group)
                    await self._retrying(self._ensure_group)
                else:  # refused (the key holds another type, ACL...): not a network blip
                    problem = f"Redis refuses to read {self.settings.stream}: {exc}"
                    self.health.fail("reader", problem)
                    self._lost(exc)
                    await asyncio.sleep(self._options.reconnect_interval)
                continue
            if not self._connected:
                self._connected = True
                self.health.ok("reader")
                log.warning("%s: reading %s again", self.consumer, self.settings.stream)
            if reply:
                self._dispatch(reply[0][1], None)

    async def _retrying(self, step: Callable[[], Any]) -> None:
        while not self._intake_stopped:
            try:
                await step()
            except _RETRYABLE as exc:
                self._lost(exc)
            except StreamGroupError as exc:  # e.g. the key now holds another type
                self.health.fail("group", str(exc))
                log.warning("%s: %s; retrying", self.consumer, exc)
            else:
                self.health.ok("group")
                return
            await asyncio.sleep(self._options.reconnect_interval)

    def _lost(self, exc: BaseException) -> None:
        if self._connected:
            self._connected = False
            log.warning(
                "%s: cannot read %s (%r); retrying every %gs",
                self.consumer,
                self.settings.stream,
                exc,
                self._options.reconnect_interval,
            )

    async def _read(self, count: int) -> Any:
        client = self._client
        settings = self.settings
        block = self._options.block_ms
        if self._group is None:
            streams: dict[Any, Any] = {settings.stream: self._last_id}
            reply: Any = await client.xread(streams, count=count, block=block)
            if reply:
                self._last_id = reply[0][1][-1][0].decode()
            return reply
        acks = self._acks
        assert acks is not None
        ids = acks.take()
        if not ids:
            return await client.xreadgroup(
                self._group, self.consumer, {settings.stream: ">"}, count=count, block=block
            )
        pipe = client.pipeline(transaction=False)
        pipe.xack(settings.stream, self._group, *ids)
        pipe.xreadgroup(
            self._group, self.consumer, {settings.stream: ">"}, count=count, block=block
        )
        try:
            _, reply = await pipe.execute()
        except BaseException:
            acks.restore(ids)  # acknowledging again is harmless
            raise
        return reply

    def _dispatch(self, entries: list[Any], attempts: dict[Any, int] | None) -> None:
        lanes = self._lanes
        count = len(lanes)
        inflight = self._inflight
        now = time.monotonic()
        topic = self._topic
        for entry_id, fields in entries:
            message = to_message(
                topic, entry_id, fields, 1 if attempts is None else attempts.get(entry_id, 1)
            )
            inflight[message.id] = now
            lanes[self._choose(message.key, count)].put_nowait(message)

    # -- claiming ----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while not self._intake_stopped:
            await asyncio.sleep(self._options.claim_interval)
            if self._intake_stopped:
                return
            try:
                await self._refresh()
                await self._claim()
            except _RETRYABLE as exc:
                log.debug("%s: claim round skipped: %r", self.consumer, exc)
            except Exception:
                log.exception("%s: claim round failed", self.consumer)

    async def _refresh(self) -> None:
        """Reset the idle time of the entries this consumer holds (``XCLAIM`` to itself,
        ``JUSTID``: the delivery count is unchanged), so nobody claims a running entry."""
        limit = time.monotonic() - self._options.claim_interval
        stale: list[Any] = [i for i, taken in self._inflight.items() if taken <= limit]
        if not stale:
            return
        assert self._group is not None
        await self._client.xclaim(
            self.settings.stream, self._group, self.consumer, 0, stale, justid=True
        )
        now = time.monotonic()
        for entry_id in stale:
            if entry_id in self._inflight:
                self._inflight[entry_id] = now

    async def _claim(self) -> None:
        """Take over entries idle for ``claim_idle_ms`` (left by a dead consumer)."""
        group = self._group
        assert group is not None
        client = self._client
        stream = self.settings.stream
        cursor: bytes | str = "0-0"
        while not self._intake_stopped:
            room = self.settings.prefetch - len(self._inflight)
            if room <= 0:
                return
            reply = await client.xautoclaim(
                stream, group, self.consumer, self.settings.claim_idle_ms, cursor, count=room
            )
            cursor, claimed = reply[0], reply[1]
            entries = [
                (entry_id, fields)
                for entry_id, fields in claimed
                if fields is not None and entry_id.decode() not in self._inflight
            ]
            if entries:
                # Our running entries may sit in the same id range: count them in.
                limit = len(claimed) + len(self._inflight)
                pending = await client.xpending_range(
                    stream, group, entries[0][0], entries[-1][0], limit, self.consumer
                )
                counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
                log.warning(
                    "%s: claimed %d entr%s of %s idle for over %d ms (their consumer died?)",
                    self.consumer,
                    len(entries),
                    "y" if len(entries) == 1 else "ies",
                    stream,
                    self.settings.claim_idle_ms,
                )
                self._dispatch(entries, counts)
            if cursor in (b"0-0", "0-0"):
                return

    # -- workers -----------------------------------------------------------------------

    async def _work(self, lane: asyncio.Queue[Message | None], held: list[str]) -> None:
        process = self._processor.process
        max_attempts = self.spec.retry.max_attempts
        while True:
            held.clear()
            message = await lane.get()
            if message is None or self._stopping:
                if message is not None:
                    lane.put_nowait(message)  # returned by stop()
                return
            held.append(message.id)
            if message.attempt > max_attempts:
                result = _over_delivered(message)
            else:
                try:
                    result = await process(message)
                except Exception as exc:  # a processor bug must not kill the worker
                    result = ProcessResult.processor_failed(self.spec, exc, message.attempt)
            if result.outcome is Outcome.DEAD and not await self._dead(message, result):
                return  # stopping: left pending, claimed later
            self._finish(message.id)

    async def _work_batches(self, lane: asyncio.Queue[Message | None], held: list[str]) -> None:
        policy = self.spec.batch
        assert policy is not None
        while True:
            held.clear()
            first = await lane.get()
            if first is None or self._stopping:
                if first is not None:
                    lane.put_nowait(first)
                return
            batch = [first]
            if await fill_batch(lane, batch, policy.max_size, policy.max_wait):
                lane.put_nowait(None)  # the next turn of this loop ends the worker
            held.extend(message.id for message in batch)
            try:
                result = await self._processor.process_batch(batch)
            except Exception as exc:
                result = ProcessResult.processor_failed(self.spec, exc, batch[0].attempt)
            for message in batch:
                if result.outcome is Outcome.DEAD and not await self._dead(message, result):
                    return
                self._finish(message.id)

    async def _dead(self, message: Message, result: ProcessResult) -> bool:
        """Dead-letter ``message``, retrying a failed publish with backoff; False when the
        subscription stops first (the entry then stays pending: never dropped)."""
        pause = self._options.dlq_retry_backoff
        while True:
            try:
                await self._dead_letter(message, result)
                return True
            except Exception:
                log.exception(
                    "%s: cannot dead-letter entry %s of %s, retrying in %.1fs",
                    self.spec.display_name,
                    message.id,
                    self.settings.stream,
                    pause,
                )
            if self._stopping:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_BACKOFF)

    def _finish(self, entry_id: str) -> None:
        self._inflight.pop(entry_id, None)
        if self._acks is not None:
            self._acks.add(entry_id)
        if not self._room.is_set() and len(self._inflight) < self.settings.prefetch:
            self._room.set()

    # -- stop --------------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop reading and claiming: the read in progress (at most ``block_ms``) is the
        last. Entries already read are handled by :meth:`stop`. Idempotent."""
        self._intake_stopped = True
        self._room.set()
        ticker = self._ticker
        if ticker is not None and not ticker.done():
            ticker.cancel()

    async def stop(self, timeout: float) -> None:
        """Stop intake, let running handlers finish within ``timeout``, acknowledge what
        finished and return the entries not started (see the module docstring)."""
        if self._stopping:
            return
        self._stopping = True  # workers finish their message and start no other
        await self.stop_intake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        reader = self._reader
        if reader is not None:
            # The read in progress ends within block_ms; what it brings is returned below.
            await asyncio.wait([reader], timeout=self._options.block_ms / 1000 + 1.0)
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        # Idle workers end; busy ones finish their message.
        late = await stop_workers(self._workers, self._lanes, deadline - loop.time())
        if late:
            log.warning(
                "%s: %d handler(s) did not finish within %.1fs; their entries stay "
                "pending and are claimed after %d ms",
                self.spec.display_name,
                late,
                timeout,
                self.settings.claim_idle_ms,
            )
        with contextlib.suppress(Exception):
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                await self._settle_on_stop()
        if self._on_stopped is not None:
            self._on_stopped(self)

    async def _settle_on_stop(self) -> None:
        if self._acks is None or self._group is None:
            return
        await self._acks.close()
        unstarted: dict[int, list[Any]] = defaultdict(list)
        for lane in self._lanes:
            while not lane.empty():
                message = lane.get_nowait()
                if message is not None:
                    unstarted[message.attempt].append(message.id)
        stream, group = self.settings.stream, self._group
        for attempt, ids in unstarted.items():
            # Idle for claim_idle_ms already: the next claim round of any consumer takes
            # them; RETRYCOUNT keeps the delivery count that claim will increment.
            await self._client.xclaim(
                stream,
                group,
                self.consumer,
                0,
                ids,
                idle=self.settings.claim_idle_ms,
                retrycount=attempt - 1,
                justid=True,
            )
        if unstarted:
            log.info(
                "%s: returned %d unstarted entr(ies) of %s for other consumers",
                self.consumer,
                sum(map(len, unstarted.values())),
                stream,
            )
        # A consumer without pending entries is only clutter in XINFO CONSUMERS.
        mine = await self._client.xpending_range(stream, group, "-", "+", 1, self.consumer)
        if not mine:
            await self._client.xgroup_delconsumer(stream, group, self.consumer)


def _over_delivered(message: Message) -> ProcessResult:
    return ProcessResult(
        Outcome.DEAD,
        message.attempt - 1,
        f"delivered {message.attempt} times without an acknowledgement (its consumers "
        "stopped or died while handling it)",
        "DeliveryLimitExceeded",
    )
