"""Event-loop lag as an overload signal, for the adaptive limiter on a shared host.

CPU usage of the process (:mod:`~framework.middleware.ratelimit.cpu`) only reaches 80 % of a
core when the process gets that core; on a host whose cores are shared (containers without a
dedicated CPU, a busy CI machine) an overloaded service may never get there, and requests
queue on the event loop all the same. The loop's lag says it directly: a timer due every
``interval`` seconds runs late by however long the loop was busy with other work. The lag is
smoothed (exponential moving average) and reported on the same 0..1000 scale as
:class:`~framework.middleware.ratelimit.cpu.CpuUsage`, ``saturated`` seconds of lag reading
1000, so it can replace it: ``BBR(cpu=LoopLag().read)``.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["LoopLag"]


class LoopLag:
    """Smoothed event-loop lag, 0..1000 (``saturated`` seconds of lag or more = 1000).

    Args:
        interval: seconds between probes (default 0.05).
        saturated: lag in seconds that reads as 1000 (default 0.02: with the default
            threshold of 800, shedding starts once the loop runs 16 ms late on average).
        decay: weight of the previous value in the moving average.

    The probe starts on the first :meth:`read` inside a running loop and follows that loop;
    outside a loop :meth:`read` returns 0.
    """

    __slots__ = ("_decay", "_interval", "_loop", "_saturated", "value")

    def __init__(self, interval: float = 0.05, saturated: float = 0.02, decay: float = 0.5) -> None:
        if interval <= 0 or saturated <= 0 or not 0 <= decay < 1:
            raise ValueError("need interval > 0, saturated > 0 and 0 <= decay < 1")
        self._interval = interval
        self._saturated = saturated
        self._decay = decay
        self._loop: asyncio.AbstractEventLoop | None = None
        self.value = 0.0

    def read(self) -> float:
        """The current smoothed lag on the 0..1000 scale."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0.0
        if loop is not self._loop:
            self._loop = loop
            self.value = 0.0
            self._schedule(loop)
        return self.value

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        due = time.perf_counter() + self._interval
        loop.call_later(self._interval, self._probe, loop, due)

    def _probe(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if loop is not self._loop:
            return  # a newer loop took over
        lag = max(0.0, time.perf_counter() - due)
        sample = min(1000.0, lag / self._saturated * 1000.0)
        self.value = self.value * self._decay + sample * (1.0 - self._decay)
        self._schedule(loop)
