"""One running RabbitMQ subscription: consume, dispatch to workers, settle each delivery.

Consumption happens at the aiormq channel level (``basic_consume`` with our own callback)
rather than through aio-pika's ``Queue.consume``: it skips a wrapper object and a task per
message, which is most of aio-pika's per-message cost. aio-pika still owns the connection:
its robust channel re-declares the exchange, queues and bindings after a reconnect or after
the broker closed the channel (a protocol error), then calls
:meth:`RabbitSubscription._on_reopen`, which consumes again on the new channel.

A consumer the broker cancels (its queue was deleted, a quorum queue lost its leader...) is
re-subscribed here: the topology is declared again (recreating a deleted queue, exactly as
another instance would) and the consumer starts again, retried with a growing pause while
it fails; meanwhile :attr:`RabbitSubscription.health` reports the problem (readiness off).
A worker task that dies is restarted (:func:`framework.broker.health.keep_running`). Each
of these is logged at WARNING.

Delivery path: the callback turns the delivery into a :class:`Message` and puts it on the
inbox of one of ``spec.concurrency`` workers, chosen by the message key so messages with
the same key are handled one after the other, in order (keyless ones go round-robin).
A worker runs the processor (``retry_in_process=False``) and then:

* ``ACK``: the delivery is finished;
* ``RetryLater(delay)``: a copy with ``attempt + 1`` is published (confirmed) to the work
  queue's TTL retry queue for that delay, which dead-letters it back to the work queue;
  then the delivery is finished. The copy keeps the original id, headers and key;
* ``DEAD``: a copy with the DLQ headers is published (confirmed) to the dead-letter
  exchange, then the delivery is finished; a copy the broker refuses for good is truncated
  or parked (:mod:`~framework.transport.rabbitmq.deadletter`).

Finished deliveries are acked in batches by :class:`Acker`. If the retry/DLQ publish
fails, the delivery is nacked back to the queue after a pause (never dropped). What the
copies carry is in :mod:`~framework.transport.rabbitmq.deliveries`.

Retries go through the broker rather than sleeping in the worker, so a failing message
never blocks its worker nor holds a prefetch slot; the price is that, while it waits in the
retry queue, later messages with the same key are handled before it (as with Kafka retry
topics). The attempt number travels in a header, not in RabbitMQ's ``x-death`` count, so
it survives being republished and is exact whatever the delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aio_pika.abc
import aiormq.abc
from aiormq.exceptions import AMQPChannelError

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult, RetryLater
from framework.broker.health import Health, keep_running
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tag_matches
from framework.broker.workers import WorkerChooser, fill_batch, stop_workers, worker_for
from framework.transport.rabbitmq.acker import Acker
from framework.transport.rabbitmq.deadletter import RabbitDeadLetter
from framework.transport.rabbitmq.deliveries import (
    copy_properties,
    retry_headers,
    to_message,
)
from framework.transport.rabbitmq.errors import MessageTooLargeError
from framework.transport.rabbitmq.options import SubscriberTopology
from framework.transport.rabbitmq.topology import declare_retry_queue, declare_subscription

__all__ = ["PublishRaw", "RabbitSubscription", "worker_for"]

log = logging.getLogger("pykratos.rabbitmq")

#: ``publish_raw(exchange=, routing_key=, body=, properties=, mandatory=)``: confirmed publish.
PublishRaw = Callable[..., Awaitable[None]]

_Item = tuple[Message, Acker]
# Seconds a worker waits before nacking a delivery whose retry/DLQ publish failed, so a
# broken DLQ does not turn into a hot redelivery loop.
_FAILURE_PAUSE = 1.0
# Re-subscribing a cancelled consumer: first pause, longest pause, and the bound of one
# attempt (declarations and basic.consume on a live connection answer in milliseconds).
_RESUBSCRIBE_PAUSE = 0.2
_RESUBSCRIBE_MAX_PAUSE = 30.0
_RESUBSCRIBE_TIMEOUT = 10.0


class RabbitSubscription:
    """A running subscription of one :class:`SubscriberSpec` (the ``Subscription`` protocol).

    Attributes:
        queues: names of the queues declared for it (work queue first, then its retry
            queues and the dead-letter queue).
        health: fails while the consumer cannot be re-subscribed or a worker keeps dying.
    """

    def __init__(
        self,
        *,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        topology: SubscriberTopology,
        channel: aio_pika.abc.AbstractRobustChannel,
        connection: aio_pika.abc.AbstractRobustConnection,
        publish_raw: PublishRaw,
        ack_batch: int,
        ack_interval: float,
        on_stopped: Callable[[RabbitSubscription], None] | None = None,
    ) -> None:
        self.spec = spec
        self.topology = topology
        self.queues: list[str] = []
        self._processor = processor
        self._channel = channel
        self._connection = connection
        self._publish_raw = publish_raw
        self._ack_batch = ack_batch
        self._ack_interval = ack_interval
        self._on_stopped = on_stopped
        self._tag = f"pykratos.{uuid.uuid4().hex[:16]}"
        self._acker: Acker | None = None
        self._inboxes: list[asyncio.Queue[_Item | None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._choose = WorkerChooser()
        self._retry_ms: set[int] = set()
        self._declare_lock = asyncio.Lock()
        self._intake_stopped = False
        self._stopping = False
        self._recovery: asyncio.Task[None] | None = None
        self._consume_lock = asyncio.Lock()
        self.health = Health(spec.display_name)
        self._dead_letter = RabbitDeadLetter(spec, topology, channel, publish_raw)

    @property
    def queue(self) -> str:
        """The work queue consumed."""
        return self.topology.queue

    async def start(self) -> None:
        """Declare the topology, start the workers and the consumer."""
        retry = self.spec.retry
        delays = (round(retry.delay(n) * 1000) for n in range(1, retry.max_attempts))
        self._retry_ms = {ms for ms in delays if ms > 0}
        await self._channel.set_qos(prefetch_count=self.topology.prefetch)
        self.queues = await declare_subscription(self._channel, self.topology, self._retry_ms)
        work = self._work if self.spec.batch is None else self._work_batches
        for n in range(self.spec.concurrency):
            inbox: asyncio.Queue[_Item | None] = asyncio.Queue()
            self._inboxes.append(inbox)
            self._workers.append(
                keep_running(
                    partial(work, inbox),
                    what=f"{self.spec.display_name}[{n}]",
                    stopping=lambda: self._stopping,
                    logger=log,
                    health=self.health,
                )
            )
        self._channel.reopen_callbacks.add(self._on_reopen)
        self._channel.close_callbacks.add(self._on_channel_closed)
        await self._consume()

    async def _consume(self) -> None:
        # One at a time: a restored channel (_on_reopen) and the recovery task may both try.
        async with self._consume_lock:
            raw = await self._channel.get_underlay_channel()
            if self._tag in getattr(raw, "consumers", ()):
                return  # already consuming on this channel
            # The acker exists before the first delivery on this channel can arrive (and
            # stop() finds the channel to cancel the consumer on).
            self._acker_for(raw)
            raw.on_consumer_cancel_callbacks.add(self._on_cancelled)
            await raw.basic_consume(
                self.topology.queue, self._on_delivery, consumer_tag=self._tag
            )

    # -- recovery ----------------------------------------------------------------------

    def _on_cancelled(self, frame: Any) -> None:
        # Runs inside the channel's frame reader: anything awaiting a reply on this channel
        # must run in another task.
        if self._intake_stopped or getattr(frame, "consumer_tag", None) != self._tag:
            return
        log.warning(
            "%s: RabbitMQ cancelled the consumer of queue %s (deleted, or its node went "
            "away); declaring it again and re-subscribing",
            self.spec.display_name,
            self.topology.queue,
        )
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(
                self._resubscribe(), name=f"{self.spec.display_name}:resubscribe"
            )

    def _on_channel_closed(self, _channel: Any, exc: BaseException | None) -> None:
        # A connection loss is the robust connection's to report and repair. A channel the
        # broker closed on its own (a protocol error such as an unknown delivery tag) is
        # reopened by the robust channel, which then calls _on_reopen; the recovery task
        # checks that it happened (the reopen fails if, say, the queue now exists with
        # other arguments) and takes over if not.
        if self._intake_stopped or not isinstance(exc, AMQPChannelError):
            return
        log.warning(
            "%s: RabbitMQ closed the channel of queue %s: %s; reopening it and consuming "
            "again (unacked deliveries are redelivered)",
            self.spec.display_name,
            self.topology.queue,
            exc,
        )
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(
                self._resubscribe(), name=f"{self.spec.display_name}:resubscribe"
            )

    def _consuming(self) -> bool:
        acker = self._acker
        if acker is None or acker.closed:
            return False
        # aiormq's Channel keeps its live consumers by tag (not part of its abc).
        return self._tag in getattr(acker.channel, "consumers", ())

    async def _resubscribe(self) -> None:
        pause = _RESUBSCRIBE_PAUSE
        while not self._intake_stopped:
            try:
                # Through a reconnect this waits: the robust connection restores the channel,
                # which then consumes again (_on_reopen).
                await self._connection.ready()
                async with asyncio.timeout(_RESUBSCRIBE_TIMEOUT):
                    await self._consume_again()
            except Exception as exc:
                if self._intake_stopped:
                    return
                problem = f"cannot consume queue {self.topology.queue!r} again: {exc!r}"
                self.health.fail("consumer", problem)
                log.warning("%s: %s; retrying in %.1fs", self.spec.display_name, problem, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RESUBSCRIBE_MAX_PAUSE)
                continue
            self.health.ok("consumer")
            log.warning(
                "%s: consuming queue %s again", self.spec.display_name, self.topology.queue
            )
            return

    async def _consume_again(self) -> None:
        if self._channel.is_closed:
            # Waits for a restore already running, or reopens the channel (re-declaring
            # its topology, then _on_reopen consumes); raises if the broker refuses.
            await self._channel.restore()
        if self._consuming():
            return
        # Declared on a channel of its own: a refused declaration closes its channel.
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await declare_subscription(channel, self.topology, self._retry_ms, robust=False)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        await self._consume()

    def _acker_for(self, channel: aiormq.abc.AbstractChannel) -> Acker:
        # Delivery tags are per channel: a delivery of another channel than the current
        # acker's (around a reconnect) must never be acked through it.
        acker = self._acker
        if acker is None or acker.channel is not channel:
            acker = self._acker = Acker(channel, batch=self._ack_batch, interval=self._ack_interval)
        return acker

    def _on_reopen(self, _channel: Any) -> Awaitable[None]:
        return self._resume()

    async def _resume(self) -> None:
        if self._intake_stopped:
            return
        try:
            await self._consume()
            log.info("consuming %s again after the channel was restored", self.topology.queue)
        except Exception as exc:
            log.warning(
                "%s: cannot resume consuming %s on the restored channel (%r); re-subscribing",
                self.spec.display_name,
                self.topology.queue,
                exc,
            )
            if self._recovery is None or self._recovery.done():
                self._recovery = asyncio.create_task(self._resubscribe())

    async def _on_delivery(self, delivered: aiormq.abc.DeliveredMessage) -> None:
        if self._stopping:
            return  # left unacked: redelivered once the channel closes
        acker = self._acker_for(delivered.channel)
        message = to_message(delivered)
        inboxes = self._inboxes
        inboxes[self._choose(message.key, len(inboxes))].put_nowait((message, acker))

    # -- workers -----------------------------------------------------------------------

    async def _work(self, inbox: asyncio.Queue[_Item | None]) -> None:
        process = self._processor.process
        while True:
            item = await inbox.get()
            if item is None or self._stopping:
                return
            message, acker = item
            if acker.closed:
                continue  # its channel is gone: the broker redelivers it on the new one
            try:
                result = await process(message, retry_in_process=False)
            except RetryLater as later:
                await self._settle_retry([message], acker, later)
                continue
            except Exception as exc:  # a processor bug must not kill the worker
                result = ProcessResult.processor_failed(self.spec, exc)
            if result.outcome is Outcome.DEAD:
                await self._settle_dead([message], acker, result)
            elif acker.finished(message.delivery_tag or 0):
                await acker.flush()

    async def _work_batches(self, inbox: asyncio.Queue[_Item | None]) -> None:
        policy = self.spec.batch
        assert policy is not None
        while True:
            item = await inbox.get()
            if item is None or self._stopping:
                return
            batch = [item]
            # The stop marker comes only after _stopping is set: the check below ends the worker.
            await fill_batch(inbox, batch, policy.max_size, policy.max_wait)
            if self._stopping:
                return  # not started: left unacked for redelivery
            await self._handle_batch(batch)

    async def _handle_batch(self, batch: list[_Item]) -> None:
        # A batch only mixes channels around a reconnect; settle each channel's part.
        by_acker: dict[int, tuple[Acker, list[Message]]] = {}
        for message, acker in batch:
            if not acker.closed:
                by_acker.setdefault(id(acker), (acker, []))[1].append(message)
        for acker, messages in by_acker.values():
            try:
                result = await self._processor.process_batch(messages)
            except RetryLater as later:
                await self._settle_retry(messages, acker, later)
                continue
            except Exception as exc:
                result = ProcessResult.processor_failed(self.spec, exc)
            if result.outcome is Outcome.DEAD:
                await self._settle_dead(messages, acker, result)
            else:
                await self._finish(messages, acker)

    # -- settling ----------------------------------------------------------------------

    async def _finish(self, messages: list[Message], acker: Acker) -> None:
        due = False
        for message in messages:
            due = acker.finished(message.delivery_tag or 0) or due
        if due:
            await acker.flush()

    async def _settle_retry(self, messages: list[Message], acker: Acker, later: RetryLater) -> None:
        if acker.closed:
            return
        try:
            routing_key = await self._retry_route(round(later.delay * 1000))
        except Exception:
            log.exception("cannot declare a retry queue for %s", self.spec.display_name)
            await self._requeue(messages, acker)
            return
        await self._republish(messages, acker, "", routing_key, retry_headers)

    async def _retry_route(self, delay_ms: int) -> str:
        if delay_ms <= 0:
            return self.topology.queue  # straight back through the default exchange
        if delay_ms not in self._retry_ms:  # a delay the policy did not predict
            async with self._declare_lock:
                if delay_ms not in self._retry_ms:
                    name = await declare_retry_queue(self._channel, self.topology, delay_ms)
                    self.queues.append(name)
                    self._retry_ms.add(delay_ms)
        return self.topology.retry_queue(delay_ms)

    async def _settle_dead(
        self, messages: list[Message], acker: Acker, result: ProcessResult
    ) -> None:
        if acker.closed:
            return
        topology = self.topology
        if topology.dlq_routing_key is None:
            log.error(
                "dropping %d message(s) of %s after %d attempt(s): %s (dead-lettering disabled)",
                len(messages),
                self.spec.display_name,
                result.attempts,
                result.reason,
            )
            await self._finish(messages, acker)
            return
        try:
            for message in messages:
                if tag_matches(self.spec.tags, message):  # not one its tags filtered out
                    await self._dead_letter(message, result)
        except Exception:  # transient (permanent refusals are handled by RabbitDeadLetter)
            log.exception(
                "cannot dead-letter %d message(s) of %s to exchange %r; requeued",
                len(messages),
                self.spec.display_name,
                topology.dead_letter_exchange,
            )
            await self._requeue(messages, acker)
            return
        await self._finish(messages, acker)

    async def _republish(
        self,
        messages: list[Message],
        acker: Acker,
        exchange: str,
        routing_key: str,
        headers: Callable[[Message], dict[str, Any]],
    ) -> None:
        """Publish a confirmed copy of each message (with ``headers(message)``), then finish
        them all. If a publish fails they are all requeued instead: never lost, but a copy
        already confirmed is published again when its message is redelivered. A copy too
        large for the connection's frames (the added headers pushed it over) would fail the
        same way on every redelivery: that message is dead-lettered with the reason."""
        too_large: list[tuple[Message, MessageTooLargeError]] = []
        try:
            for message in messages:
                try:
                    await self._publish_raw(
                        exchange=exchange,
                        routing_key=routing_key,
                        body=message.body,
                        properties=copy_properties(message, headers(message)),
                        mandatory=True,
                    )
                except MessageTooLargeError as exc:
                    too_large.append((message, exc))
        except Exception:
            log.exception(
                "cannot republish %d message(s) of %s to exchange %r with routing key %r",
                len(messages),
                self.spec.display_name,
                exchange,
                routing_key,
            )
            await self._requeue(messages, acker)
            return
        for message, error in too_large:
            refused = ProcessResult(
                Outcome.DEAD,
                message.attempt,
                f"its retry copy was refused: {error}",
                type(error).__name__,
            )
            await self._settle_dead([message], acker, refused)
        if too_large:
            messages = [m for m in messages if all(m is not t for t, _ in too_large)]
        await self._finish(messages, acker)

    async def _requeue(self, messages: list[Message], acker: Acker) -> None:
        await asyncio.sleep(_FAILURE_PAUSE)
        for message in messages:
            tag = message.delivery_tag or 0
            try:
                await acker.channel.basic_nack(tag, requeue=True, wait=False)
            except Exception as exc:  # channel gone: the broker requeues it anyway
                log.debug("nack skipped: %s", exc)
                return
            acker.settled(tag)

    # -- stop --------------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Cancel the consumer: no new deliveries, nor a new consumer after a reconnect.
        Messages already delivered are handled by :meth:`stop`. Idempotent."""
        await self._cancel_consumer(5.0)

    async def _cancel_consumer(self, limit: float) -> None:
        if self._intake_stopped:
            return
        self._intake_stopped = True
        self._channel.reopen_callbacks.discard(self._on_reopen)
        self._channel.close_callbacks.discard(self._on_channel_closed)
        if self._recovery is not None:
            # Recovery would consume again: intake has stopped for good.
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        acker = self._acker
        if acker is not None and not acker.closed:
            # Bounded: during a reconnect the cancel would wait for a connection.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(limit):
                    await acker.channel.basic_cancel(self._tag)

    async def stop(self, timeout: float) -> None:
        """Stop intake, let in-flight handlers finish within ``timeout``, ack what finished
        and close the channel; deliveries not finished are redelivered by the broker."""
        if self._stopping:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        await self._cancel_consumer(max(min(timeout, 5.0), 0.5))
        # Idle workers end; busy ones finish their message.
        late = await stop_workers(self._workers, self._inboxes, deadline - loop.time())
        if late:
            log.warning(
                "%s: %d handler(s) did not finish within %.1fs; their messages will be "
                "redelivered",
                self.spec.display_name,
                late,
                timeout,
            )
        # Bounded: during a reconnect these would wait for a connection that may not come.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                if self._acker is not None:
                    await self._acker.close()
                await self._channel.close()
        if self._on_stopped is not None:
            self._on_stopped(self)
