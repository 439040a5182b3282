"""Dead letters on Kafka: a faithful copy, and what happens when the DLQ refuses one.

A ``DEAD`` message is sent to ``spec.dlq_topic`` as a faithful copy of the record: its own
key, body and headers, bytes exactly as consumed (null values and repeated header names
included), plus the DLQ headers of :mod:`framework.broker.policy` (replacing those of an
earlier dead-lettering, so a message dead-lettered twice carries one reason, the latest).

A failed send is one of two kinds:

* **transient** (connection lost, timeout, leader moving, a topic being created): the error
  is raised, and the subscription retries with backoff while the partition waits: nothing is
  skipped, nothing is lost.
* **permanent**: a non-retriable broker error (:func:`is_permanent`): the record is too
  large (larger than the producer's ``max_request_size`` or the topic's
  ``max.message.bytes``), the topic may not be written (authorization), the topic name or a
  topic policy is invalid. Retrying would refuse it the same way forever and wedge its
  partition, so:

  - **too large**: a truncated copy is dead-lettered instead: the first
    :data:`~framework.broker.policy.DLQ_TRUNCATED_BODY_BYTES` of the body (at most half of
    ``max_request_size``), the original headers when they are small, the usual DLQ headers
    (``x-original-topic``/``-partition``/``-offset`` point at the full record) and
    ``x-dlq-truncated``, ``x-original-size`` and ``x-dlq-publish-error``;
  - **anything else**, or a truncated copy refused as well: the message is **parked**: one
    CRITICAL log line names the subscriber, topic, partition, offset and both errors, the
    offset is committed so the partition keeps flowing, and the record stays in its source
    topic (as long as retention keeps it) for an operator to replay. ``parked`` counts them.

Invalid topic names are refused earlier, when subscribing (:func:`check_topic_name`): the
client would otherwise spend ``request_timeout_ms`` on every attempt before failing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError, MessageSizeTooLargeError, RecordListTooLargeError

from framework.broker.broker import ProcessResult
from framework.broker.message import Message, header_bytes
from framework.broker.policy import (
    DLQ_ORIGINAL_SIZE,
    DLQ_PUBLISH_ERROR,
    DLQ_TRUNCATED,
    DLQ_TRUNCATED_BODY_BYTES,
)
from framework.broker.processor import describe_exception
from framework.broker.publisher import MAX_DLQ_REASON, dlq_headers
from framework.broker.subscriber import SubscriberSpec
from framework.transport.kafka.records import encode_headers

__all__ = ["KafkaDeadLetter", "check_topic_name", "is_permanent", "is_too_large"]

_log = logging.getLogger("pykratos.kafka")
_Headers = list[tuple[str, bytes | None]]
# Kafka's own rule (kafka.common.internals.Topic): legal characters and at most 249 of them.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def check_topic_name(name: str, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless ``name`` is a legal Kafka topic name."""
    if not _TOPIC_NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(
            f"{what} {name!r} is not a valid Kafka topic name: use 1 to 249 of the "
            "characters a-z, A-Z, 0-9, '.', '_' and '-' (not '.' or '..' alone)"
        )


def is_permanent(exc: BaseException) -> bool:
    """True when the broker (or the producer, for a too large record) refused the record in a
    way that no retry can change: any non-retriable Kafka broker error."""
    return isinstance(exc, BrokerResponseError) and not exc.retriable


def is_too_large(exc: BaseException) -> bool:
    """True for "this record (or its batch) is larger than allowed"."""
    return isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError)


