"""Timeout: bound a handler's run time; an overrun becomes 504 ``TIMEOUT``."""

from __future__ import annotations

import asyncio
from typing import Any

from framework.errors import GatewayTimeout
from framework.middleware.core import Handler, Middleware

__all__ = ["TIMEOUT", "timeout"]

TIMEOUT = "TIMEOUT"


def timeout(seconds: float) -> Middleware:
    """Cancel the handler after ``seconds`` and raise ``Error(504, "TIMEOUT")``."""
    if seconds <= 0:
        raise ValueError(f"timeout must be positive, got {seconds}")

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            try:
                async with asyncio.timeout(seconds):
                    return await handler(request)
            except TimeoutError as exc:
                raise GatewayTimeout(TIMEOUT, f"handler exceeded {seconds}s") from exc

        return run

    return middleware
