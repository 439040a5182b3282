"""A concurrency limit: at most ``limit`` calls running at once (a bulkhead)."""

from __future__ import annotations

from framework.middleware.ratelimit.bbr import Done

__all__ = ["MaxInFlight"]


class MaxInFlight:
    """Admit a call only while fewer than ``limit`` admitted calls are running.

    The simplest overload guard and the one with the tightest latency bound: an admitted
    call shares the event loop with at most ``limit - 1`` others, so its latency stays near
    the unloaded one whatever the offered load, and every call beyond is refused at once.
    Size ``limit`` to what the service overlaps usefully: about 1-2 per core for CPU-bound
    handlers, more for handlers that mostly wait on I/O (Little's law: target throughput x
    unloaded latency). Unlike :class:`~framework.middleware.ratelimit.BBR` it needs no
    history and no CPU signal, so it sheds from the first call over the limit.

    Not thread-safe: one event loop per instance (as every server here).

    Args:
        limit: calls allowed to run at once (>= 1).

    Raises:
        ValueError: ``limit`` below 1.
    """

    __slots__ = ("_done", "in_flight", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 call, got {limit!r}")
        self.limit = limit
        self.in_flight = 0
        self._done: Done = self._leave  # bound once, not per call

    def allow(self) -> Done | None:
        """Admit a call (returns its ``done`` callback) or refuse it (``None``)."""
        if self.in_flight >= self.limit:
            return None
        self.in_flight += 1
        return self._done

    def _leave(self) -> None:
        self.in_flight -= 1
