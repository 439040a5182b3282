"""A log line a client can trigger at will, written at most once per interval.

Bad input from the network (undecodable request bytes, ...) deserves a line in the log, but
not one per request: any client could then flood it. A :class:`LogThrottle` lets the first
occurrence through, counts the ones that follow within ``interval`` seconds, and reports that
count on the next line it lets through::

    throttle = LogThrottle(60.0)
    ...
    suppressed = throttle.admit()
    if suppressed is not None:
        log.warning("bad request on %s (%d similar suppressed)", method, suppressed)

Use one throttle per source (per method, per subscriber): each then logs at least once per
interval whatever the others do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["LogThrottle"]


class LogThrottle:
    """Admit one event per ``interval`` seconds; count the others.

    Args:
        interval: seconds between two admitted events (> 0).
        clock: monotonic clock in seconds (tests pass their own).

    Not thread-safe: meant for one event loop.
    """

    __slots__ = ("_clock", "_next", "_suppressed", "interval")

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def admit(self) -> int | None:
        """``None`` if this event must not be logged; else how many were suppressed before it."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self.interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
