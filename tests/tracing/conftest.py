"""Fixtures: a SpanRecorder (in-memory exporter) per test; nothing touches the global provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tracing.spans import SpanRecorder


@pytest.fixture
async def recorder() -> SpanRecorder:
    # Built inside the test's event loop: its asyncio.Event belongs to that loop.
    return SpanRecorder()


@pytest.fixture(autouse=True)
def _global_provider_untouched() -> Iterator[None]:
    """Tests pass providers explicitly; the global one must stay the API placeholder, so the
    "tracing off" path and other test packages see an untraced process."""
    from opentelemetry import trace

    yield
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
