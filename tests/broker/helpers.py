"""Small helpers for broker tests: wait for N items with an asyncio.Event, never a sleep loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from framework.broker import Message, Outcome, ProcessResult, SubscriberSpec

__all__ = ["Collector", "RawProcessor"]


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


class RawProcessor:
    """A ``MessageProcessor`` that acks and records every message a broker hands it, with
    none of the framework's filtering: what it sees is what the broker delivered."""

    def __init__(self, spec: SubscriberSpec) -> None:
        self.spec = spec
        self.seen = Collector()

    async def process(self, message: Message, *, retry_in_process: bool = True) -> ProcessResult:
        self.seen.add(message)
        return ProcessResult(Outcome.ACK)

    async def process_batch(self, messages: Sequence[Message]) -> ProcessResult:
        for message in messages:
            self.seen.add(message)
        return ProcessResult(Outcome.ACK)
