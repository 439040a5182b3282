"""One running JetStream subscription: pull, dispatch to ordered lanes, settle each message.

A group subscriber is a durable pull consumer with explicit acks. The pull loop keeps
requests for ``fetch_batch`` messages outstanding while the messages requested and not
settled stay within ``prefetch`` (so a slow handler holds back intake, never memory); each
message that arrives goes to the lane of its key (see :mod:`~framework.transport.nats.pull`
and :mod:`~framework.transport.nats.lanes`). While the lanes work, the server already sends
the next batch. A lane runs the processor (``retry_in_process=False``) and then:

* ``ACK``: ``+ACK`` the message. Each message is acked on its own: JetStream's cumulative
  ``AckAll`` would also ack unfinished messages of other lanes or other instances and undo
  ``nak`` retries, so it is not safe with concurrent, per-key ordered work;
* ``RetryLater(delay)``: ``nak`` with that delay; JetStream redelivers the message and counts
  the delivery, which is the next attempt number;
* ``DEAD``: a copy with the reason headers is published (with a JetStream ack) to the
  dead-letter subject, then the message is ``term``-inated (never redelivered). If that
  publish fails, the message is ``nak``-ed after a pause instead: never lost.

Messages that wait or run longer than a third of ``ack_wait`` get an in-progress ack
(``+WPI``) so JetStream does not redeliver them to another consumer meanwhile.

Retries go through the server rather than sleeping in the lane, so a failing message never
blocks its lane; the price is that later messages with the same key are handled before it
(as with RabbitMQ's retry queues and Kafka retry topics).

After a connection loss nats-py reconnects and restores the inbox subscription; requests
left unanswered are forgotten after ``fetch_timeout`` and sent again once connected, and the
loop logs once when pulling fails and once when it works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult, RetryLater
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tag_matches
from framework.transport.nats.deliveries import DeadLetterPublish, dead_letter, to_message
from framework.transport.nats.lanes import Lanes
from framework.transport.nats.options import SubscriberConfig
from framework.transport.nats.pull import Puller

__all__ = ["NatsSubscription"]

log = logging.getLogger("pykratos.nats")

# Seconds before a message whose dead-letter publish failed is redelivered, so a broken
# dead-letter stream does not turn into a hot redelivery loop.
_FAILURE_PAUSE = 1.0
# Pause of the pull loop after an error or while disconnected.
_PULL_PAUSE = 0.5


class NatsSubscription:
    """A running JetStream subscription of one :class:`SubscriberSpec` (the ``Subscription``
    protocol, with ``stop_intake``).

    Attributes:
        stream: the stream consumed.
        durable: the durable consumer's name.
    """

    def __init__(
        self,
        *,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        config: SubscriberConfig,
        client: Client,
        stream: str,
        publish: DeadLetterPublish,
        fetch_timeout: float,
        on_stopped: Callable[[NatsSubscription], None] | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.stream = stream
        self.durable = config.durable
        self._processor = processor
        self._client = client
        self._publish = publish
        self._fetch_timeout = fetch_timeout
        self._on_stopped = on_stopped
        self._inflight: dict[int, tuple[Msg, float]] = {}  # id(msg) -> (msg, last ack time)
        self._wake = asyncio.Event()  # room for another pull request, or intake stopped
        self._puller = Puller(
            client,
            stream,
            config.durable,
            expires=fetch_timeout,
            deliver=self._on_msg,
            ended=self._wake.set,
        )
        self._lanes: Lanes | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._progress: asyncio.Task[None] | None = None
        self._failing = False
        self._intake_stopped = False
        self._stopping = False

    @property
    def inflight(self) -> int:
        """Messages received and not settled yet."""
        return len(self._inflight)

    async def start(self) -> None:
        """Start the lanes, the pull loop and the in-progress acks; return once the first
        pull requests are sent."""
        name = self.spec.display_name
        handle = self._handle if self.spec.batch is None else self._handle_batch
        self._lanes = Lanes(self.spec.concurrency, handle, self.spec.batch, name)
        await self._puller.start()
        self._loop_task = asyncio.create_task(self._pull_loop(), name=f"{name}.pull")
        self._progress = asyncio.create_task(self._keep_alive(), name=f"{name}.progress")

    # -- intake --------------------------------------------------------------------------

    def _room(self) -> bool:
        """True when another full request fits in the window."""
        config = self.config
        used = len(self._inflight) + self._puller.outstanding
        return config.prefetch - used >= config.fetch_batch

    async def _pull_loop(self) -> None:
        puller = self._puller
        loop = asyncio.get_running_loop()
        patience = self._fetch_timeout + 1.0  # a request answers (408) within its expiry
        while not self._intake_stopped:
            if not self._client.is_connected:
                self._healthy(False)
                puller.forget()  # unanswered: the server may never have got them
                await asyncio.sleep(_PULL_PAUSE)
                continue
            refusal, puller.refusal = puller.refusal, None
            if refusal is not None:
                self._healthy(False, refusal)
                await asyncio.sleep(_PULL_PAUSE)
                continue
            if self._room():
                try:
                    await puller.request(self.config.fetch_batch)
                except Exception as exc:
                    self._healthy(False, exc)
                    await asyncio.sleep(_PULL_PAUSE)
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(patience):
                    await self._wake.wait()
            except TimeoutError:
                if puller.outstanding and loop.time() - puller.last_answer > patience:
                    puller.forget()  # no answer at all: the requests were lost
            if puller.refusal is None and loop.time() - puller.last_answer <= patience:
                self._healthy(True)

    async def _on_msg(self, msg: Msg) -> None:
        if self._intake_stopped:  # arrived while stopping: give it back at once
            await self._settle(msg.nak())
            self._wake.set()  # stop() waits for the outstanding requests to run out
            return
        lanes = self._lanes
        assert lanes is not None
        self._inflight[id(msg)] = (msg, self._puller.last_answer)
        lanes.put(to_message(msg, jetstream=True))

    def _healthy(self, ok: bool, cause: BaseException | str | None = None) -> None:
        """Log once per change between pulling fine and failing."""
        if ok and self._failing:
            self._failing = False
            log.info("%s: pulling from %s again", self.spec.display_name, self.stream)
        elif not ok and not self._failing:
            self._failing = True
            log.warning(
                "%s: cannot pull from %s/%s (%s); retrying",
                self.spec.display_name,
                self.stream,
                self.durable,
                "disconnected"
                if cause is None
                else cause
                if isinstance(cause, str)
                else repr(cause),
            )

    async def _keep_alive(self) -> None:
        """In-progress acks for messages unsettled for a third of ``ack_wait``."""
        period = self.config.ack_wait / 3
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            due = loop.time() - period
            for key, (msg, acked) in list(self._inflight.items()):
                if acked <= due and key in self._inflight:
                    self._inflight[key] = (msg, loop.time())
                    await self._settle(msg.in_progress())

    # -- settling ------------------------------------------------------------------------

    def _done(self, msg: Msg) -> None:
        self._inflight.pop(id(msg), None)
        if not self._wake.is_set() and self._room():
            self._wake.set()

    @staticmethod
    async def _settle(ack: Awaitable[None]) -> None:
        try:
            await ack
        except Exception as exc:  # connection gone: JetStream redelivers after ack_wait
            log.debug("ack skipped: %r", exc)

    async def _handle(self, messages: list[Message]) -> None:
        message = messages[0]
        msg: Msg = message.raw
        try:
            result = await self._processor.process(message, retry_in_process=False)
        except RetryLater as later:
            await self._settle(msg.nak(delay=later.delay))
            self._done(msg)
            return
        except Exception as exc:  # a processor bug must not kill the lane
            result = ProcessResult.processor_failed(self.spec, exc)
        if result.outcome is Outcome.DEAD:
            await self._dead(messages, result)
        else:
            await self._settle(msg.ack())
        self._done(msg)

    async def _handle_batch(self, messages: list[Message]) -> None:
        try:
            result = await self._processor.process_batch(messages)
        except Exception as exc:
            result = ProcessResult.processor_failed(self.spec, exc)
        if result.outcome is Outcome.DEAD:
            await self._dead(messages, result)
        else:
            for message in messages:
                await self._settle(message.raw.ack())
        for message in messages:
            self._done(message.raw)

    async def _dead(self, messages: list[Message], result: ProcessResult) -> None:
        for message in messages:
            msg: Msg = message.raw
            if not tag_matches(self.spec.tags, message):
                await self._settle(msg.ack())  # in the batch, but filtered out by tag
                continue
            subject = self.config.dead_letter_subject(message.topic)
            if await dead_letter(self._publish, subject, message, result, self.spec.display_name):
                await self._settle(msg.term())  # never redelivered
            else:  # kept: redelivered after a pause, never lost
                await self._settle(msg.nak(delay=_FAILURE_PAUSE))

    # -- stop ----------------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Stop pulling: no new messages are taken (a pull already answered is given back
        with a ``nak``). Messages already taken are handled by :meth:`stop`. Idempotent."""
        if self._intake_stopped:
            return
        self._intake_stopped = True
        self._wake.set()

    async def _give_back(self, messages: list[Message]) -> None:
        for message in messages:
            await self._settle(message.raw.nak())
            self._done(message.raw)

    async def stop(self, timeout: float) -> None:
        """Stop intake, give back (``nak``) the messages not started, let the running ones
        finish within ``timeout`` and settle them, flush the acks and unsubscribe. The
        durable consumer stays: what is left is redelivered to the group."""
        if self._stopping:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        await self.stop_intake()
        if self._lanes is not None:
            await self._give_back(self._lanes.take_queued())
        if self._loop_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._loop_task
        # Requests still outstanding answer within fetch_timeout; what they bring is given
        # back as it comes (see _on_msg), then the inbox goes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self._fetch_timeout + 1.0, max(timeout, 0.1))):
                while self._puller.outstanding and self._client.is_connected:
                    self._wake.clear()
                    await self._wake.wait()
        if self._lanes is not None:
            late = await self._lanes.close(deadline - loop.time())
            if late:
                log.warning(
                    "%s: %d handler(s) did not finish within %.1fs; their messages will be "
                    "redelivered",
                    self.spec.display_name,
                    late,
                    timeout,
                )
        for msg, _ in list(self._inflight.values()):  # cancelled mid-handler: redeliver now
            await self._settle(msg.nak())
        self._inflight.clear()
        if self._progress is not None:
            self._progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._progress
        with contextlib.suppress(Exception):
            await self._client.flush(timeout=max(round(deadline - loop.time()), 1))
        with contextlib.suppress(Exception):
            await self._puller.close()
        if self._on_stopped is not None:
            self._on_stopped(self)
