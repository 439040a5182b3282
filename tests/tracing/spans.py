"""Collect finished spans in memory and wait for them with an asyncio.Event, never a sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["SpanRecorder"]


class _Wake(SpanProcessor):
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._event.set()


class SpanRecorder:
    """A TracerProvider exporting to an ``InMemorySpanExporter``, with waits on its spans.

    By default it builds its own provider; pass ``provider`` and ``exporter`` to record the
    spans of a provider built elsewhere (``setup_tracing(exporter=...)``).
    """

    def __init__(
        self,
        provider: TracerProvider | None = None,
        exporter: InMemorySpanExporter | None = None,
    ) -> None:
        self.exporter = exporter or InMemorySpanExporter()
        if provider is None:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.provider = provider
        self._ended = asyncio.Event()
        self.provider.add_span_processor(_Wake(self._ended))

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return [span.name for span in self.spans]

    async def wait_for(
        self, predicate: Callable[[Sequence[ReadableSpan]], bool], timeout: float = 10.0
    ) -> tuple[ReadableSpan, ...]:
        """Return the finished spans once ``predicate(spans)`` holds."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.spans):
                    self._ended.clear()
                    await self._ended.wait()
        except TimeoutError:
            raise AssertionError(f"spans never matched within {timeout}s: {self.names()}") from None
        return self.spans

    async def wait_named(self, name: str, count: int = 1) -> list[ReadableSpan]:
        await self.wait_for(lambda spans: sum(s.name == name for s in spans) >= count)
        return self.named(name)
