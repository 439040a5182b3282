"""Timeout: bound a handler's run time; an overrun becomes 504 ``TIMEOUT``."""

from __future__ import annotations

import asyncio
from typing import Any

from framework.errors import GatewayTimeout
from framework.middleware.core import Handler, Middleware

__all__ = ["TIMEOUT", "timeout"]

TIMEOUT = "TIMEOUT"


def timeout(seconds: float) -> Middleware:
    """Cancel the handler after ``seconds`` and raise ``Error(504, "TIMEOUT")``.

    Only the expiry this middleware scheduled becomes a 504: a ``TimeoutError`` raised by the
    handler itself, or a cancellation from elsewhere (client gone, server stopping), passes
    through unchanged.
    """
    if seconds <= 0:
        raise ValueError(f"timeout must be positive, got {seconds}")

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            task = asyncio.current_task()
            if task is None:  # not inside a task: nothing to cancel
                return await handler(request)
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                task.cancel()

            # A bare timer handle instead of asyncio.timeout(): this runs on every request.
            timer = asyncio.get_running_loop().call_later(seconds, expire)
            try:
                return await handler(request)
            except asyncio.CancelledError as exc:
                if expired and task.uncancel() == 0:
                    raise GatewayTimeout(TIMEOUT, f"handler exceeded {seconds}s") from exc
                raise
            finally:
                timer.cancel()

        return run

    return middleware
