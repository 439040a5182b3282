"""Retry with a budget, for idempotent calls (client middleware).

A failed attempt is retried when its error is retryable (503 ``UNAVAILABLE`` by default: the
instance is down, draining or unreachable) and the operation is idempotent. Each attempt goes
through the balancer again, so it usually lands on another instance.

The **budget** (Finagle's ``RetryBudget``, gRPC's retry throttling in spirit) bounds retries
to a fraction of the traffic, so an outage does not multiply the load: every call deposits
``ratio`` tokens (capped), every retry withdraws one; ``min_per_second`` retries per second
are always allowed, for low-traffic clients. With no token left, the error is returned.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection
from typing import Any

from framework.client.context import client_context
from framework.errors import from_exception
from framework.middleware.core import Handler, Middleware

__all__ = ["RetryBudget", "retry"]


class RetryBudget:
    """Tokens for retries: ``ratio`` per call (at most ``ratio * 100`` banked, and at least
    ``min_per_second``), plus ``min_per_second`` refilled each second."""

    def __init__(self, ratio: float = 0.2, min_per_second: float = 10.0) -> None:
        if ratio < 0 or min_per_second < 0:
            raise ValueError("ratio and min_per_second must be >= 0")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._balance = 0.0
        self._cap = max(ratio * 100, 1.0)
        self._reserve = min_per_second
        self._refilled = time.monotonic()

    def deposit(self) -> None:
        """Count one call."""
        balance = self._balance + self.ratio
        self._balance = balance if balance < self._cap else self._cap

    def withdraw(self) -> bool:
        """Take one retry token; ``False`` when the budget is spent."""
        if self._balance >= 1:
            self._balance -= 1
            return True
        now = time.monotonic()
        self._reserve = min(
            self.min_per_second, self._reserve + (now - self._refilled) * self.min_per_second
        )
        self._refilled = now
        if self._reserve >= 1:
            self._reserve -= 1
            return True
        return False


def retry(
    *,
    attempts: int = 3,
    idempotent: Collection[str] | Callable[[str], bool] | None = None,
    codes: Collection[int] = (503,),
    budget: RetryBudget | None = None,
    backoff: float = 0.005,
) -> Middleware:
    """Retry idempotent calls that failed with a retryable code.

    Args:
        attempts: total attempts per call, the first included (>= 1).
        idempotent: the operations (gRPC full method, or ``"GET /path"``) that may be retried,
            or a predicate on the operation; ``None`` (default) retries every gRPC call and the
            HTTP methods RFC 9110 calls idempotent (GET, HEAD, OPTIONS, PUT, DELETE).
        codes: framework error codes (HTTP statuses) to retry; 503 by default.
        budget: shared :class:`RetryBudget` (a new one per middleware by default).
        backoff: base pause before a retry, seconds, doubled each time, with jitter.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    spend = budget or RetryBudget()
    retryable = frozenset(codes)
    if idempotent is None:
        may_retry: Callable[[str], bool] = _default_idempotent
    elif callable(idempotent):
        may_retry = idempotent
    else:
        allowed = frozenset(idempotent)
        may_retry = allowed.__contains__

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            spend.deposit()
            attempt = 1
            while True:
                try:
                    return await handler(request)
                except Exception as exc:
                    error = from_exception(exc)
                    call = client_context()
                    if (
                        attempt >= attempts
                        or error.code not in retryable
                        or call is None
                        or not may_retry(call.operation)
                        or not spend.withdraw()
                    ):
                        raise
                if backoff > 0:
                    await asyncio.sleep(backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
                attempt += 1

        return run

    return middleware


_IDEMPOTENT_HTTP = ("GET ", "HEAD ", "OPTIONS ", "PUT ", "DELETE ")


def _default_idempotent(operation: str) -> bool:
    return operation.startswith("/") or operation.startswith(_IDEMPOTENT_HTTP)
