"""One running MQTT subscription: its own session, workers, acknowledgements after handling.

Each subscription is one MQTT 5 session (its own client id, ``<client_id>-<digest>``), so
its flow control (Receive Maximum: how many unacknowledged QoS 1/2 messages the server
may send it), its acknowledgements and its reconnection are its own, and two groups on
one topic never share a delivery.

Delivery path: paho's ``on_message`` turns the PUBLISH into a :class:`Message` and puts
it on the inbox of one of ``spec.concurrency`` workers, chosen by the message key (the
``x-pykratos-key`` user property) so messages with the same key are handled one after
the other, in order (keyless ones go round-robin). A worker runs the processor, which
retries in process with the spec's backoff while the message stays unacknowledged, then:

* ``ACK``: the message is acknowledged (in arrival order, :mod:`.acks`);
* ``DEAD``: a copy with the DLQ headers is published, confirmed, to the dead-letter topic
  (:func:`framework.broker.publisher.dead_letter`), then the message is acknowledged. If
  that publish fails it is tried again after a pause, never dropped.

Ordering: MQTT keeps the order of messages from one publisher on one topic at one QoS
(MQTT 5 §4.6); a subscription with one worker handles them in that order, with several
workers per key. Members of a shared group each get a part of the stream, so across the
group there is no per-key order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from framework.broker.broker import MessageProcessor, Outcome, ProcessResult
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import TAG_HEADER
from framework.broker.workers import WorkerChooser, fill_batch, stop_workers, worker_for
from framework.transport.mqtt import headers as hdr
from framework.transport.mqtt.acks import AckQueue, Delivery
from framework.transport.mqtt.connection import Connection, ConnectSettings
from framework.transport.mqtt.errors import TopicError
from framework.transport.mqtt.options import SubscriberFilter, split_tag

__all__ = ["DeadLetter", "MqttSubscription", "to_message", "worker_for"]

log = logging.getLogger("pykratos.mqtt")

#: Publishes a dead letter for one message (``dead_letter(broker, spec, ...)`` bound).
DeadLetter = Callable[[Message, ProcessResult], Awaitable[Any]]

_Item = tuple[Message, Delivery | None]
# Seconds between attempts to publish a dead letter that failed, so a broken server does
# not turn into a hot loop.
_FAILURE_PAUSE = 1.0


def to_message(received: paho.MQTTMessage) -> Message:
    """A received PUBLISH as a :class:`Message` (``raw`` is paho's ``MQTTMessage``, with
    ``qos``, ``retain``, ``dup``, ``properties`` and the topic as received); a tagged
    message's ``topic`` is the one it was published for, without the tag levels."""
    properties = received.properties
    pairs = getattr(properties, "UserProperty", None) if properties is not None else None
    if pairs:
        headers, key, message_id = hdr.from_user_properties(pairs)
    else:
        headers, key, message_id = {}, None, ""
    payload = received.payload
    # A tagged message comes on <topic>/~tag/<tag>: the handler sees <topic> and the tag.
    topic, tag = split_tag(received.topic)
    if tag is not None and TAG_HEADER not in headers:
        headers[TAG_HEADER] = tag  # published by a client that did not set the header
    return Message(
        body=payload if isinstance(payload, bytes) else bytes(payload),
        topic=topic,
        key=key,
        headers=headers,
        id=message_id,
        delivery_tag=received.mid,
        raw=received,
    )


