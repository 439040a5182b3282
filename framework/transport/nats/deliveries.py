"""NATS messages as framework messages, and the dead-letter copies made of them.

A JetStream message's reply subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>
...``) says how often it was delivered, which is the framework's ``attempt``: a retry is a
``nak`` with a delay, and JetStream counts the redelivery. ``Message.id`` is the publisher's
``Nats-Msg-Id`` (stable across redeliveries), else ``<stream>/<sequence>``; ``offset`` is the
stream sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from framework.broker.broker import ProcessResult
from framework.broker.message import Message
from framework.broker.publisher import dlq_headers
from framework.transport.nats.headers import MSG_ID, decode_headers

__all__ = [
    "DeadLetterPublish",
    "dead_letter",
    "dead_letter_headers",
    "dead_letter_id",
    "to_message",
]

log = logging.getLogger("pykratos.nats")

#: ``publish(subject, body, key, headers, msg_id)``: a publish confirmed by JetStream.
DeadLetterPublish = Callable[[str, bytes, bytes | None, dict[str, str], str], Awaitable[object]]


def _ack_subject(reply: str) -> tuple[str, int, int, float]:
    """``(stream, delivered, stream sequence, timestamp)`` of a JetStream ack subject: v1
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` or v2 with a
    domain and an account hash before the stream (and a trailing token)."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return tokens[2], int(tokens[4]), int(tokens[5]), int(tokens[7]) / 1e9
    return tokens[4], int(tokens[6]), int(tokens[7]), int(tokens[9]) / 1e9


def to_message(msg: Msg, *, jetstream: bool) -> Message:
    """A received NATS message as a :class:`Message` (``raw`` is the nats-py ``Msg``)."""
    raw_headers = msg.headers
    if raw_headers:
        headers, key = decode_headers(raw_headers)
        msg_id = raw_headers.get(MSG_ID, "")
    else:
        headers, key, msg_id = {}, None, ""
    if not jetstream:
        return Message(msg.data, msg.subject, key, headers, msg_id, raw=msg)
    stream, delivered, sequence, stamp = _ack_subject(msg.reply)
    # Positional construction: this runs once per consumed message.
    return Message(
        msg.data,
        msg.subject,
        key,
        headers,
        msg_id or f"{stream}/{sequence}",
        None,
        sequence,
        None,
        stamp,
        delivered,
        msg,
    )


def dead_letter_headers(message: Message, result: ProcessResult) -> dict[str, str]:
    """The copy's headers: the message's own plus the DLQ headers of
    :mod:`framework.broker.policy` (JetStream's delivery count may know more attempts than
    this process made)."""
    attempts = max(result.attempts, message.attempt)
    return {
        **message.headers,
        **dlq_headers(message, result, topic=message.topic, attempts=attempts),
    }


def dead_letter_id(message: Message) -> str:
    """``Nats-Msg-Id`` of the dead-letter copy: derived from the original's, so the copy of a
    message dead-lettered twice (a crash between the publish and the ``term``) is stored once
    within the stream's duplicate window."""
    return f"{message.id}.dlq"


async def dead_letter(
    publish: DeadLetterPublish,
    subject: str | None,
    message: Message,
    result: ProcessResult,
    name: str,
) -> bool:
    """Publish the dead-letter copy of ``message`` to ``subject`` (``None``: dead-lettering
    is disabled, the message is only logged). Returns False when the publish failed (logged),
    so the caller can keep the message instead of losing it."""
    if subject is None:
        log.error(
            "%s: dropping message %s after %d attempt(s): %s (dead-lettering disabled)",
            name,
            message.id,
            max(result.attempts, message.attempt),
            result.reason,
        )
        return True
    try:
        await publish(
            subject,
            message.body,
            message.key,
            dead_letter_headers(message, result),
            dead_letter_id(message),
        )
    except Exception:
        log.exception("%s: cannot dead-letter message %s to %r", name, message.id, subject)
        return False
    log.warning("%s: dead-lettered message %s to %s: %s", name, message.id, subject, result.reason)
    return True
