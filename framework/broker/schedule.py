"""Delayed and scheduled delivery: the arguments every broker's ``publish`` shares.

``publish(..., delay=seconds)`` and ``publish(..., deliver_at=datetime)`` are two spellings
of one request: deliver the message no earlier than a moment. :func:`due_time` checks them
the same way on every broker (RocketMQ's delay levels and scheduled messages are the
model; here any delay is exact to the broker's resolution) and returns the due time as
Unix epoch seconds, or ``None`` for an immediate publish.

Rules (every broker):

* ``delay`` is seconds (``int`` or ``float``), ``>= 0``; ``0`` means now.
* ``deliver_at`` must be timezone-aware (a naive datetime has no defined instant: refused
  with :class:`ValueError`); a moment in the past means deliver now.
* Both at once is a :class:`ValueError` (they could disagree).
* A broker that cannot defer delivery raises :class:`NotImplementedError` at publish,
  never ignores the request.

Delayed messages that travel through a framework relay (Kafka, NATS, Redis) carry their due
time in the :data:`DUE_HEADER` header (epoch milliseconds, decimal text).
"""

from __future__ import annotations

import math
import time
from datetime import datetime

__all__ = ["DUE_HEADER", "due_ms", "due_time", "refuse_delay", "remaining", "wants_delay"]

#: Header of a message waiting in a framework delay relay: its due time, Unix epoch
#: milliseconds as decimal text. Stripped before the message reaches its topic.
DUE_HEADER = "x-pykratos-due-ms"


def wants_delay(delay: float | None, deliver_at: datetime | None) -> bool:
    """Whether the caller asked for deferred delivery at all (either argument given and not
    a zero ``delay``), before validating it: brokers that refuse delays check this."""
    return deliver_at is not None or (delay is not None and delay != 0)


def due_time(
    delay: float | None, deliver_at: datetime | None, *, now: float | None = None
) -> float | None:
    """The due time, Unix epoch seconds, of a publish with these arguments; ``None`` when
    the message is for now (no argument, ``delay=0``, or ``deliver_at`` in the past).

    Args:
        delay: seconds from ``now``; ``>= 0`` and finite.
        deliver_at: a timezone-aware :class:`~datetime.datetime`.
        now: the current epoch time (``time.time()`` by default).

    Raises:
        ValueError: both given; a negative, NaN or infinite ``delay``; a naive
            ``deliver_at``.
        TypeError: ``delay`` not a number or ``deliver_at`` not a datetime.
    """
    if delay is not None and deliver_at is not None:
        raise ValueError(
            f"give delay= or deliver_at=, not both (delay={delay!r}, deliver_at={deliver_at!r})"
        )
    if now is None:
        now = time.time()
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        return now + delay if delay > 0 else None
    if deliver_at is not None:
        if not isinstance(deliver_at, datetime):
            raise TypeError(f"deliver_at must be a datetime, got {type(deliver_at).__name__}")
        if deliver_at.tzinfo is None or deliver_at.utcoffset() is None:
            raise ValueError(
                f"deliver_at must be timezone-aware (e.g. datetime.now(UTC) + timedelta(...)), "
                f"got the naive {deliver_at.isoformat()}"
            )
        due = deliver_at.timestamp()
        return due if due > now else None
    return None


def due_ms(due: float) -> int:
    """``due`` (epoch seconds) as whole epoch milliseconds, rounded up: a message released
    at that millisecond is never early."""
    return math.ceil(due * 1000)


def remaining(due: float | None, *, now: float | None = None) -> float:
    """Seconds from ``now`` until ``due`` (epoch seconds), ``0.0`` if due or ``None``."""
    if due is None:
        return 0.0
    return max(due - (time.time() if now is None else now), 0.0)


def refuse_delay(
    kind: str, topic: str, delay: float | None, deliver_at: datetime | None, why: str
) -> None:
    """For a broker that cannot defer delivery: check the arguments like :func:`due_time`,
    then raise :class:`NotImplementedError` naming the broker, the topic and ``why`` if a
    delay or a ``deliver_at`` (even a past one: the same call must not work only sometimes)
    was asked for. Returns when neither was.
    """
    due_time(delay, deliver_at)
    if wants_delay(delay, deliver_at):
        asked = f"delay={delay!r}" if deliver_at is None else f"deliver_at={deliver_at.isoformat()}"
        raise NotImplementedError(
            f"the {kind} broker cannot defer delivery (publish to {topic!r} with {asked}): {why}"
        )
