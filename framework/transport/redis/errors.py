"""Errors raised by the Redis broker, each with a message that says what to check."""

from __future__ import annotations

from framework.broker.errors import BrokerUnavailableError

__all__ = [
    "PublishFailedError",
    "PublishTimeoutError",
    "RedisUnavailableError",
    "StreamGroupError",
]


class RedisUnavailableError(ConnectionError):
    """Redis could not be reached (or refused us) within the connect timeout."""


class PublishFailedError(RuntimeError):
    """An ``XADD`` failed: Redis refused it (wrong key type, out of memory, bad trimming
    argument), or it was not answered within ``publish_timeout``."""


class PublishTimeoutError(PublishFailedError, BrokerUnavailableError):
    """An ``XADD`` was not answered with an entry id within ``publish_timeout`` (Redis down
    or unreachable): also a 503 ``BROKER_UNAVAILABLE`` :class:`~framework.errors.Error`."""

    def __init__(self, message: str, *, topic: str, timeout: float) -> None:
        BrokerUnavailableError.__init__(self, message, broker="redis", topic=topic, timeout=timeout)


class StreamGroupError(RuntimeError):
    """A consumer group could not be created or read (the key holds another type, an invalid
    ``start_id``, bad subscriber options)."""
