"""Delivery policy values shared by every broker: retry/backoff, batching, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from framework.checks import check_counts, check_seconds

__all__ = [
    "DLQ_ATTEMPTS",
    "DLQ_ERROR_TYPE",
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_SIZE",
    "DLQ_ORIGINAL_TOPIC",
    "DLQ_PUBLISH_ERROR",
    "DLQ_REASON",
    "DLQ_TRUNCATED",
    "DLQ_TRUNCATED_BODY_BYTES",
    "BatchPolicy",
    "RetryPolicy",
    "default_dlq_topic",
]

# Header names written on every dead-lettered message, whatever the broker.
DLQ_REASON = "x-dlq-reason"
DLQ_ERROR_TYPE = "x-dlq-error-type"
DLQ_ORIGINAL_TOPIC = "x-original-topic"
DLQ_ORIGINAL_PARTITION = "x-original-partition"
DLQ_ORIGINAL_OFFSET = "x-original-offset"
DLQ_ATTEMPTS = "x-attempts"
# Written only on a truncated dead letter: the full copy was refused as too large (larger
# than the producer's or the broker's limit), so the DLQ gets the first
# DLQ_TRUNCATED_BODY_BYTES of the body, a pointer to the original (x-original-topic,
# -partition, -offset) and these headers.
DLQ_TRUNCATED = "x-dlq-truncated"  # what was cut: "body" or "body,headers"
DLQ_ORIGINAL_SIZE = "x-original-size"  # bytes of the original body
DLQ_PUBLISH_ERROR = "x-dlq-publish-error"  # why the full copy was refused
DLQ_TRUNCATED_BODY_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing handler is retried before dead-lettering.

    ``max_attempts`` counts the first delivery: 1 means "no retry". The wait before attempt
    ``n+1`` is ``min(backoff * multiplier**(n-1), max_backoff)`` seconds.
    """

    max_attempts: int = 3
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        check_counts("RetryPolicy", max_attempts=self.max_attempts)
        check_seconds(
            "RetryPolicy", allow_zero=True, backoff=self.backoff, max_backoff=self.max_backoff
        )
        multiplier = self.multiplier
        number = isinstance(multiplier, int | float) and not isinstance(multiplier, bool)
        if not number or not 1 <= multiplier <= 1000:  # NaN fails both comparisons
            raise ValueError(
                f"RetryPolicy: multiplier must be between 1 and 1000, got {multiplier!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff * self.multiplier ** max(attempt - 1, 0), self.max_backoff)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """Deliver messages to a batch handler in lists of up to ``max_size``, waiting at most
    ``max_wait`` seconds to fill one."""

    max_size: int = 100
    max_wait: float = 0.05

    def __post_init__(self) -> None:
        check_counts("BatchPolicy", max_size=self.max_size)
        check_seconds("BatchPolicy", allow_zero=True, max_wait=self.max_wait)


def default_dlq_topic(topic: str) -> str:
    """``<topic>.dlq``: where dead letters of ``topic`` go unless configured otherwise."""
    return f"{topic}.dlq"
