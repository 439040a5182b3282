"""Errors raised by the Redis broker, each with a message that says what to check."""

from __future__ import annotations

__all__ = ["PublishFailedError", "RedisUnavailableError", "StreamGroupError"]


class RedisUnavailableError(ConnectionError):
    """Redis could not be reached (or refused us) within the connect timeout."""


class PublishFailedError(RuntimeError):
    """An ``XADD`` was not answered with an entry id within ``publish_timeout`` (Redis
    unreachable meanwhile), or Redis refused it (wrong key type, bad trimming argument)."""


class StreamGroupError(RuntimeError):
    """A consumer group could not be created or read (the key holds another type, an invalid
    ``start_id``, bad subscriber options)."""
