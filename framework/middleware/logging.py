"""Access logging: one line per operation with kind, operation, code, reason and latency."""

from __future__ import annotations

import logging
import time
from typing import Any

from framework.errors import from_exception
from framework.middleware.core import Handler, Middleware
from framework.transport.context import from_context

__all__ = ["access_log"]


def _reply_code(reply: Any) -> int:
    # HTTP responses carry their status; every other transport succeeded with "200/OK".
    status = getattr(reply, "status_code", None)
    return status if isinstance(status, int) else 200


def access_log(logger: logging.Logger | None = None, level: int = logging.INFO) -> Middleware:
    """Log every handled operation; errors are logged at WARNING (4xx) or ERROR (5xx)."""
    log = logger or logging.getLogger("pykratos.access")

    def middleware(handler: Handler) -> Handler:
        def emit(at: int, start: float, code: int, reason: str, failed: bool) -> None:
            transport = from_context()
            fields: dict[str, Any] = {
                "kind": transport.kind if transport else "",
                "operation": transport.operation if transport else "",
                "code": code,
                "reason": reason,
                "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            }
            message = "%s %s failed" if failed else "%s %s"
            log.log(at, message, fields["kind"], fields["operation"], extra=fields)

        async def run(request: Any) -> Any:
            start = time.perf_counter()
            try:
                reply = await handler(request)
            except Exception as exc:
                error = from_exception(exc)
                emit(logging.ERROR if error.code >= 500 else logging.WARNING, start,
                     error.code, error.reason, True)
                raise
            # The success path is the hot one: build nothing unless the line is written.
            if log.isEnabledFor(level):
                emit(level, start, _reply_code(reply), "", False)
            return reply

        return run

    return middleware