class MqttSubscription:
    """A running subscription of one :class:`SubscriberSpec` (the ``Subscription`` protocol).

    Args:
        spec: the subscriber.
        processor: decodes and runs the handler with retries.
        filter: what to subscribe to, resolved from the spec.
        settings: server and session settings.
        client_id: this subscription's session id.
        dead_letter: publishes a dead letter (confirmed) for a ``DEAD`` message.
        on_stopped: called once stopped (the broker forgets it).
    """

    def __init__(
        self,
        *,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        filter: SubscriberFilter,
        settings: ConnectSettings,
        client_id: str,
        dead_letter: DeadLetter,
        on_stopped: Callable[[MqttSubscription], None] | None = None,
    ) -> None:
        self.spec = spec
        self.filter = filter
        self.connection = Connection(
            settings,
            client_id,
            name=f"mqtt subscriber {spec.display_name}",
            manual_ack=True,
            on_message=self._on_message,
            on_connected=self._subscribe,
        )
        self._processor = processor
        self._dead_letter = dead_letter
        self._on_stopped = on_stopped
        self._acks = AckQueue(self.connection.ack)
        self._inboxes: list[asyncio.Queue[_Item | None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._choose = WorkerChooser()
        self._intake_stopped = False
        self._stopping = False

    async def start(self) -> None:
        """Start the workers, connect and subscribe; return once the SUBACK arrived.

        Raises:
            MqttUnavailableError: the server is unreachable.
            TopicError: the server refused the subscription.
        """
        work = self._work if self.spec.batch is None else self._work_batches
        for n in range(self.spec.concurrency):
            inbox: asyncio.Queue[_Item | None] = asyncio.Queue()
            self._inboxes.append(inbox)
            self._workers.append(
                asyncio.create_task(work(inbox), name=f"{self.spec.display_name}[{n}]")
            )
        await self.connection.start()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        # After a reconnect the session (and its subscription) may be gone, e.g. the
        # server restarted: subscribe again. Retained messages only for a new subscription.
        if self._intake_stopped:
            return
        options = SubscribeOptions(
            qos=self.filter.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
        )
        subscriptions = self.filter.subscriptions
        codes = await client.subscribe([(name, options) for name in subscriptions])
        for name, code in zip(subscriptions, codes, strict=False):
            if getattr(code, "is_failure", False):
                raise TopicError(
                    f"subscriber {self.spec.display_name}: the server refused the "
                    f"subscription {name!r}: {code}"
                )

    def _on_message(self, received: paho.MQTTMessage, generation: int) -> None:
        if self._stopping:
            return  # not acknowledged: the session keeps it for its next connection
        qos = received.qos
        delivery = self._acks.received(received.mid, qos, generation) if qos else None
        message = to_message(received)
        inboxes = self._inboxes
        inboxes[self._choose(message.key, len(inboxes))].put_nowait((message, delivery))

    # -- workers -----------------------------------------------------------------------

    async def _work(self, inbox: asyncio.Queue[_Item | None]) -> None:
        process = self._processor.process
        finished = self._acks.finished
        while True:
            item = await inbox.get()
            if item is None:
                return
            message, delivery = item
            try:
                result = await process(message)
            except Exception as exc:  # a processor bug must not kill the worker
                result = ProcessResult.processor_failed(self.spec, exc)
            if result.outcome is Outcome.DEAD and not await self._dead([message], result):
                continue  # stopping before the dead letter went out: left unacknowledged
            if delivery is not None:
                finished(delivery)

    async def _work_batches(self, inbox: asyncio.Queue[_Item | None]) -> None:
        policy = self.spec.batch
        assert policy is not None
        done = False
        while not done:
            item = await inbox.get()
            if item is None:
                return
            batch = [item]
            done = await fill_batch(inbox, batch, policy.max_size, policy.max_wait)
            messages = [message for message, _ in batch]
            try:
                result = await self._processor.process_batch(messages)
            except Exception as exc:
                result = ProcessResult.processor_failed(self.spec, exc)
            if result.outcome is Outcome.DEAD and not await self._dead(messages, result):
                continue
            for _, delivery in batch:
                if delivery is not None:
                    self._acks.finished(delivery)

    async def _dead(self, messages: list[Message], result: ProcessResult) -> bool:
        """Publish the dead letters; False if the subscription stopped before they went out."""
        for message in messages:
            while True:
                try:
                    await self._dead_letter(message, result)
                    break
                except Exception:
                    log.exception(
                        "%s: cannot publish the dead letter of a message from %s; retrying",
                        self.spec.display_name,
                        message.topic,
                    )
                    if self._stopping:
                        return False
                    await asyncio.sleep(_FAILURE_PAUSE)
        return True

    # -- stop --------------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """UNSUBSCRIBE: the server sends no new message to this session, nor is the
        subscription restored after a reconnect. Messages already received (at most
        Receive Maximum unacknowledged ones) are handled by :meth:`stop`. Idempotent."""
        await self._unsubscribe(5.0)

    async def _unsubscribe(self, limit: float) -> None:
        if self._intake_stopped:
            return
        self._intake_stopped = True
        if not self.connection.connected.is_set():
            return
        with contextlib.suppress(Exception):  # bounded: the connection may be going away
            await self.connection.client.unsubscribe(
                list(self.filter.subscriptions), timeout=max(limit, 0.1)
            )

    async def stop(self, timeout: float) -> None:
        """Stop intake, let the handlers finish the messages already received within
        ``timeout``, acknowledge them and DISCONNECT. Messages not finished stay
        unacknowledged in the session: the server resends them when a client with the same
        client id connects again (before the session expires)."""
        if self._stopping and not self._workers:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        await self._unsubscribe(max(min(timeout, 5.0), 0.5))
        self._stopping = True  # what arrives from now on stays in the session
        workers, self._workers = self._workers, []
        # None goes behind the messages already received: they are handled.
        late = await stop_workers(workers, self._inboxes, deadline - loop.time())
        if late:
            log.warning(
                "%s: %d worker(s) did not finish within %.1fs; their messages stay "
                "unacknowledged in session %s",
                self.spec.display_name,
                late,
                timeout,
                self.connection.client_id,
            )
        await self.connection.close(max(deadline - loop.time(), 1.0))
        if self._on_stopped is not None:
            self._on_stopped(self)
