"""Carry the trace context in headers: :func:`inject` on the way out, :func:`extract` in.

Both use OpenTelemetry's *global* propagator (W3C ``traceparent``/``tracestate`` plus
``baggage`` by default; ``OTEL_PROPAGATORS`` or ``opentelemetry.propagate.set_global_textmap``
change it), so every hop speaks what the rest of the system speaks.

:func:`inject` is safe to call from core code on every publish: without OpenTelemetry
installed, or without a current span, it leaves the headers untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, TypeVar

from framework.tracing.availability import TracingUnavailableError

try:
    from opentelemetry import propagate as _propagate
    from opentelemetry.context import get_current as _current_context
except ImportError:  # the core works without the otel extra; inject() is then a no-op
    _propagate = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanContext

__all__ = ["extract", "inject", "traceparent"]

Carrier = TypeVar("Carrier", bound=MutableMapping[str, str])


def inject(headers: Carrier, context: Context | None = None) -> Carrier:
    """Write the trace context of ``context`` (default: the current one) into ``headers``.

    Mutates and returns ``headers``, so ``broker.publish(..., headers=inject(dict(h)))``
    reads naturally. A no-op when OpenTelemetry is not installed or there is no valid span.
    """
    if _propagate is None:
        return headers
    if context is None:
        context = _current_context()
        if not context:
            # No span, no baggage: nothing to propagate. Skips the propagators' work
            # (about a microsecond) on every publish of an untraced service.
            return headers
    _propagate.inject(headers, context)
    return headers


def extract(headers: Mapping[str, str], context: Context | None = None) -> Context:
    """The context carried by ``headers`` (on top of ``context``); empty if none is there."""
    if _propagate is None:
        raise TracingUnavailableError("framework.tracing.extract()")
    return _propagate.extract(headers, context)


def traceparent(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` value naming ``span_context`` (version 00)."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{int(span_context.trace_flags):02x}"
    )
