"""Errors raised by the NATS broker, each with a message that says what to check."""

from __future__ import annotations

__all__ = [
    "MessageTooLargeError",
    "NatsUnavailableError",
    "PublishFailedError",
    "PublishRefusedError",
    "StreamError",
]


class NatsUnavailableError(ConnectionError):
    """The NATS server could not be reached (or has no JetStream) within the connect timeout."""


class StreamError(RuntimeError):
    """A JetStream stream or consumer could not be found, created or updated (no stream
    captures a subject while ``create_streams`` is off, overlapping subjects, a durable
    consumer that exists with another filter subject, bad subscriber options)."""


class PublishFailedError(RuntimeError):
    """A publish got no JetStream acknowledgement (PubAck) within ``publish_timeout``."""


class MessageTooLargeError(ValueError):
    """A message (body and headers) larger than the server's ``max_payload``: refused before
    it is sent (the server would close the connection), and the same on every retry."""


class PublishRefusedError(PublishFailedError, PermissionError):
    """The server refused the publish: the connection's user may not publish to the subject
    (``Permissions Violation``). The same on every retry (the outbox dead-letters it)."""
