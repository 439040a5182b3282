"""Batching publishers: go-queue's Pusher and Sarama's async producer, on every broker.

A :class:`BatchingPublisher` takes messages with :meth:`~BatchingPublisher.submit`, which
returns a future at once, and sends them in chunks: a chunk leaves when it holds
``chunk_size`` messages or ``flush_interval`` seconds after its first message, whichever
comes first. Every message's future resolves to its own
:class:`~framework.broker.broker.PublishResult` once the broker confirmed *that* message, or
fails with *its* error (a message the broker refuses fails alone; the others of its chunk
go on).

What this base does for every broker:

* **back-pressure**: at most ``max_pending`` messages are submitted and not yet resolved;
  ``submit`` waits beyond that (so a producer faster than the broker slows down instead of
  filling memory);
* **order**: chunks are handed to the broker one at a time, in submit order, by one task;
  a broker implementation sends the messages of a chunk in order on one connection, so the
  messages of one key reach the broker in submit order while it confirms them (as with any
  pipelining producer, a retried message may land after a later one of its key);
* **final flush**: :meth:`~BatchingPublisher.close` (``async with``, the broker's
  ``close``, the :class:`~framework.broker.server.BrokerServer`'s stop) sends what is
  buffered and waits for the confirmations within a timeout; messages still unconfirmed
  then fail with :class:`BatchFlushTimeoutError` (never dropped silently).

A broker supplies :meth:`~BatchingPublisher.send_chunk`. :class:`PipelinedPublisher` is the
generic one: it starts the broker's own confirmed ``publish`` for every message of the chunk
at once (many in flight on one connection, each confirm resolving its message), which is
what :meth:`Broker.batch_publisher <framework.broker.broker.Broker.batch_publisher>` returns
unless a broker has a cheaper native path (Kafka: one record batch per partition; Redis: one
pipelined round trip of ``XADD`` per chunk; NATS: one reply subscription for every PubAck;
RabbitMQ: a chunk's messages written to the confirm channel in one write).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Self

from framework.broker.broker import PublishResult
from framework.broker.tags import tagged_headers
from framework.checks import check_counts, check_seconds

__all__ = [
    "BatchFlushTimeoutError",
    "BatchPublisherClosedError",
    "BatchingPublisher",
    "PendingMessage",
    "PipelinedPublisher",
    "SendOne",
    "stop_task",
]

_log = logging.getLogger("pykratos.broker")

#: ``send(topic, body, key, headers, partition)``: one confirmed publish (a broker's
#: ``publish``; ``partition`` is ``None`` unless the submitter chose one).
SendOne = Callable[
    [str, bytes, bytes | None, Mapping[str, str] | None, int | None], Awaitable[PublishResult]
]


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (a publisher's helper task, e.g. a watcher) and wait until it ended;
    ``None``: nothing to stop."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class BatchPublisherClosedError(RuntimeError):
    """``submit`` on a batching publisher that is closed (or closing)."""


class BatchFlushTimeoutError(TimeoutError):
    """A message was still unconfirmed when its publisher's final flush ran out of time.

    The broker may still have stored it: treat it like a publish timeout (at-least-once:
    publish again, and let consumers de-duplicate by message id).
    """


class PendingMessage:
    """One submitted message: what a broker's :meth:`BatchingPublisher.send_chunk` sends.

    Attributes:
        topic, body, key, headers: as given to :meth:`BatchingPublisher.submit`.
        future: resolved by the publisher with the message's result or error.
        partition: the partition chosen at submit, or ``None`` (the broker's partitioner
            decides).
    """

    __slots__ = ("body", "future", "headers", "key", "partition", "settled", "topic")

    def __init__(
        self,
        topic: str,
        body: bytes,
        key: bytes | None,
        headers: Mapping[str, str] | None,
        future: asyncio.Future[PublishResult],
        partition: int | None = None,
    ) -> None:
        self.topic = topic
        self.body = body
        self.key = key
        self.headers = headers
        self.future = future
        self.partition = partition
        self.settled = False  # counted out of ``pending`` (exactly once)


class BatchingPublisher(ABC):
    """Buffers messages into chunks and reports each message's result (see the module).

    Use :meth:`submit` to pipeline (``futures = [await p.submit(...) for ...]``),
    :meth:`publish` to wait for one message, :meth:`flush` to wait for everything submitted,
    and :meth:`close` (or ``async with``) to flush and stop.

    Args:
        chunk_size: messages per chunk: a full chunk is sent at once.
        flush_interval: seconds a partial chunk waits before it is sent.
        max_pending: messages submitted and not yet resolved before ``submit`` waits.
        close_timeout: seconds :meth:`close` waits for confirmations when not given one
            (``None``: as long as it takes; each message is bounded by its broker's
            ``publish_timeout`` anyway).
        name: for logs and the sender task's name.

    Raises:
        ValueError: ``chunk_size`` or ``max_pending`` not an int >= 1, ``flush_interval``
            or ``close_timeout`` not a finite number >= 0, or ``max_pending < chunk_size``.
    """

    #: Whether :meth:`submit` takes ``partition=``: a publisher whose broker has no
    #: partitions raises ``NotImplementedError`` for it rather than ignore it.
    accepts_partition: ClassVar[bool] = False

    def __init__(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
        close_timeout: float | None = None,
        name: str = "batch-publisher",
    ) -> None:
        check_counts(name, chunk_size=chunk_size, max_pending=max_pending)
        check_seconds(name, allow_zero=True, flush_interval=flush_interval)
        if max_pending < chunk_size:
            raise ValueError(
                f"{name}: max_pending >= chunk_size is needed for a full chunk to fit "
                f"(got chunk_size={chunk_size}, max_pending={max_pending})"
            )
        if close_timeout is not None:
            check_seconds(name, allow_zero=True, close_timeout=close_timeout)
        self.chunk_size = chunk_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.close_timeout = close_timeout
        self.name = name
        self._buffer: list[PendingMessage] = []
        self._timer: asyncio.TimerHandle | None = None
        self._chunks: asyncio.Queue[list[PendingMessage]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._unsettled: set[PendingMessage] = set()
        self._room = asyncio.Event()  # set while fewer than max_pending are unresolved
        self._room.set()
        self._idle = asyncio.Event()  # set while nothing is unresolved
        self._idle.set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages submitted and not yet resolved (buffered or awaiting confirmation)."""
        return len(self._unsettled)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` began: ``submit`` refuses new messages."""
        return self._closed

    async def submit(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        tag: str | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[PublishResult]:
        """Buffer one message; the returned future resolves once the broker confirmed it
        (or fails with this message's error).

        ``tag`` labels it for subscribers declared with ``tags=`` (carried in the ``x-tag``
        header, as ``publish(tag=)`` does). ``partition`` puts it on that partition, as
        ``publish(partition=)`` does (a partition the topic lacks fails its future with
        ``ValueError``). Waits only while ``max_pending`` messages are unresolved
        (back-pressure).

        Raises:
            BatchPublisherClosedError: the publisher is closed.
            NotImplementedError: ``partition`` given to a publisher whose broker has no
                partitions.
            ValueError: an invalid ``tag`` (nothing is buffered).
            TypeError: a header name or value that is not a ``str`` (nothing is buffered).
        """
        if partition is not None and not self.accepts_partition:
            raise NotImplementedError(
                f"{self.name}: this broker has no partitions, partition={partition} refused"
            )
        headers = tagged_headers(headers, tag)  # also checks the headers are str -> str
        # Re-checked after every wait: several submitters may wake at once, and close() may
        # have run meanwhile (a message buffered then would start a sender nobody stops).
        unsettled = self._unsettled
        while True:
            if self._closed:
                raise BatchPublisherClosedError(f"{self.name} is closed")
            if len(unsettled) < self.max_pending:
                break
            self._room.clear()
            await self._room.wait()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[PublishResult] = loop.create_future()
        item = PendingMessage(topic, body, key, headers, future, partition)
        unsettled.add(item)
        self._idle.clear()
        buffer = self._buffer
        buffer.append(item)
        if len(buffer) >= self.chunk_size:
            self._send_buffer()
            # Once per chunk, let the sender start on it while the caller fills the next
            # one: without it a submit loop that never waits holds the event loop until
            # it ends, and the broker idles meanwhile.
            await asyncio.sleep(0)
        elif self._timer is None:
            self._timer = loop.call_later(self.flush_interval, self._send_buffer)
        return future

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        tag: str | None = None,
        partition: int | None = None,
    ) -> PublishResult:
        """Submit one message and wait for its confirmation (raises its error)."""
        future = await self.submit(
            topic, body, key=key, headers=headers, tag=tag, partition=partition
        )
        return await future

    async def flush(self, timeout: float | None = None) -> None:
        """Send what is buffered and wait until every submitted message is resolved
        (including any submitted meanwhile).

        Raises:
            TimeoutError: not all resolved within ``timeout`` seconds (they stay pending).
        """
        self._send_buffer()
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new messages, flush, and stop. Safe to call twice.

        Waits at most ``timeout`` seconds (default: ``close_timeout``) for confirmations;
        the messages still unconfirmed then fail with :class:`BatchFlushTimeoutError`.
        """
        if timeout is None:
            timeout = self.close_timeout
        first = not self._closed
        self._closed = True
        try:
            await self.flush(timeout)
        except TimeoutError:
            left = list(self._unsettled)
            _log.error(
                "%s: %d message(s) still unconfirmed after the %gs final flush: "
                "failing them with BatchFlushTimeoutError",
                self.name,
                len(left),
                timeout,
            )
            # Failed first, then the in-flight work stopped: their own outcome is this one.
            self.reject(
                left,
                BatchFlushTimeoutError(
                    f"{self.name}: not confirmed within the {timeout:g}s final flush"
                ),
            )
            await self.abort()
        finally:
            if first:
                sender, self._sender = self._sender, None
                await stop_task(sender)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- what a broker implements ------------------------------------------------------------

    @abstractmethod
    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        """Send ``chunk`` (messages in submit order) and arrange for every message to be
        resolved with :meth:`resolve` or :meth:`reject`, now or once confirmed.

        Called for one chunk at a time: the next chunk is handed over once this returns, so
        return once the chunk is *sent* (written, in order) to keep many in flight. An
        exception escaping it fails the chunk's unresolved messages with that exception.
        """

    async def abort(self) -> None:
        """Stop waiting for confirmations (called when the final flush times out, before the
        unresolved messages are failed). Default: nothing to stop."""
        return None  # deliberately empty: a hook, not an abstract method

    # -- helpers for implementations ---------------------------------------------------------

    def resolve(self, item: PendingMessage, result: PublishResult) -> None:
        """``item`` was confirmed (ignored if it was already resolved)."""
        if item.settled:
            return
        future = item.future
        if not future.done():  # a submitter may have cancelled it: resolved all the same
            future.set_result(result)
        self._settle(item)

    def reject(self, items: Iterable[PendingMessage], exc: BaseException) -> None:
        """``items`` failed with ``exc`` (those already resolved are left alone)."""
        for item in items:
            if item.settled:
                continue
            future = item.future
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()  # a future cannot hold CancelledError as its exception
                else:
                    future.set_exception(exc)
            self._settle(item)

    # -- internals -------------------------------------------------------------------------

    def _settle(self, item: PendingMessage) -> None:
        item.settled = True
        unsettled = self._unsettled
        unsettled.discard(item)
        if len(unsettled) < self.max_pending:
            self._room.set()
            if not unsettled:
                self._idle.set()

    def _send_buffer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, []
        self._chunks.put_nowait(chunk)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop(), name=self.name)

    async def _send_loop(self) -> None:
        chunks = self._chunks
        while True:
            chunk = await chunks.get()
            try:
                await self.send_chunk(chunk)
            except Exception as exc:  # a bug or an unexpected client error: still report it
                _log.exception("%s: failed to send a chunk of %d", self.name, len(chunk))
                self.reject(chunk, exc)


class PipelinedPublisher(BatchingPublisher):
    """A batching publisher over any broker's confirmed ``publish``: every message of a chunk
    is published at once, in order (many in flight on the broker's publishing connection),
    and each one's confirmation or error resolves its future.

    Works on every broker (RabbitMQ confirms, NATS PubAcks, MQTT PUBACK/PUBCOMP, memory):
    each message gets exactly the checks, retries across reconnects and errors of
    ``publish``.

    Order per key: the publishes are started in submit order, and each reaches its write
    without waiting on anything once ``prepare(topic)`` ran for its topic (a first publish
    to a topic may await a lookup, e.g. NATS' stream or RabbitMQ's exchange, which would
    let later publishes overtake it). ``prepare`` is awaited for every topic of a chunk
    before any of its messages starts; a topic it raises for fails its messages with that
    error.

    ``partition=`` is handed to the broker's ``publish``, which honours it (memory) or fails
    the message with ``NotImplementedError`` (a broker without partitions).

    At most ``max_in_flight`` publishes run at once; the next ones start as confirmations
    come back. Each publish's own timeout (the broker's ``publish_timeout``) runs from its
    start, so a window keeps a long backlog from timing out behind itself, while being
    wide enough that the broker always has work.

    Args:
        send: ``send(topic, body, key, headers, partition)``, one confirmed publish.
        prepare: ``prepare(topic)``, the lookups a first publish to ``topic`` awaits
            (:meth:`Broker.prepare_publish <framework.broker.broker.Broker.prepare_publish>`).
        max_in_flight: publishes awaiting confirmation at once (default: twice
            ``chunk_size``, at least 256).
        **kwargs: see :class:`BatchingPublisher`.
    """

    accepts_partition: ClassVar[bool] = True

    def __init__(
        self,
        send: SendOne,
        *,
        prepare: Callable[[str], Awaitable[None]] | None = None,
        max_in_flight: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_in_flight is None:
            max_in_flight = max(2 * self.chunk_size, 256)
        check_counts(self.name, max_in_flight=max_in_flight)
        self.max_in_flight = max_in_flight
        self._send = send
        self._prepare = prepare
        self._inflight: set[asyncio.Task[PublishResult]] = set()
        self._window = asyncio.Event()  # set while fewer than max_in_flight run
        self._window.set()

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        send = self._send
        inflight = self._inflight
        refused: dict[str, BaseException] = {}
        if self._prepare is not None:
            for topic in dict.fromkeys(item.topic for item in chunk):
                try:
                    await self._prepare(topic)
                except Exception as exc:
                    refused[topic] = exc
        limit = self.max_in_flight
        for item in chunk:
            if refused:
                error = refused.get(item.topic)
                if error is not None:
                    self.reject((item,), error)
                    continue
            while len(inflight) >= limit:
                self._window.clear()
                await self._window.wait()
            task = asyncio.ensure_future(
                send(item.topic, item.body, item.key, item.headers, item.partition)
            )
            inflight.add(task)
            task.add_done_callback(self._make_done(item))
        # Let the tasks just created write their messages before the next chunk's are made.
        await asyncio.sleep(0)

    def _make_done(self, item: PendingMessage) -> Callable[[asyncio.Task[PublishResult]], None]:
        def done(task: asyncio.Task[PublishResult]) -> None:
            inflight = self._inflight
            inflight.discard(task)
            if len(inflight) < self.max_in_flight:
                self._window.set()
            if task.cancelled():
                self.reject((item,), asyncio.CancelledError())
                return
            exc = task.exception()
            if exc is not None:
                self.reject((item,), exc)
            else:
                self.resolve(item, task.result())

        return done

    async def abort(self) -> None:
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
