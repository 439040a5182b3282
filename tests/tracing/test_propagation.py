"""inject()/extract(): the W3C headers every hop exchanges."""

from __future__ import annotations

from opentelemetry import baggage, context, trace

from framework.tracing import extract, inject, traceparent
from tests.tracing.spans import SpanRecorder


def test_inject_outside_any_span_leaves_headers_alone() -> None:
    headers = {"x-request-id": "r1"}
    assert inject(headers) is headers
    assert headers == {"x-request-id": "r1"}


def test_inject_then_extract_round_trips_the_current_span(recorder: SpanRecorder) -> None:
    tracer = recorder.provider.get_tracer("t")
    with tracer.start_as_current_span("parent") as span:
        headers = inject({"x-request-id": "r1"})
    span_context = span.get_span_context()
    assert headers["traceparent"] == traceparent(span_context)
    assert headers["x-request-id"] == "r1"

    remote = trace.get_current_span(extract(headers)).get_span_context()
    assert remote.is_remote
    assert (remote.trace_id, remote.span_id) == (span_context.trace_id, span_context.span_id)


def test_baggage_without_a_span_still_travels() -> None:
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        headers: dict[str, str] = inject({})
    finally:
        context.detach(token)
    assert headers == {"baggage": "tenant=acme"}
    assert baggage.get_baggage("tenant", extract(headers)) == "acme"
