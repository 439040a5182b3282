"""Recovery: an unexpected exception becomes a 500 ``INTERNAL_ERROR``, logged with its stack."""

from __future__ import annotations

import logging
from typing import Any

from framework.errors import Error
from framework.middleware.core import Handler, Middleware
from framework.transport.context import from_context

__all__ = ["INTERNAL_ERROR", "recovery"]

INTERNAL_ERROR = "INTERNAL_ERROR"
_log = logging.getLogger("pykratos.recovery")


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
                transport = from_context()
                _log.exception(
                    "handler raised %s",
                    type(exc).__name__,
                    extra={
                        "kind": transport.kind if transport else "",
                        "operation": transport.operation if transport else "",
                    },
                )
                message = f"{type(exc).__name__}: {exc}" if expose_message else "internal error"
                raise Error(500, INTERNAL_ERROR, message) from exc

        return run

    return middleware
