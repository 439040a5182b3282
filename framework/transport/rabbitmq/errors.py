"""Errors raised by the RabbitMQ broker, each with a message that says what to check."""

from __future__ import annotations

from framework.broker.errors import BrokerUnavailableError

__all__ = [
    "MessageTooLargeError",
    "PublishFailedError",
    "PublishTimeoutError",
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
    """A publish failed: not confirmed within ``publish_timeout``, or refused."""


class PublishTimeoutError(PublishFailedError, BrokerUnavailableError):
    """A publish was not confirmed within ``publish_timeout`` (RabbitMQ down, unreachable or
    nacking): also a 503 ``BROKER_UNAVAILABLE`` :class:`~framework.errors.Error`."""

    def __init__(self, message: str, *, topic: str, timeout: float) -> None:
        BrokerUnavailableError.__init__(
            self, message, broker="rabbitmq", topic=topic, timeout=timeout
        )


class UnroutableError(PublishFailedError):
    """A mandatory publish matched no queue: the broker returned it (nobody would get it)."""


class MessageTooLargeError(PublishFailedError):
    """The message is too large for RabbitMQ: the broker refused it as larger than its
    ``max_message_size``, or its properties (headers) do not fit in one frame of the
    connection (refused before it is written, see
    :mod:`~framework.transport.rabbitmq.framesize`). The same message is refused on every
    retry."""
