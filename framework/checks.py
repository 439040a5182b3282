"""Checking the numbers a broker, registry or publisher is constructed with, the same way
everywhere.

Config files go through each broker's pydantic schema, but code may build a broker directly
(``RabbitBroker(publish_timeout=...)``), and a ``NaN`` slips through comparisons such as
``value <= 0`` (every comparison with ``NaN`` is false): the broker would start and then
fail far from the cause, in a timer or a timeout. These checks name the broker and the
argument instead, at construction.

Seconds also have an upper bound, :data:`MAX_SECONDS`: a huge one (``1e30``, a typo or a unit
slip) is finite but overflows where it becomes a date, a ``timedelta`` or a native timeout,
again far from the cause (the outbox clean-up logged ``OverflowError`` on every round).
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["MAX_SECONDS", "check_counts", "check_seconds"]

#: The largest number of seconds any setting takes: 10**9 s, about 31.7 years. Far beyond
#: any timeout, interval or retention anyone means, and small enough to stay representable
#: everywhere it goes: a ``timedelta`` or a date that far back (``now - 31 years``),
#: nanoseconds in an int64 (NATS, 1e18 < 9.2e18), milliseconds in a float.
MAX_SECONDS = 10**9


def check_seconds(
    owner: str, *, allow_zero: bool = False, maximum: float = MAX_SECONDS, **values: float
) -> None:
    """Each of ``values`` must be a finite real number of seconds, > 0 (>= 0 with
    ``allow_zero``, for settings where 0 means "none" or "unlimited") and <= ``maximum``
    (:data:`MAX_SECONDS` unless a setting has a tighter natural bound).

    Raises:
        ValueError: naming ``owner`` and the argument (``bool``, ``NaN``, infinities,
            non-numbers and values above ``maximum`` are refused).
    """
    bound = ">= 0" if allow_zero else "> 0"
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not math.isfinite(value)
            or value < 0
            or (value == 0 and not allow_zero)
            or value > maximum
        ):
            raise ValueError(
                f"{owner}: {name} must be a finite number of seconds {bound} and "
                f"<= {maximum}, got {value!r}"
            )


def check_counts(
    owner: str, *, minimum: int = 1, maximum: int | None = None, **values: int
) -> None:
    """Each of ``values`` must be an ``int`` (not ``bool``) between ``minimum`` and
    ``maximum`` (inclusive; no upper bound when ``None``).

    Raises:
        ValueError: naming ``owner``, the argument and the range.
    """
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            span = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ValueError(f"{owner}: {name} must be an int {span}, got {value!r}")
