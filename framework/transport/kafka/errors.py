"""Errors of the Kafka broker, each naming what it could not reach or do."""

from __future__ import annotations

__all__ = ["KafkaJoinError", "KafkaProducerError", "KafkaUnavailableError"]


class KafkaUnavailableError(ConnectionError):
    """The bootstrap servers could not be reached (or did not answer) in time."""

    def __init__(self, servers: str, cause: BaseException | str) -> None:
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"Kafka broker unreachable at {servers}: {detail}")
        self.servers = servers


class KafkaJoinError(RuntimeError):
    """A consumer could not join its group or got no partition assignment in time."""


class KafkaProducerError(RuntimeError):
    """The cluster answered but the producer could not start (e.g. no idempotent producer)."""
