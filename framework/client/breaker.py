"""Circuit breaker: Google SRE adaptive throttling, per operation (client middleware).

From *Site Reliability Engineering*, "Handling Overload": over a rolling window the client
counts ``requests`` (every call, rejected ones included) and ``accepts`` (calls the backend
handled). It rejects locally with probability

    max(0, (requests - k * accepts) / (requests + 1))

so when the backend fails most calls, most calls stop reaching it, and as it recovers they
flow again without a half-open state. Like Kratos (``aegis/circuitbreaker/sre``), only
500/503/504 count as not accepted, and nothing is rejected under ``min_requests`` calls in
the window. A rejected call raises ``Error(503, "CIRCUITBREAKER")``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from framework.client.context import client_context
from framework.errors import ServiceUnavailable, from_exception
from framework.middleware.core import Handler, Middleware

__all__ = ["CIRCUITBREAKER", "SreBreaker", "circuit_breaker"]

CIRCUITBREAKER = "CIRCUITBREAKER"
_FAILURES = frozenset({500, 503, 504})


class SreBreaker:
    """One breaker: the rolling counts and the reject decision.

    Args:
        k: accepts multiplier (Kratos: 1 / success 0.6 ~ 1.67; the SRE book suggests 2).
        min_requests: calls in the window before anything is rejected (Kratos: 100).
        window: seconds of history; ``buckets`` slices of it roll out one by one.
    """

    __slots__ = ("_accepts", "_bucket", "_requests", "_started", "_width", "k", "min_requests")

    def __init__(
        self, k: float = 1.5, min_requests: int = 100, window: float = 3.0, buckets: int = 10
    ) -> None:
        self.k = k
        self.min_requests = min_requests
        self._width = window / buckets
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        self._bucket = 0
        self._started = time.monotonic()

    def _roll(self) -> int:
        slot = int((time.monotonic() - self._started) / self._width)
        if slot != self._bucket:
            size = len(self._requests)
            for step in range(min(slot - self._bucket, size)):
                index = (self._bucket + 1 + step) % size
                self._requests[index] = self._accepts[index] = 0
            self._bucket = slot
        return slot % len(self._requests)

    def allow(self) -> bool:
        """Decide for one call (and count it as a request)."""
        index = self._roll()
        requests = sum(self._requests)
        accepts = sum(self._accepts)
        self._requests[index] += 1
        if requests < self.min_requests:
            return True
        reject = (requests - self.k * accepts) / (requests + 1)
        return reject <= 0 or random.random() >= reject

    def accepted(self) -> None:
        """Count an accepted call (the backend answered, even with a 4xx)."""
        self._accepts[self._roll()] += 1

    @property
    def counts(self) -> tuple[int, int]:
        """(requests, accepts) in the window."""
        self._roll()
        return sum(self._requests), sum(self._accepts)


def circuit_breaker(**options: Any) -> Middleware:
    """An :class:`SreBreaker` per operation (gRPC method, HTTP method and path); ``options`` go
    to each breaker. Open: raises ``Error(503, "CIRCUITBREAKER")`` without calling."""
    breakers: dict[str, SreBreaker] = {}

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            call = client_context()
            operation = call.operation if call is not None else ""
            breaker = breakers.get(operation)
            if breaker is None:
                breaker = breakers[operation] = SreBreaker(**options)
            if not breaker.allow():
                raise ServiceUnavailable(
                    CIRCUITBREAKER,
                    f"circuit breaker open for {operation or 'this call'}: "
                    "the service fails too many calls",
                )
            try:
                reply = await handler(request)
            except Exception as exc:
                if from_exception(exc).code not in _FAILURES:
                    breaker.accepted()
                raise
            breaker.accepted()
            return reply

        return run

    return middleware
