"""RabbitMQ's batching publisher: a chunk's messages written to the confirm channel at once.

:class:`RabbitBatchingPublisher` writes the messages of a chunk (at most ``max_in_flight``
awaiting their confirm) to the broker's confirm-mode channel as one write, and each
message's ``Basic.Ack`` resolves it. Where the generic pipelined publisher runs the broker's
whole ``publish`` per message, and aiormq's ``basic_publish`` takes the channel's lock, a
task and a socket write per message, this takes the lock once per write and registers each
message's confirm the way ``basic_publish`` does: the next delivery tag (RabbitMQ numbers the
publishes of a confirm channel 1, 2, 3... in the order it receives them), a confirmation
future, and the message id (how aiormq finds the publish a ``Basic.Return`` is about). It
relies on those attributes of aiormq's channel (``delivery_tag``, ``confirmations``,
``message_id_delivery_tag``, ``write_queue``, ``lock``, ``max_content_size``), checked at
run time: a channel without them (another aiormq version) gets each message published by
the broker's confirmed publisher instead, as ``publish`` would.

The messages are those :meth:`RabbitBroker.publish
<framework.transport.rabbitmq.broker.RabbitBroker.publish>` makes: the same headers
(ordering key, tag), exchange (the broker's, or the dead-letter exchange for a dead-letter
queue), ``mandatory`` flag, persistent, with a fresh message id and timestamp each. The
exchange of every topic of a chunk is checked (``prepare_publish``) before any of its
messages is written, so the messages of a key are written in submit order; a topic refused
there fails its messages with that error. A message whose properties (headers) do not fit
in one frame of the connection fails alone with
:class:`~framework.transport.rabbitmq.errors.MessageTooLargeError` before anything of it is
written (see :mod:`~framework.transport.rabbitmq.framesize`). (Batch ``submit`` takes no
delay, so there are no delay buckets here; ``partition=`` is refused at submit, RabbitMQ
has no partitions.)

A message is resolved only by a broker ack. Whatever else its first attempt meets (a nack,
a mandatory message returned as unroutable, the channel closed by the broker or lost with
the connection, aiormq cancelling the confirms of a closed channel) hands the message to the
broker's :class:`~framework.transport.rabbitmq.publishing.ConfirmedPublisher` with the same
properties (the same message id), which judges that error as it judges its own attempts:
:class:`~framework.transport.rabbitmq.errors.UnroutableError`,
:class:`~framework.transport.rabbitmq.errors.TopologyError` or
:class:`~framework.transport.rabbitmq.errors.MessageTooLargeError` fail that message alone;
anything transient is published again on the restored channel until ``publish_timeout``
after the message's first attempt, then fails with
:class:`~framework.transport.rabbitmq.errors.PublishTimeoutError`. As with ``publish``, a
message published again may be stored twice (at-least-once) and may land after later
messages of its key.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from framework.broker.batching import BatchingPublisher, PendingMessage, stop_task
from framework.broker.broker import PublishResult
from framework.checks import check_counts
from framework.transport.rabbitmq.errors import PublishTimeoutError, TopologyError
from framework.transport.rabbitmq.framesize import FRAME_OVERHEAD, check_header_frame
from framework.transport.rabbitmq.headers import message_headers
from framework.transport.rabbitmq.publishing import ConfirmedPublisher, persistent_properties

if TYPE_CHECKING:
    from framework.transport.rabbitmq.broker import RabbitBroker

__all__ = ["RabbitBatchingPublisher"]


class _Flight:
    """One message on its way: what publishing it again needs."""

    __slots__ = ("deadline", "exchange", "item", "message_tags", "payload", "properties", "tag")

    def __init__(
        self,
        item: PendingMessage,
        exchange: str,
        properties: spec.Basic.Properties,
        deadline: float,
    ) -> None:
        self.item = item
        self.exchange = exchange
        self.properties = properties
        self.deadline = deadline  # loop.time() when its publish_timeout runs out
        self.payload = b""  # its frames, marshalled
        self.tag = 0  # its delivery tag on the channel it was written to
        self.message_tags: dict[str | None, int] = {}  # its channel: message id -> delivery tag


class RabbitBatchingPublisher(BatchingPublisher):
    """Publishes a chunk at once on the confirm channel, an ack per message (see the module).

    Args:
        broker: the connected broker whose messages these are (exchange checks, the
            exchange of a topic, ``mandatory``).
        publisher: the broker's confirmed publisher: its channel carries the messages, and
            it publishes again (or fails) any message whose first attempt was not acked;
            its ``timeout`` bounds each message from its first attempt.
        max_in_flight: messages awaiting their confirm at once (default: twice
            ``chunk_size``, at least 256): the next ones are written as acks come back.
        **kwargs: ``chunk_size``, ``flush_interval``, ``max_pending``, ``close_timeout``
            (see :class:`framework.broker.batching.BatchingPublisher`).

    Raises:
        ValueError: ``max_in_flight < 1``, or invalid sizes (see ``BatchingPublisher``).
    """

    def __init__(
        self,
        broker: RabbitBroker,
        publisher: ConfirmedPublisher,
        *,
        max_in_flight: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "rabbitmq-batch-publisher")
        super().__init__(**kwargs)
        if max_in_flight is None:
            max_in_flight = max(2 * self.chunk_size, 256)
        check_counts(self.name, max_in_flight=max_in_flight)
        self.max_in_flight = max_in_flight
        self._broker = broker
        self._publisher = publisher
        # First attempts awaiting their confirm, and the messages handed to the publisher.
        self._attempts: dict[asyncio.Future[Any], _Flight] = {}
        self._retries: set[asyncio.Task[None]] = set()
        self._window = asyncio.Event()  # set while fewer than max_in_flight are on their way
        self._window.set()
        self._watcher: asyncio.Task[None] | None = None
        self._aborted = False

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        broker = self._broker
        exchanges: dict[str, str] = {}
        refused: dict[str, BaseException] = {}
        for topic in dict.fromkeys(item.topic for item in chunk):
            try:
                await broker.prepare_publish(topic)
            except Exception as exc:
                refused[topic] = exc
            else:
                exchanges[topic] = broker.exchange_for(topic)
        loop = asyncio.get_running_loop()
        timeout = self._publisher.timeout
        if self._watcher is None:
            self._watcher = loop.create_task(self._watch(), name=f"{self.name}-watch")
        raw = await self._raw_channel(chunk, loop.time() + timeout)
        if raw is None and chunk[0].settled:
            return  # no channel in time: the chunk failed
        attempts, retries, limit = self._attempts, self._retries, self.max_in_flight
        ready: list[_Flight] = []  # marshalled, to be written together
        for index, item in enumerate(chunk):
            topic = item.topic
            exchange = exchanges.get(topic)
            if exchange is None:
                self.reject((item,), refused[topic])
                continue
            if len(attempts) + len(retries) + len(ready) >= limit:
                if ready:
                    await self._write(raw, ready)
                    ready = []
                while len(attempts) + len(retries) >= limit:
                    self._window.clear()
                    await self._window.wait()
                if raw is not None and raw.is_closed:  # lost meanwhile: wait for the new one
                    raw = await self._raw_channel(chunk[index:], loop.time() + timeout)
                    if item.settled:
                        return  # the rest of the chunk failed: no channel in time
            try:  # a header or routing key AMQP cannot carry fails its message alone
                properties = persistent_properties(message_headers(item.headers, item.key))
                flight = _Flight(item, exchange, properties, loop.time() + timeout)
                if raw is not None:
                    flight.payload = self._marshal(raw, flight)
            except Exception as exc:
                self.reject((item,), exc)
                continue
            if raw is None:  # the channel is being restored: the publisher waits for it
                self._retry(flight, None)
                continue
            ready.append(flight)
        if ready:
            await self._write(raw, ready)
        # Let the writer send this chunk before the next one is marshalled.
        await asyncio.sleep(0)

    def _marshal(self, raw: Any, flight: _Flight) -> bytes:
        """The frames of one publish: method, content header, body in frame-size pieces.

        Raises:
            MessageTooLargeError: the content header does not fit in one frame.
        """
        item = flight.item
        body = item.body
        number = raw.number
        size = raw.max_content_size
        header = pamqp.frame.marshal(
            ContentHeader(properties=flight.properties, body_size=len(body)), number
        )
        if len(header) - FRAME_OVERHEAD > size:
            # Measured exactly, as it is marshalled anyway: the message fails alone,
            # before a frame that would make RabbitMQ close the connection is written.
            check_header_frame(
                flight.properties,
                size,
                exchange=flight.exchange,
                routing_key=item.topic,
            )
        frames = [
            pamqp.frame.marshal(
                spec.Basic.Publish(
                    exchange=flight.exchange,
                    routing_key=item.topic,
                    mandatory=self._broker.mandatory,
                ),
                number,
            ),
            header,
        ]
        for start in range(0, len(body), size):
            frames.append(pamqp.frame.marshal(ContentBody(body[start : start + size]), number))
        return b"".join(frames)

    async def _write(self, raw: Any, flights: list[_Flight]) -> None:
        """Write ``flights`` to ``raw`` at once, each one's confirm registered as aiormq's
        ``basic_publish`` registers it (see the module docstring)."""
        payload = ChannelFrame(payload=b"".join(f.payload for f in flights), should_close=False)
        attempts = self._attempts
        registered: list[asyncio.Future[Any]] = []
        try:
            # Bounded: a connection that dies while the lock or a full write queue is awaited
            # never frees them.
            async with asyncio.timeout_at(flights[0].deadline), raw.lock:
                confirmations = raw.confirmations
                message_tags = raw.message_id_delivery_tag
                first = tag = raw.delivery_tag
                for flight in flights:
                    tag += 1
                    confirmation = raw.create_future()
                    confirmations[tag] = confirmation
                    message_tags[flight.properties.message_id] = tag
                    flight.tag = tag
                    flight.message_tags = message_tags
                    attempts[confirmation] = flight
                    registered.append(confirmation)
                raw.delivery_tag = tag
                try:
                    await raw.write_queue.put(payload)
                except BaseException:
                    # Not written: the broker numbers only what it receives, so the tags
                    # are given back before anything else publishes on the channel.
                    raw.delivery_tag = first
                    for flight, confirmation in zip(flights, registered, strict=True):
                        confirmations.pop(flight.tag, None)
                        if message_tags.get(flight.properties.message_id) == flight.tag:
                            del message_tags[flight.properties.message_id]
                        del attempts[confirmation]
                        confirmation.cancel()
                    raise
        except TimeoutError:  # their deadline passed: the publisher fails them as timed out
            for flight in flights:
                self._retry(flight, None)
            return
        except Exception as exc:  # the channel closed before they were written
            for flight in flights:
                self._retry(flight, exc)
            return
        confirmed = self._confirmed
        for confirmation in registered:
            confirmation.add_done_callback(confirmed)

    async def _raw_channel(self, items: list[PendingMessage], deadline: float) -> Any | None:
        """The confirm channel's current aiormq channel, waiting for a reconnect until
        ``deadline`` (then ``items`` fail with ``PublishTimeoutError``, and ``None``);
        ``None`` also if it went away again meanwhile or lacks what this publisher relies on
        (then each message is published by the broker's confirmed publisher)."""
        channel = self._publisher.channel
        try:
            async with asyncio.timeout_at(deadline):
                await channel.ready()  # waits while the robust connection reconnects
                raw = await channel.get_underlay_channel()
        except TimeoutError:
            timeout = self._publisher.timeout
            for item in items:
                error = PublishTimeoutError(
                    f"publish to {item.topic!r}: no RabbitMQ channel within {timeout:g}s",
                    topic=item.topic,
                    timeout=timeout,
                )
                self.reject((item,), error)
            return None
        except Exception:
            return None  # each message goes through the publisher, which waits for it
        return raw if _writable(raw) else None

    def _confirmed(self, attempt: asyncio.Future[Any]) -> None:
        flight = self._attempts.pop(attempt)
        self._open_window()
        message_id = flight.properties.message_id
        if flight.message_tags.get(message_id) == flight.tag:
            del flight.message_tags[message_id]  # only a return needs it, until the confirm
        if attempt.cancelled():
            if self._aborted:
                self.reject((flight.item,), asyncio.CancelledError())
                return
            error: BaseException = asyncio.CancelledError()  # aiormq: its channel closed
        else:
            exc = attempt.exception()
            if exc is None:
                confirmation = attempt.result()
                if isinstance(confirmation, spec.Basic.Ack):
                    item = flight.item
                    self.resolve(
                        item,
                        PublishResult(topic=item.topic, message_id=flight.properties.message_id),
                    )
                    return
                self._retry(flight, None)  # not acked: published again
                return
            error = exc
        self._retry(flight, error)

    async def _watch(self) -> None:
        """Stop the first attempts still unconfirmed at their deadline (a confirm that never
        comes, e.g. a frame queued on a connection that died): each one is then failed with
        ``PublishTimeoutError`` by the publisher. One timer for all, not one per message."""
        loop = asyncio.get_running_loop()
        interval = min(1.0, self._publisher.timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            late = []
            for attempt, flight in self._attempts.items():
                if flight.deadline > now:
                    break  # started in deadline order: the rest are younger
                late.append(attempt)
            for attempt in late:
                attempt.cancel()

    def _retry(self, flight: _Flight, failed: BaseException | None) -> None:
        task = asyncio.ensure_future(self._publish_again(flight, failed))
        self._retries.add(task)
        task.add_done_callback(self._retried)

    async def _publish_again(self, flight: _Flight, failed: BaseException | None) -> None:
        item = flight.item
        try:
            await self._publisher.publish(
                exchange=flight.exchange,
                routing_key=item.topic,
                body=item.body,
                properties=flight.properties,
                mandatory=self._broker.mandatory,
                deadline=flight.deadline,
                failed=failed,
            )
        except TopologyError as exc:
            self._broker.forget_exchange(flight.exchange)  # deleted meanwhile?
            self.reject((item,), exc)
        except (Exception, asyncio.CancelledError) as exc:
            self.reject((item,), exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            self.resolve(
                item, PublishResult(topic=item.topic, message_id=flight.properties.message_id)
            )

    def _retried(self, task: asyncio.Task[None]) -> None:
        self._retries.discard(task)
        self._open_window()

    def _open_window(self) -> None:
        if len(self._attempts) + len(self._retries) < self.max_in_flight:
            self._window.set()

    async def abort(self) -> None:
        self._aborted = True
        tasks: list[asyncio.Future[Any]] = [*self._attempts, *self._retries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self, timeout: float | None = None) -> None:
        """Flush (see ``BatchingPublisher.close``), then stop the deadline watcher."""
        try:
            await super().close(timeout)
        finally:
            watcher, self._watcher = self._watcher, None
            await stop_task(watcher)


def _writable(raw: object) -> bool:
    """Whether ``raw`` (an aiormq channel) has the confirm bookkeeping this publisher
    registers its messages in (see the module docstring)."""
    return (
        getattr(raw, "publisher_confirms", False) is True
        and isinstance(getattr(raw, "delivery_tag", None), int)
        and isinstance(getattr(raw, "confirmations", None), dict)
        and isinstance(getattr(raw, "message_id_delivery_tag", None), dict)
        and isinstance(getattr(raw, "write_queue", None), asyncio.Queue)
        and isinstance(getattr(raw, "max_content_size", None), int)
        and hasattr(raw, "lock")
        and hasattr(raw, "create_future")
    )
