"""Cheap CPU usage of this process, for the adaptive limiter.

A Python service runs its handlers on one event-loop thread, so what saturates first is one
core, whatever the machine has: usage is this process's CPU time (``os.times()``, user +
system, a single system call) over wall time, in per mille of one core, smoothed like Kratos'
``cpu`` package (exponential moving average per sample). Sampling happens on
demand, at most once per ``interval``, so there is no background task.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["CpuUsage"]


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuUsage:
    """Smoothed CPU usage of this process, 0..1000 (per mille of one core).

    Args:
        interval: seconds between samples (default 0.25).
        decay: weight of the previous value in the moving average. Kratos uses 0.95 with
            500 ms samples (about 15 s to cross 80 %); 0.8 with 250 ms samples reacts in
            about 2 s, which an overloaded event loop needs.
        cpu_seconds, clock: sources, for tests.
    """

    __slots__ = ("_clock", "_cpu", "_decay", "_interval", "_last_cpu", "_last_wall", "value")

    def __init__(
        self,
        interval: float = 0.25,
        decay: float = 0.8,
        *,
        cpu_seconds: Callable[[], float] = _process_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self._interval = interval
        self._decay = decay
        self._cpu = cpu_seconds
        self._clock = clock
        self._last_wall = clock()
        self._last_cpu = cpu_seconds()
        self.value = 0.0

    def read(self) -> float:
        """The current smoothed usage, taking a new sample if ``interval`` has passed."""
        now = self._clock()
        elapsed = now - self._last_wall
        if elapsed >= self._interval:
            cpu = self._cpu()
            sample = min(1000.0, (cpu - self._last_cpu) / elapsed * 1000.0)
            self.value = self.value * self._decay + sample * (1.0 - self._decay)
            self._last_wall, self._last_cpu = now, cpu
        return self.value
