"""Small helpers for broker tests: wait for N items with an asyncio.Event, never a sleep loop."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Collector"]


class Collector:
    """Collects items; :meth:`wait` returns once ``count`` items arrived (or times out)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._wanted = 0
        self._event = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        if self._wanted and len(self.items) >= self._wanted:
            self._event.set()

    async def wait(self, count: int, timeout: float = 10.0) -> list[Any]:
        if len(self.items) < count:
            self._wanted = count
            self._event.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                raise AssertionError(
                    f"got {len(self.items)} of {count} items within {timeout}s: {self.items!r}"
                ) from None
        return self.items
