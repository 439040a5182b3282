"""Dead letters on RabbitMQ, and what happens when the dead-letter exchange refuses one.

A ``DEAD`` delivery is republished (confirmed, ``mandatory``) to the dead-letter exchange as
a faithful copy: the body, the properties and the typed AMQP headers as delivered (a byte
array stays a byte array), plus the DLQ headers of :mod:`framework.broker.policy`
(:func:`~framework.transport.rabbitmq.deliveries.dead_letter_headers`).

A failed publish is one of three kinds:

* **transient** (connection or channel lost, no confirm within ``publish_timeout``): raised;
  the subscription nacks the delivery back to its queue after a pause, never dropping it.
* **the dead-letter exchange or queue is gone** (someone deleted it: ``NOT_FOUND``, or the
  copy matched no queue): both are declared again, with their binding, on a throwaway
  channel, and the copy is sent once more. What the subscription declared at start is
  restored rather than dead letters being lost.
* **permanent**: the copy is larger than the broker's ``max_message_size``: a truncated copy
  is dead-lettered instead (the first
  :data:`~framework.broker.policy.DLQ_TRUNCATED_BODY_BYTES` of the body, the original headers
  when they are small, the DLQ headers, ``x-dlq-truncated``, ``x-original-size`` and
  ``x-dlq-publish-error``). Anything the broker keeps refusing (access refused, the
  dead-letter exchange cannot be declared again, a truncated copy refused too) **parks** the
  message: one CRITICAL log line names the subscriber, queue, message id, size and both
  errors, and the delivery is acked so that it stops being redelivered and re-handled every
  second. RabbitMQ keeps no log to replay it from: that line is all that is left of it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import aio_pika.abc

from framework.broker.broker import ProcessResult
from framework.broker.message import Message
from framework.broker.policy import (
    DLQ_ORIGINAL_SIZE,
    DLQ_PUBLISH_ERROR,
    DLQ_TRUNCATED,
    DLQ_TRUNCATED_BODY_BYTES,
)
from framework.broker.processor import describe_exception
from framework.broker.publisher import MAX_DLQ_REASON
from framework.broker.subscriber import SubscriberSpec
from framework.transport.rabbitmq import headers as hdr
from framework.transport.rabbitmq.deliveries import copy_properties, dead_letter_headers
from framework.transport.rabbitmq.errors import MessageTooLargeError, TopologyError, UnroutableError
from framework.transport.rabbitmq.options import SubscriberTopology

__all__ = ["RabbitDeadLetter"]

log = logging.getLogger("pykratos.rabbitmq")


class RabbitDeadLetter:
    """The dead-letter sink of one RabbitMQ subscription (see the module docstring).

    Args:
        spec: the subscriber.
        topology: its queues; ``dead_letter_exchange`` and ``dlq_routing_key`` are where
            copies go (``dlq_routing_key`` is not ``None``: dead-lettering is enabled).
        channel: the subscription's robust channel (its connection opens throwaway channels
            to declare the dead-letter exchange and queue again).
        publish_raw: the broker's confirmed publish
            (:meth:`~framework.transport.rabbitmq.broker.RabbitBroker.publish_raw`).

    Calling it returns once the copy (or a truncated copy) is confirmed, or the message was
    parked; it raises only transient errors.
    """

    def __init__(
        self,
        spec: SubscriberSpec,
        topology: SubscriberTopology,
        channel: aio_pika.abc.AbstractRobustChannel,
        publish_raw: Any,
    ) -> None:
        self._label = spec.display_name
        self._topology = topology
        self._channel = channel
        self._publish_raw = publish_raw
        self.parked = 0  # messages the broker refused permanently

    async def __call__(self, message: Message, result: ProcessResult) -> None:
        headers = dead_letter_headers(message, result, self._topology.queue)
        try:
            await self._send(message, message.body, headers)
        except (TopologyError, UnroutableError) as exc:
            # Deleted under us: declare them again and send once more.
            try:
                await self._declare_again(exc)
                await self._send(message, message.body, headers)
            except (TopologyError, UnroutableError) as again:
                self._park(message, result, f"{_why(exc)}; after declaring again: {_why(again)}")
            except MessageTooLargeError as too_large:
                await self._send_truncated(message, result, headers, too_large)
        except MessageTooLargeError as exc:
            await self._send_truncated(message, result, headers, exc)

    async def _send(self, message: Message, body: bytes, headers: dict[str, Any]) -> None:
        topology = self._topology
        await self._publish_raw(
            exchange=topology.dead_letter_exchange,
            routing_key=topology.dlq_routing_key,
            body=body,
            properties=copy_properties(message, headers),
            mandatory=True,
        )

    async def _declare_again(self, cause: Exception) -> None:
        topology = self._topology
        log.warning(
            "%s: dead-letter exchange %r or queue %r is missing (%s); declaring them again",
            self._label,
            topology.dead_letter_exchange,
            topology.dlq,
            _why(cause),
        )
        raw = await self._channel.get_underlay_channel()
        # A refused declaration closes its channel: never the subscription's own.
        channel = await raw.connection.channel(publisher_confirms=False)
        try:
            await channel.exchange_declare(
                topology.dead_letter_exchange, exchange_type="direct", durable=True
            )
            await channel.queue_declare(topology.dlq or "", durable=True)
            await channel.queue_bind(
                topology.dlq or "",
                topology.dead_letter_exchange,
                routing_key=topology.dlq_routing_key or "",
            )
        except Exception as exc:
            raise TopologyError(f"cannot declare the dead-letter topology again: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _send_truncated(
        self,
        message: Message,
        result: ProcessResult,
        headers: dict[str, Any],
        refused: MessageTooLargeError,
    ) -> None:
        body = message.body[:DLQ_TRUNCATED_BODY_BYTES]
        cut = "body"
        reason_headers = {
            name: value for name, value in headers.items() if name not in message.headers
        }
        if _size(headers) - _size(reason_headers) > DLQ_TRUNCATED_BODY_BYTES:
            headers, cut = reason_headers, "body,headers"
        truncated = {
            **headers,
            DLQ_TRUNCATED: cut,
            DLQ_ORIGINAL_SIZE: str(len(message.body)),
            DLQ_PUBLISH_ERROR: hdr.encodable(_why(refused)),
        }
        try:
            await self._send(message, body, truncated)
        except (MessageTooLargeError, TopologyError, UnroutableError) as exc:
            self._park(message, result, f"{_why(refused)}; truncated copy: {_why(exc)}")
            return
        log.error(
            "%s: message %s (%d-byte body) is too large for dead-letter exchange %r (%s); "
            "dead-lettered a truncated copy (cut: %s)",
            self._label,
            message.id,
            len(message.body),
            self._topology.dead_letter_exchange,
            _why(refused),
            cut,
        )

    def _park(self, message: Message, result: ProcessResult, refusal: str) -> None:
        self.parked += 1
        log.critical(
            "%s: PARKED message %s from queue %r (%d-byte body, headers %r): dead-letter "
            "exchange %r refused it permanently (%s), so it is NOT in the DLQ and is acked "
            "(RabbitMQ keeps no copy). It was dead because: %s",
            self._label,
            message.id,
            self._topology.queue,
            len(message.body),
            sorted(message.headers),
            self._topology.dead_letter_exchange,
            refusal,
            result.reason[:MAX_DLQ_REASON],
            extra={"subscriber": self._label, "queue": self._topology.queue},
        )


def _why(exc: BaseException) -> str:
    return describe_exception(exc)[:MAX_DLQ_REASON]


def _size(headers: dict[str, Any]) -> int:
    return sum(len(name) + len(str(value)) for name, value in headers.items())
