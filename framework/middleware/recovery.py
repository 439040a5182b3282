"""Recovery: an unexpected exception becomes a 500 ``INTERNAL_ERROR``, logged with its stack."""

from __future__ import annotations

import logging
from typing import Any

from framework.errors import Error
from framework.middleware.core import Handler, Middleware, declare_errors
from framework.transport.context import from_context

__all__ = ["INTERNAL_ERROR", "internal_error", "recovery"]

INTERNAL_ERROR = "INTERNAL_ERROR"
_log = logging.getLogger("pykratos.recovery")


def internal_error(
    exc: BaseException,
    *,
    logger: logging.Logger = _log,
    hint: str = "",
    expose_message: bool = False,
) -> Error:
    """Log ``exc`` with its stack and the current operation; return the 500 sent instead.

    What an exception that is not an :class:`Error` becomes, in :func:`recovery` and in a
    transport's last resort when no recovery middleware is installed, so every path answers
    the same ``INTERNAL_ERROR``. ``hint`` is appended to the log line; the client sees a generic
    message unless ``expose_message`` is set.
    """
    transport = from_context()
    logger.error(
        "handler raised %s%s",
        type(exc).__name__,
        hint,
        exc_info=exc,
        extra={
            "kind": transport.kind if transport else "",
            "operation": transport.operation if transport else "",
        },
    )
    message = f"{type(exc).__name__}: {exc}" if expose_message else "internal error"
    return Error(500, INTERNAL_ERROR, message)


def recovery(*, expose_message: bool = False) -> Middleware:
    """Turn any non-:class:`Error` exception into ``Error(500, "INTERNAL_ERROR")``.

    The stack is logged with the operation. The client sees a generic message unless
    ``expose_message`` is set (useful in development), so internals do not leak.
    """

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            try:
                return await handler(request)
            except Error:
                raise
            except Exception as exc:
                raise internal_error(exc, expose_message=expose_message) from exc

        return run

    return declare_errors(
        middleware, {500: f"{INTERNAL_ERROR}: the handler failed (the message says no more)"}
    )
