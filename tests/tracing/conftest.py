"""Fixtures: a SpanRecorder (in-memory exporter) per test.

Most tests pass their provider explicitly and leave the global one alone. ``global_recorder``
installs a global provider exactly as a service does (:func:`setup_tracing`), because some
libraries switch their own telemetry on when one exists (FastAPI does), and only a test in
that situation can see what they add; it restores the untraced process afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.tracing.spans import SpanRecorder


@pytest.fixture
async def recorder() -> SpanRecorder:
    # Built inside the test's event loop: its asyncio.Event belongs to that loop.
    return SpanRecorder()


@pytest.fixture
async def global_recorder() -> AsyncIterator[SpanRecorder]:
    """A SpanRecorder on the global provider that ``setup_tracing()`` installed."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    from framework.tracing import setup_tracing
    from framework.tracing.tracer import global_provider_changed

    exporter = InMemorySpanExporter()
    provider = setup_tracing("traced-svc", exporter, batch=False)
    try:
        yield SpanRecorder(provider, exporter)
    finally:
        provider.shutdown()
        # OpenTelemetry allows one global provider per process: undo it the way its own test
        # utilities do, so later tests see an untraced process again.
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None
        global_provider_changed()


@pytest.fixture(autouse=True)
def _global_provider_untouched() -> Iterator[None]:
    """Tests pass providers explicitly; the global one must stay the API placeholder, so the
    "tracing off" path and other test packages see an untraced process."""
    from opentelemetry import trace

    yield
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