class KafkaDeadLetter:
    """The dead-letter sink of one Kafka subscription (see the module docstring).

    Args:
        producer: returns the broker's started producer.
        spec: the subscriber; ``spec.dlq_topic`` is the destination (``None``: disabled).
        max_request_size: the producer's limit in bytes, which bounds a truncated copy.

    Calling it returns once the copy (or a truncated copy) is acknowledged, or the message
    was parked or dropped (dead-lettering disabled); it raises only transient errors.
    """

    def __init__(
        self,
        producer: Callable[[], AIOKafkaProducer],
        spec: SubscriberSpec,
        *,
        max_request_size: int,
    ) -> None:
        self._producer = producer
        self._spec = spec
        self._label = spec.display_name
        self.topic = spec.dlq_topic
        self._body_limit = min(DLQ_TRUNCATED_BODY_BYTES, max_request_size // 2)
        self.parked = 0  # messages the DLQ refused permanently (see the module docstring)

    async def __call__(self, message: Message, result: ProcessResult) -> None:
        source = message.topic or self._spec.topic
        reason = result.reason[:MAX_DLQ_REASON]
        if self.topic is None:
            _log.error(
                "%s: dropping message %s after %d attempt(s), dead-lettering is disabled: %s",
                self._label,
                message.id,
                result.attempts,
                reason,
                extra={"subscriber": self._label, "topic": source},
            )
            return
        dlq: _Headers = list(encode_headers(dlq_headers(message, result, topic=source)))
        original = _original_headers(message, {name for name, _ in dlq})
        try:
            await self._send(message.key, message.body, original + dlq)
        except Exception as exc:
            if not is_permanent(exc):
                raise  # transient: the subscription retries, the partition waits
            refused = exc
        else:
            _log.warning(
                "%s: dead-lettered message %s to %s: %s",
                self._label,
                message.id,
                self.topic,
                reason,
                extra={"subscriber": self._label, "topic": source, "dlq": self.topic},
            )
            return
        if is_too_large(refused):
            try:
                await self._send_truncated(message, original, dlq, refused)
            except Exception as exc:
                if not is_permanent(exc):
                    raise
                self._park(message, reason, f"{_why(refused)}; truncated copy: {_why(exc)}")
            return
        self._park(message, reason, _why(refused))

    async def _send(self, key: bytes | None, body: bytes, headers: _Headers) -> None:
        assert self.topic is not None
        # send() raises client-side refusals (a record above max_request_size) at once;
        # the broker's answer comes through the future.
        future = await self._producer().send(self.topic, body, key=key, headers=headers)
        await future

    async def _send_truncated(
        self, message: Message, original: _Headers, dlq: _Headers, refused: Exception
    ) -> None:
        body = message.body[: self._body_limit]
        cut = "body"
        if sum(len(name) + len(value or b"") for name, value in original) > self._body_limit:
            original, cut = [], "body,headers"
        extra: _Headers = [
            (DLQ_TRUNCATED, cut.encode()),
            (DLQ_ORIGINAL_SIZE, str(len(message.body)).encode()),
            (DLQ_PUBLISH_ERROR, header_bytes(_why(refused))),
        ]
        await self._send(message.key, body, original + dlq + extra)
        _log.error(
            "%s: message %s (%d-byte body) is too large for the dead-letter topic %s (%s); "
            "dead-lettered a truncated copy (cut: %s) pointing at the original",
            self._label,
            message.id,
            len(message.body),
            self.topic,
            _why(refused),
            cut,
            extra={"subscriber": self._label, "dlq": self.topic},
        )

    def _park(self, message: Message, reason: str, refusal: str) -> None:
        self.parked += 1
        source = message.topic or self._spec.topic
        _log.critical(
            "%s: PARKED message %s (topic %s, partition %s, offset %s, %d-byte body): the "
            "dead-letter topic %s refused it permanently (%s), so it is NOT in the DLQ. Its "
            "offset is committed so that the partition keeps flowing; the record stays in "
            "its source topic at that offset while retention keeps it. It was dead because: %s",
            self._label,
            message.id,
            source,
            message.partition,
            message.offset,
            len(message.body),
            self.topic,
            refusal,
            reason,
            extra={
                "subscriber": self._label,
                "topic": source,
                "partition": message.partition,
                "offset": message.offset,
                "dlq": self.topic,
            },
        )


def _why(exc: BaseException) -> str:
    return describe_exception(exc)[:MAX_DLQ_REASON]


def _original_headers(message: Message, replaced: set[str]) -> _Headers:
    """The record's own headers (exact bytes, nulls, repeats), minus those in ``replaced``;
    the message's headers when it is not a consumed record."""
    raw: Any = getattr(message.raw, "headers", None)
    if raw is None:
        headers: _Headers = list(encode_headers(message.headers))
    else:
        headers = list(raw)
    return [(name, value) for name, value in headers if name not in replaced]
