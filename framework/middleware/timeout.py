"""Timeout: bound a handler's run time; an overrun becomes 504 ``TIMEOUT``.

This middleware runs on every request, so it does not schedule one timer per request (each
``call_later`` lands in the event loop's timer heap, and with long timeouts at high request
rates that heap holds hundreds of thousands of cancelled entries). Requests are grouped by
deadline into buckets of ``resolution`` seconds; one timer per bucket cancels whatever in it
is still running. A handler therefore gets between ``seconds`` and ``seconds + resolution``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from framework.errors import GatewayTimeout
from framework.middleware.core import Handler, Middleware, declare_errors

__all__ = ["TIMEOUT", "timeout"]

TIMEOUT = "TIMEOUT"


class _DeadlineBuckets:
    """Tasks grouped by deadline; one loop timer per non-empty bucket."""

    def __init__(self, seconds: float, resolution: float) -> None:
        self.seconds = seconds
        self.resolution = resolution
        self.buckets: dict[int, set[asyncio.Task[Any]]] = {}
        self.expired: set[asyncio.Task[Any]] = set()

    def add(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> int:
        slot = math.ceil((loop.time() + self.seconds) / self.resolution)
        bucket = self.buckets.get(slot)
        if bucket is None:
            bucket = self.buckets[slot] = set()
            loop.call_at(slot * self.resolution, self._expire, slot)
        bucket.add(task)
        return slot

    def _expire(self, slot: int) -> None:
        for task in self.buckets.pop(slot, ()):
            if not task.done():
                self.expired.add(task)
                task.cancel()


def timeout(seconds: float, *, resolution: float | None = None) -> Middleware:
    """Cancel the handler after ``seconds`` and raise ``Error(504, "TIMEOUT")``.

    ``resolution`` (default: a tenth of ``seconds``, at most 0.1 s) is how late the
    cancellation may come. Only this middleware's expiry becomes a 504: a ``TimeoutError``
    raised by the handler itself, or a cancellation from elsewhere (client gone, server
    stopping), passes through unchanged.
    """
    if seconds <= 0:
        raise ValueError(f"timeout must be positive, got {seconds}")
    step = resolution if resolution is not None else min(seconds / 10, 0.1)
    if step <= 0:
        raise ValueError(f"resolution must be positive, got {step}")

    def middleware(handler: Handler) -> Handler:
        deadlines = _DeadlineBuckets(seconds, step)
        buckets, expired = deadlines.buckets, deadlines.expired

        async def run(request: Any) -> Any:
            task = asyncio.current_task()
            if task is None:  # not inside a task: nothing to cancel
                return await handler(request)
            slot = deadlines.add(asyncio.get_running_loop(), task)
            try:
                return await handler(request)
            except asyncio.CancelledError as exc:
                if task in expired:
                    expired.discard(task)
                    if task.uncancel() == 0:
                        raise GatewayTimeout(TIMEOUT, f"handler exceeded {seconds}s") from exc
                raise
            finally:
                bucket = buckets.get(slot)
                if bucket is not None:
                    bucket.discard(task)
                elif task in expired:
                    # Expired, but the handler swallowed the cancellation: withdraw it (as
                    # asyncio.timeout does), or the task would stay cancelling and its next
                    # timeout here would surface as a CancelledError, not a 504.
                    expired.discard(task)
                    task.uncancel()

        return run

    return declare_errors(middleware, {504: f"{TIMEOUT}: the handler ran longer than {seconds:g}s"})
