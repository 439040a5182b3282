"""A token bucket: a steady rate with bursts, the classic per-operation limiter."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Admit ``rate`` calls per second on average and up to ``burst`` at once.

    The bucket holds at most ``burst`` tokens and refills continuously at ``rate`` tokens per
    second; each admitted call takes one. Refilling is computed on each :meth:`allow` from the
    time elapsed, so there is no timer. Not thread-safe: one event loop per bucket.

    Args:
        rate: tokens added per second (> 0).
        burst: bucket size (>= 1); defaults to ``rate`` rounded up (one second's worth).
        clock: monotonic seconds, for tests.

    Raises:
        ValueError: ``rate`` or ``burst`` out of range.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
        size = burst if burst is not None else max(1, int(-(-rate // 1)))
        if size < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = size
        self._clock = clock
        self._tokens = float(size)
        self._stamp = clock()

    def allow(self) -> bool:
        """Take a token if one is available; ``False`` means the call must be refused."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
