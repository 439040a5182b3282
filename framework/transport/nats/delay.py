"""Delayed and scheduled messages on NATS 2.9 JetStream, which cannot hold a message back.

Emulated with a **delay stream** and a framework **relay**:

* ``publish(topic, ..., delay=...)`` / ``deliver_at=`` publishes (JetStream, PubAck awaited)
  to ``<stream>.delay.<topic>``, captured by the stream ``<stream>-delay`` (created on first
  use, same storage as the broker's), with the due time in the
  :data:`~framework.broker.schedule.DUE_HEADER` header (epoch milliseconds) and the
  message's own headers, key and ``Nats-Msg-Id``.
* The relay (:class:`DelayRelay`) pulls from the durable consumer ``<stream>-delay-relay``.
  A message that is due is published to ``<topic>`` (PubAck awaited, with the same
  ``Nats-Msg-Id``, so a relay that dies between the publish and the ack has its second copy
  dropped by the target stream's duplicate window) and then acked: at-least-once, never
  acked before it is stored. A message not due yet is ``nak``\\ ed with the time it still has
  to wait: the server's timer redelivers it then, so the relay never polls or sleeps per
  message.

Several processes may run relays: they share the durable consumer, so each message is
relayed by one of them. With no relay running, delayed messages wait in the delay stream
(subject to its limits) until one runs; none is dropped. A message waiting for its time is
"pending" on the consumer: ``delay_max_pending`` bounds how many may wait at once (the next
ones stay in the stream, later than due, until earlier ones are relayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from framework.broker.schedule import DUE_HEADER
from framework.transport.nats.headers import MSG_ID
from framework.transport.nats.publishing import ConfirmedPublisher

__all__ = ["DelayRelay", "DelayStream"]

log = logging.getLogger("pykratos.nats")

#: Messages asked for per pull; the relay publishes the due ones of a batch concurrently.
_BATCH = 256
#: A due time this close (seconds) counts as due: a nak shorter than this would cost more
#: than the lateness it avoids.
_EARLY = 0.002


class DelayStream:
    """Names and creation of a broker's delay stream (see the module docstring).

    Args:
        js: the JetStream context.
        stream: the broker's stream name (the delay stream is ``<stream>-delay``).
        storage: ``"file"`` or ``"memory"``, as the broker's stream.
    """

    def __init__(
        self, js: JetStreamContext, stream: str, storage: Literal["file", "memory"]
    ) -> None:
        self._js = js
        self.name = f"{stream}-delay"
        self.prefix = f"{stream}.delay."
        self.durable = f"{stream}-delay-relay"
        self._storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self._ready = False
        self._lock = asyncio.Lock()

    def subject(self, topic: str) -> str:
        """The delay-stream subject of ``topic``."""
        return self.prefix + topic

    def topic(self, subject: str) -> str:
        """The topic a delay-stream subject stands for."""
        return subject.removeprefix(self.prefix)

    async def ensure(self) -> None:
        """Create the delay stream if it does not exist (idempotent, safe across processes)."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            try:
                await self._js.stream_info(self.name)
            except NotFoundError:
                config = StreamConfig(
                    name=self.name, subjects=[self.prefix + ">"], storage=self._storage
                )
                with contextlib.suppress(BadRequestError):  # made meanwhile by another process
                    await self._js.add_stream(config)
                await self._js.stream_info(self.name)  # NotFoundError if it failed otherwise
            self._ready = True


class DelayRelay:
    """Relays due messages of the delay stream to their topics (see the module docstring).

    Args:
        js: the JetStream context.
        delay_stream: the broker's delay stream.
        publisher: the broker's confirmed publisher (for the republish).
        max_pending: ``max_ack_pending`` of the relay's consumer: messages that may wait for
            their time at once.
        fetch_timeout: seconds one pull waits for messages.
    """

    def __init__(
        self,
        js: JetStreamContext,
        delay_stream: DelayStream,
        publisher: ConfirmedPublisher,
        *,
        max_pending: int,
        fetch_timeout: float,
    ) -> None:
        self._js = js
        self._delay = delay_stream
        self._publisher = publisher
        self._max_pending = max_pending
        self._fetch_timeout = fetch_timeout
        self._task: asyncio.Task[None] | None = None
        #: messages relayed to their topic since start (for tests and health).
        self.relayed = 0

    @property
    def running(self) -> bool:
        """Whether the relay's task is running."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Create the delay stream and the relay's consumer, then start relaying."""
        if self._task is not None:
            return
        await self._delay.ensure()
        consumer = ConsumerConfig(
            durable_name=self._delay.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=-1,  # a nak per wait: never give a message up
            max_ack_pending=self._max_pending,
            deliver_policy=DeliverPolicy.ALL,
        )
        with contextlib.suppress(BadRequestError):  # exists (another relay made it)
            await self._js.add_consumer(self._delay.name, consumer)
        subscription = await self._js.pull_subscribe_bind(
            self._delay.durable, stream=self._delay.name
        )
        self._task = asyncio.create_task(self._run(subscription), name="pykratos-nats-delay")

    async def stop(self) -> None:
        """Stop relaying; a message taken and not acked yet is redelivered to a relay."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            while True:
                try:
                    batch = await subscription.fetch(_BATCH, timeout=self._fetch_timeout)
                except nats.errors.TimeoutError:
                    continue
                except (nats.errors.Error, OSError) as exc:
                    log.warning("nats delay relay: fetch failed (%r); retrying", exc)
                    await asyncio.sleep(self._fetch_timeout)
                    continue
                await self._handle(batch)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _handle(self, batch: list[Msg]) -> None:
        now = time.time()
        due: list[Msg] = []
        for msg in batch:
            wait = _due(msg) - now
            if wait > _EARLY:
                await msg.nak(delay=wait)  # the server redelivers it when due
            else:
                due.append(msg)
        if due:
            await asyncio.gather(*(self._relay(msg) for msg in due))

    async def _relay(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        headers.pop(DUE_HEADER, None)
        msg_id = headers.pop(MSG_ID, None)
        if not msg_id:  # published by another client: the delay stream's sequence is unique
            msg_id = f"{msg.metadata.stream}-{msg.metadata.sequence.stream}"
        topic = self._delay.topic(msg.subject)
        try:
            await self._publisher.publish(topic, msg.data, headers, msg_id)
        except Exception as exc:  # stays in the delay stream: redelivered after ack_wait
            log.warning("nats delay relay: republishing to %r failed (%r); retried", topic, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        await msg.ack()
        self.relayed += 1


def _due(msg: Msg) -> float:
    raw = (msg.headers or {}).get(DUE_HEADER)
    try:
        return int(raw) / 1000 if raw is not None else 0.0
    except ValueError:
        log.warning("nats delay relay: bad %s header %r: relayed at once", DUE_HEADER, raw)
        return 0.0
