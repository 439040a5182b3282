"""An adaptive limiter in the spirit of Kratos' BBR (``aegis/ratelimit/bbr``).

The limiter learns what the service can do from what it did: over a rolling window (10 s in
100 buckets by default) it tracks calls completed per bucket and their response times. By
Little's law, the best concurrency the service sustained is

    max_in_flight = max completions per bucket * buckets per second * min mean RT (s)

While CPU usage (:class:`~framework.middleware.ratelimit.cpu.CpuUsage`) is at or above the
threshold (80 % of a core by default), a call arriving when more than ``max_in_flight`` calls
are already running is refused; once shedding started it goes on for a cool-off second from
its start even if CPU dips, as in Kratos, so the limiter does not flap. Below the threshold
nothing is refused. A refused call costs a few comparisons: it never enters the window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from framework.middleware.ratelimit.cpu import CpuUsage

__all__ = ["BBR", "Done"]

#: Called when an admitted call finishes (records its response time).
Done = Callable[[], None]


class _Window:
    """Per-bucket completion counts and response-time sums over a rolling window."""

    __slots__ = ("_count", "_epoch", "_max_cache", "_min_cache", "_rt", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._epoch = [-1] * size
        self._count = [0] * size
        self._rt = [0.0] * size
        self._max_cache = (-1, 1)
        self._min_cache = (-1, 0.0)

    def add(self, epoch: int, rt: float) -> None:
        i = epoch % self.size
        if self._epoch[i] != epoch:
            self._epoch[i], self._count[i], self._rt[i] = epoch, 0, 0.0
        self._count[i] += 1
        self._rt[i] += rt

    def _finished(self, epoch: int) -> list[int]:
        """Indexes of the buckets in the window, the current (unfinished) one excluded."""
        oldest = epoch - self.size
        return [i for i, e in enumerate(self._epoch) if oldest < e < epoch and self._count[i]]

    def max_pass(self, epoch: int) -> int:
        """Most completions in one finished bucket (1 when there is no history)."""
        if self._max_cache[0] != epoch:
            best = max((self._count[i] for i in self._finished(epoch)), default=1)
            self._max_cache = (epoch, max(best, 1))
        return self._max_cache[1]

    def min_rt(self, epoch: int) -> float:
        """Lowest mean response time of a finished bucket, in seconds (0 without history)."""
        if self._min_cache[0] != epoch:
            means = [self._rt[i] / self._count[i] for i in self._finished(epoch)]
            self._min_cache = (epoch, min(means, default=0.0))
        return self._min_cache[1]


class BBR:
    """Adaptive limiter: refuse calls beyond the learned concurrency while CPU is high.

    Args:
        window: seconds of history (default 10).
        buckets: buckets in the window (default 100: 100 ms each).
        cpu_threshold: per mille of one core at which shedding starts (default 800).
        cpu: the CPU usage source; default a :class:`CpuUsage` of this process.
        cool_off: seconds after shedding started during which it continues below the
            threshold, while in-flight stays above the limit (default 1).
        clock: monotonic seconds, for tests.
    """

    def __init__(
        self,
        window: float = 10.0,
        buckets: int = 100,
        cpu_threshold: float = 800.0,
        *,
        cpu: Callable[[], float] | None = None,
        cool_off: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window <= 0 or buckets < 2:
            raise ValueError(f"need window > 0 and buckets >= 2, got {window!r}, {buckets!r}")
        self._bucket_seconds = window / buckets
        self._buckets_per_second = buckets / window
        self._window = _Window(buckets)
        self._threshold = cpu_threshold
        self._cpu = cpu if cpu is not None else CpuUsage().read
        self._cool_off = cool_off
        self._clock = clock
        self._dropped_at: float | None = None
        self.in_flight = 0

    def max_in_flight(self) -> int:
        """The concurrency the service sustained at best (Little's law over the window)."""
        epoch = int(self._clock() / self._bucket_seconds)
        window = self._window
        rt = window.min_rt(epoch)
        return math.floor(window.max_pass(epoch) * self._buckets_per_second * rt + 0.5)

    def _should_drop(self) -> bool:
        in_flight = self.in_flight
        if self._cpu() < self._threshold:
            if self._dropped_at is None:
                return False
            if self._clock() - self._dropped_at <= self._cool_off:
                return in_flight > 1 and in_flight > self.max_in_flight()
            self._dropped_at = None
            return False
        if in_flight > 1 and in_flight > self.max_in_flight():
            if self._dropped_at is None:
                self._dropped_at = self._clock()
            return True
        return False

    def allow(self) -> Done | None:
        """Admit a call: return its ``done`` callback, or ``None`` when it must be refused."""
        if self._should_drop():
            return None
        self.in_flight += 1
        clock = self._clock
        started = clock()

        def done() -> None:
            now = clock()
            self.in_flight -= 1
            self._window.add(int(now / self._bucket_seconds), now - started)

        return done
