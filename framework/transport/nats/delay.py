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
  acked before it is stored. A message due within ``HOLD`` seconds is held unacknowledged
  (well within the consumer's ``ack_wait``) on an event-loop timer and relayed on time; one
  due later is ``nak``-ed with its remaining time minus ``HOLD / 2``: the server's timer
  redelivers it then, into the hold window. Nothing polls or sleeps per message.
* Naks go out in bursts (every ``NAK_INTERVAL``): nats-server 2.9 restarts its redelivery
  timer 10 ms ahead on every nak, so naks arriving more often than that (a steady stream of
  delayed messages) would keep that timer from firing at all. The hold window also absorbs
  the server timer's own lateness.

Several processes may run relays: they share the durable consumer, so each message is
relayed by one of them. With no relay running, delayed messages wait in the delay stream
(subject to its limits) until one runs; none is dropped. A message waiting for its time is
"pending" on the consumer: ``delay_max_pending`` bounds how many may wait at once (no limit
by default; beyond it the next ones stay in the stream, later than due, until earlier ones
are relayed). A relay that stops naks what it holds with the time left, so another relay
gets it on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from framework.broker.schedule import DUE_HEADER
from framework.transport.nats.errors import StreamError
from framework.transport.nats.headers import MSG_ID
from framework.transport.nats.publishing import ConfirmedPublisher
from framework.transport.nats.pull import Puller

__all__ = ["HOLD", "NAK_INTERVAL", "DelayRelay", "DelayStream"]

log = logging.getLogger("pykratos.nats")

#: Messages asked for per pull request (a new one goes out below half of it outstanding).
_BATCH = 256
#: Seconds to wait after a refused pull or while disconnected.
_PAUSE = 0.5
#: Seconds before its due time within which the relay holds a message itself.
HOLD = 5.0
#: Seconds between two bursts of naks (see the module docstring).
NAK_INTERVAL = 0.05
#: The relay consumer's ack wait: far above HOLD, so a held message is never redelivered.
_ACK_WAIT = 30.0


class DelayStream:
    """Names and creation of a broker's delay stream (see the module docstring).

    Args:
        js: the JetStream context.
        stream: the broker's stream name (the delay stream is ``<stream>-delay``).
        storage: ``"file"`` or ``"memory"``, as the broker's stream.
        create: create the delay stream if missing (the broker's ``create_streams``); off,
            a missing one is a :class:`~framework.transport.nats.errors.StreamError`.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        storage: Literal["file", "memory"],
        *,
        create: bool = True,
    ) -> None:
        self._js = js
        self._create = create
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
                if not self._create:
                    raise StreamError(
                        f"no delay stream {self.name!r} for delayed messages: create it "
                        f"capturing {self.prefix}> (nats stream add) or turn create_streams on"
                    ) from None
                config = StreamConfig(
                    name=self.name, subjects=[self.prefix + ">"], storage=self._storage
                )
                with contextlib.suppress(BadRequestError):  # made meanwhile by another process
                    await self._js.add_stream(config)
                await self._js.stream_info(self.name)  # NotFoundError if it failed otherwise
            self._ready = True


class DelayRelay:
    """Relays due messages of the delay stream to their topics (see the module docstring).

    Pulls with :class:`~framework.transport.nats.pull.Puller` (requests kept outstanding, a
    callback per message), as subscriptions do, so a redelivered message is handled the
    moment the server sends it.

    Args:
        client: the connection.
        js: its JetStream context.
        delay_stream: the broker's delay stream.
        publisher: the broker's confirmed publisher (for the republish).
        max_pending: ``max_ack_pending`` of the relay's consumer: messages that may wait for
            their time at once.
        fetch_timeout: seconds one pull request waits on the server.
    """

    def __init__(
        self,
        client: Client,
        js: JetStreamContext,
        delay_stream: DelayStream,
        publisher: ConfirmedPublisher,
        *,
        max_pending: int,
        fetch_timeout: float,
    ) -> None:
        self._client = client
        self._js = js
        self._delay = delay_stream
        self._publisher = publisher
        self._max_pending = max_pending
        self._fetch_timeout = fetch_timeout
        self._task: asyncio.Task[None] | None = None
        self._puller: Puller | None = None
        self._wake = asyncio.Event()
        self._relaying: set[asyncio.Task[None]] = set()
        self._held: dict[int, tuple[Msg, asyncio.TimerHandle]] = {}
        self._naks: list[tuple[Msg, float]] = []  # (message, due) waiting for the burst
        self._nakker: asyncio.Task[None] | None = None
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
            ack_wait=_ACK_WAIT,
            max_deliver=-1,  # a nak per wait: never give a message up
            max_ack_pending=self._max_pending,
            deliver_policy=DeliverPolicy.ALL,
        )
        with contextlib.suppress(BadRequestError):  # exists (another relay made it)
            await self._js.add_consumer(self._delay.name, consumer)
        self._puller = Puller(
            self._client,
            self._delay.name,
            self._delay.durable,
            expires=self._fetch_timeout,
            deliver=self._on_msg,
            ended=self._wake.set,
        )
        await self._puller.start()
        self._task = asyncio.create_task(self._pull_loop(), name="pykratos-nats-delay")
        self._nakker = asyncio.create_task(self._nak_bursts(), name="pykratos-nats-delay-nak")

    async def stop(self) -> None:
        """Stop relaying; a message taken and not acked yet is redelivered to a relay."""
        for task in (self._task, self._nakker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._nakker = None
        # Held messages go back with the time they have left, so another relay gets them
        # on time instead of after the ack wait.
        held, self._held = self._held, {}
        for msg, timer in held.values():
            timer.cancel()
            self._naks.append((msg, _due(msg)))
        with contextlib.suppress(Exception):
            await self._flush_naks(margin=0.0)
        for relaying in list(self._relaying):
            relaying.cancel()
        if self._relaying:
            await asyncio.wait(self._relaying)
        puller, self._puller = self._puller, None
        if puller is not None:
            with contextlib.suppress(Exception):
                await puller.close()

    async def _pull_loop(self) -> None:
        puller = self._puller
        assert puller is not None
        loop = asyncio.get_running_loop()
        patience = self._fetch_timeout + 1.0  # a request answers (408) within its expiry
        while True:
            if not self._client.is_connected:
                puller.forget()  # unanswered: the server may never have got them
                await asyncio.sleep(_PAUSE)
                continue
            refusal, puller.refusal = puller.refusal, None
            if refusal is not None:
                log.warning("nats delay relay: pull refused (%s); retrying", refusal)
                await asyncio.sleep(_PAUSE)
                continue
            if puller.outstanding < _BATCH // 2:
                try:
                    await puller.request(_BATCH)
                except Exception as exc:
                    log.warning("nats delay relay: pull request failed (%r)", exc)
                    await asyncio.sleep(_PAUSE)
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(patience):
                    await self._wake.wait()
            except TimeoutError:
                if puller.outstanding and loop.time() - puller.last_answer > patience:
                    puller.forget()  # no answer at all: the requests were lost

    async def _on_msg(self, msg: Msg) -> None:
        puller = self._puller
        if puller is not None and puller.outstanding < _BATCH // 2:
            self._wake.set()
        due = _due(msg)
        wait = due - time.time()
        if wait <= 0:
            self._start_relay(msg)
        elif wait <= HOLD:
            loop = asyncio.get_running_loop()
            timer = loop.call_at(loop.time() + wait, self._release, id(msg))
            self._held[id(msg)] = (msg, timer)
        else:
            self._naks.append((msg, due))

    def _release(self, key: int) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._start_relay(held[0])

    def _start_relay(self, msg: Msg) -> None:
        task = asyncio.create_task(self._relay(msg))
        self._relaying.add(task)
        task.add_done_callback(self._relaying.discard)

    async def _nak_bursts(self) -> None:
        while True:
            await asyncio.sleep(NAK_INTERVAL)
            if self._naks:
                try:
                    await self._flush_naks(margin=HOLD / 2)
                except Exception as exc:  # not naked: redelivered after the ack wait
                    log.warning("nats delay relay: nak failed (%r)", exc)

    async def _flush_naks(self, *, margin: float) -> None:
        naks, self._naks = self._naks, []
        now = time.time()
        for msg, due in naks:
            # Back ``margin`` before due (into the hold window), at least a moment later.
            await msg.nak(delay=max(due - now - margin, 0.001))

    async def _relay(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        headers.pop(DUE_HEADER, None)
        msg_id = headers.pop(MSG_ID, None)
        if not msg_id:  # published by another client: the delay stream's sequence is unique
            msg_id = f"{msg.metadata.stream}-{msg.metadata.sequence.stream}"
        topic = self._delay.topic(msg.subject)
        try:
            await self._publisher.publish(topic, msg.data, headers, msg_id)
        except Exception as exc:  # stays in the delay stream: redelivered after the nak
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
