"""The middleware every transport of this service runs, in order (first = outermost)."""

from __future__ import annotations

from framework.middleware import Middleware, access_log, recovery, timeout, validate

__all__ = ["default_middlewares"]


def default_middlewares(timeout_seconds: float) -> list[Middleware]:
    # access_log outermost so it measures and logs everything, including recovered errors.
    return [access_log(), recovery(), timeout(timeout_seconds), validate()]
