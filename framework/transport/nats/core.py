"""One running core NATS subscription: broadcast, or a queue group without JetStream.

A broadcast subscriber (every instance gets every message) subscribes to its subject on core
NATS; a group subscriber with the option ``jetstream=False`` joins the NATS queue group of
its group instead (each message goes to one member). Core NATS keeps nothing: a message
published while no one listens is gone, and one being handled when the process dies is lost
(at-most-once). A failing handler is retried in process, then dead-lettered (published to
the dead-letter subject with a JetStream ack).

Request/reply: when the message has a reply subject (``nc.request``, or
:meth:`~framework.transport.nats.broker.NatsBroker.request`) and the handler returns a value,
the encoded value is published to it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tag_matches
from framework.transport.nats.deliveries import DeadLetterPublish, dead_letter, to_message
from framework.transport.nats.lanes import Lanes
from framework.transport.nats.options import SubscriberConfig

__all__ = ["CoreSubscription"]

log = logging.getLogger("pykratos.nats")


class CoreSubscription:
    """A running core NATS subscription of one :class:`SubscriberSpec`."""

    def __init__(
        self,
        *,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        config: SubscriberConfig,
        client: Client,
        publish: DeadLetterPublish,
        on_stopped: Callable[[CoreSubscription], None] | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self._processor = processor
        self._client = client
        self._publish = publish
        self._on_stopped = on_stopped
        self._sub: Subscription | None = None
        self._lanes: Lanes | None = None
        self._stopping = False

    async def start(self) -> None:
        """Subscribe; return once the server has the subscription (flushed)."""
        handle = self._handle if self.spec.batch is None else self._handle_batch
        self._lanes = Lanes(self.spec.concurrency, handle, self.spec.batch, self.spec.display_name)
        self._sub = await self._client.subscribe(
            self.config.subject, queue=self.config.queue_group, cb=self._on_msg
        )
        await self._client.flush()

    async def _on_msg(self, msg: Msg) -> None:
        if self._lanes is not None and not self._stopping:
            self._lanes.put(to_message(msg, jetstream=False))

    async def _handle(self, messages: list[Message]) -> None:
        message = messages[0]
        try:
            result = await self._processor.process(message)
        except Exception as exc:
            result = ProcessResult.processor_failed(self.spec, exc)
        if result.outcome is Outcome.DEAD:
            await self._dead(messages, result)
            return
        reply = message.raw.reply
        if reply and result.reply is not None:
            try:
                await self._client.publish(reply, result.reply)
            except Exception as exc:
                log.warning("%s: cannot reply to %s: %r", self.spec.display_name, reply, exc)

    async def _handle_batch(self, messages: list[Message]) -> None:
        try:
            result = await self._processor.process_batch(messages)
        except Exception as exc:
            result = ProcessResult.processor_failed(self.spec, exc)
        if result.outcome is Outcome.DEAD:
            await self._dead(messages, result)

    async def _dead(self, messages: list[Message], result: ProcessResult) -> None:
        for message in messages:
            if not tag_matches(self.spec.tags, message):
                continue  # in the batch, but filtered out by the subscriber's tags
            if not message.id:  # the copy's Nats-Msg-Id derives from it
                message.id = uuid.uuid4().hex
            subject = self.config.dead_letter_subject(message.topic)
            # A failed publish loses the message (logged): core NATS cannot redeliver it.
            await dead_letter(self._publish, subject, message, result, self.spec.display_name)

    async def stop_intake(self) -> None:
        """Unsubscribe: no new messages. Idempotent."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def stop(self, timeout: float) -> None:
        """Unsubscribe and let the messages already received finish within ``timeout``."""
        if self._stopping:
            return
        await self.stop_intake()
        self._stopping = True
        if self._lanes is not None:
            late = await self._lanes.close(timeout)
            if late:
                log.warning(
                    "%s: %d handler(s) did not finish within %.1fs (core NATS: not redelivered)",
                    self.spec.display_name,
                    late,
                    timeout,
                )
        if self._on_stopped is not None:
            self._on_stopped(self)
