"""The middleware every transport of this service runs, in order (first = outermost)."""

from __future__ import annotations

from framework.metadata import server_metadata
from framework.middleware import Middleware, access_log, recovery, timeout, validate
from framework.tracing import otel_available, tracing

from app_template.server.ops import Operations

__all__ = ["default_middlewares"]


def default_middlewares(
    timeout_seconds: float, *, validation: bool = True, ops: Operations | None = None
) -> list[Middleware]:
    """Tracing first so access logs carry the trace id and spans see recovered errors; it is
    a pass-through until ``tracing.enabled`` installs a tracer provider. Metrics next, so the
    durations cover everything, refusals included; the guards (rate limit, authentication)
    refuse after the access log and before any handler work.

    ``validation=False`` for HTTP: FastAPI already validates request bodies against their
    pydantic models (and the server reports it as the same 400 ``VALIDATOR``), and a starlette
    request has no ``validate()`` of its own, so the middleware would only cost time there.
    """
    middlewares = [tracing()] if otel_available() else []
    if ops is not None:
        middlewares += ops.measure
    # access_log before recovery so it measures and logs everything, including recovered errors.
    # server_metadata keeps the x-md-* entries, so calls and messages made here carry them on.
    middlewares += [access_log(), recovery(), server_metadata()]
    if ops is not None:
        middlewares += ops.guards
    middlewares.append(timeout(timeout_seconds))
    return [*middlewares, validate()] if validation else middlewares
