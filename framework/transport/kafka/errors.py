"""Errors of the Kafka broker, each naming what it could not reach or do."""

from __future__ import annotations

from framework.broker.errors import BrokerUnavailableError

__all__ = [
    "KafkaJoinError",
    "KafkaProducerError",
    "KafkaPublishTimeoutError",
    "KafkaUnavailableError",
]


class KafkaUnavailableError(ConnectionError):
    """The bootstrap servers could not be reached (or did not answer) in time.

    The message names the servers, what went wrong and how long was tried (``elapsed``
    seconds, when known).
    """

    def __init__(
        self, servers: str, cause: BaseException | str, elapsed: float | None = None
    ) -> None:
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        tried = "" if elapsed is None else f" (tried for {elapsed:.2f}s)"
        super().__init__(f"Kafka broker unreachable at {servers}{tried}: {detail}")
        self.servers = servers
        self.elapsed = elapsed


class KafkaPublishTimeoutError(BrokerUnavailableError):
    """A publish was not acknowledged within ``publish_timeout`` (or the client gave up on
    the cluster first): a 503 ``BROKER_UNAVAILABLE`` :class:`~framework.errors.Error`.

    The record may still be sent once the cluster is back (the client keeps it queued), so
    a caller that retries can produce a duplicate: at-least-once, as everywhere.
    """

    def __init__(self, message: str, *, topic: str, timeout: float) -> None:
        super().__init__(message, broker="kafka", topic=topic, timeout=timeout)


class KafkaJoinError(RuntimeError):
    """A consumer could not join its group or got no partition assignment in time."""


class KafkaProducerError(RuntimeError):
    """The cluster answered but the producer could not start (e.g. no idempotent producer)."""
