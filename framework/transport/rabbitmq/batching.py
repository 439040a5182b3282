"""RabbitMQ's batching publisher: a chunk's messages written straight to the confirm channel.

:class:`RabbitBatchingPublisher` publishes every message of a chunk at once on the broker's
confirm-mode channel (at most ``max_in_flight`` awaiting their confirm), and each message's
``Basic.Ack`` resolves it. The channel is looked up once per chunk and a message costs one
``basic_publish`` on it, where the generic pipelined publisher runs the broker's whole
``publish`` per message (its checks, timeout scope, channel lookup and retry loop).

The messages are those :meth:`RabbitBroker.publish
<framework.transport.rabbitmq.broker.RabbitBroker.publish>` makes: the same headers
(ordering key, tag), exchange (the broker's, or the dead-letter exchange for a dead-letter
queue), ``mandatory`` flag, persistent, with a fresh message id and timestamp each. The
exchange of every topic of a chunk is checked (``prepare_publish``) before any of its
messages is written, so the messages of a key are written in submit order; a topic refused
there fails its messages with that error. (Batch ``submit`` takes no delay, so there are no
delay buckets here; ``partition=`` is refused at submit, RabbitMQ has no partitions.)

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

from aiormq.abc import AbstractChannel, ConfirmationFrameType
from pamqp import commands as spec

from framework.broker.batching import BatchingPublisher, PendingMessage
from framework.broker.broker import PublishResult
from framework.transport.rabbitmq.errors import PublishTimeoutError, TopologyError
from framework.transport.rabbitmq.headers import message_headers
from framework.transport.rabbitmq.publishing import (
    ConfirmedPublisher,
    no_drain_wait,
    persistent_properties,
)

if TYPE_CHECKING:
    from framework.transport.rabbitmq.broker import RabbitBroker

__all__ = ["RabbitBatchingPublisher"]


class _Flight:
    """One message on its way: what publishing it again needs."""

    __slots__ = ("deadline", "exchange", "item", "properties")

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
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._broker = broker
        self._publisher = publisher
        # First attempts awaiting their confirm, and the messages handed to the publisher.
        self._attempts: dict[asyncio.Future[ConfirmationFrameType | None], _Flight] = {}
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
        publish = None if raw is None else raw.basic_publish
        no_wait = {} if raw is None else no_drain_wait(raw)
        mandatory = broker.mandatory
        attempts, retries, limit = self._attempts, self._retries, self.max_in_flight
        confirmed = self._confirmed
        for index, item in enumerate(chunk):
            topic = item.topic
            exchange = exchanges.get(topic)
            if exchange is None:
                self.reject((item,), refused[topic])
                continue
            properties = persistent_properties(message_headers(item.headers, item.key))
            if len(attempts) + len(retries) >= limit:
                while len(attempts) + len(retries) >= limit:
                    self._window.clear()
                    await self._window.wait()
                if raw is not None and raw.is_closed:  # lost meanwhile: wait for the new one
                    raw = await self._raw_channel(chunk[index:], loop.time() + timeout)
                    publish = None if raw is None else raw.basic_publish
                    if item.settled:
                        continue  # the rest of the chunk failed: no channel in time
            flight = _Flight(item, exchange, properties, loop.time() + timeout)
            if publish is None:  # the channel is being restored: the publisher waits for it
                self._retry(flight, None)
                continue
            attempt = loop.create_task(
                publish(
                    item.body,
                    exchange=exchange,
                    routing_key=topic,
                    properties=properties,
                    mandatory=mandatory,
                    **no_wait,
                )
            )
            attempts[attempt] = flight
            attempt.add_done_callback(confirmed)
        # Let the publishes just started write their messages before the next chunk's start.
        await asyncio.sleep(0)

    async def _raw_channel(
        self, items: list[PendingMessage], deadline: float
    ) -> AbstractChannel | None:
        """The confirm channel's current aiormq channel, waiting for a reconnect until
        ``deadline`` (then ``items`` fail with ``PublishTimeoutError``, and ``None``);
        ``None`` also if it went away again meanwhile (the publisher then waits for it)."""
        channel = self._publisher.channel
        try:
            async with asyncio.timeout_at(deadline):
                await channel.ready()  # waits while the robust connection reconnects
                return await channel.get_underlay_channel()
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

    def _confirmed(self, attempt: asyncio.Future[ConfirmationFrameType | None]) -> None:
        flight = self._attempts.pop(attempt)
        self._open_window()
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
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
