"""Errors raised by the RabbitMQ broker, each with a message that says what to check."""

from __future__ import annotations

__all__ = [
    "MessageTooLargeError",
    "PublishFailedError",
    "RabbitUnavailableError",
    "TopologyError",
    "UnroutableError",
]


class RabbitUnavailableError(ConnectionError):
    """RabbitMQ could not be reached (or refused us) within the connect timeout."""


class TopologyError(RuntimeError):
    """An exchange or queue could not be declared, bound or found (wrong type or arguments
    of an existing one, missing exchange, bad subscriber options)."""


class PublishFailedError(RuntimeError):
    """A publish was not confirmed by the broker within ``publish_timeout``."""


class UnroutableError(PublishFailedError):
    """A mandatory publish matched no queue: the broker returned it (nobody would get it)."""


class MessageTooLargeError(PublishFailedError):
    """The broker refused the message as larger than its ``max_message_size`` (the same
    message is refused on every retry)."""
