"""The :func:`tracing` middleware: one span per operation, for every transport.

It continues the trace the caller sent (W3C ``traceparent`` in HTTP headers, gRPC metadata,
WebSocket handshake headers or message headers), so a request keeps one trace id from the
HTTP edge through gRPC calls and broker hops. Put it first (outermost) in the chain so the span
covers the other middleware and the trace id is in their logs::

    HttpServer(middlewares=[tracing(), access_log(), recovery()])
    BrokerServer(broker, routers, middlewares=[tracing(), access_log(), recovery()])
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from framework.middleware.core import Handler, Middleware
from framework.tracing.attributes import (
    REPLY_HEADER_KINDS,
    SERVER_KINDS,
    consumer_attributes,
    server_attributes,
    span_name,
)
from framework.tracing.availability import TracingUnavailableError
from framework.tracing.outcome import record_server_failure, record_server_reply
from framework.tracing.propagation import extract, traceparent
from framework.tracing.tracer import TracerSource
from framework.transport.context import Transport, current_transport

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("framework.tracing", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["tracing"]

_SERVER = trace.SpanKind.SERVER
_CONSUMER = trace.SpanKind.CONSUMER


def tracing(
    tracer_provider: TracerProvider | None = None, *, reply_header: str | None = "traceparent"
) -> Middleware:
    """A span per handled operation, child of the trace context the caller sent.

    SERVER spans for HTTP, gRPC and WebSocket; CONSUMER spans for broker messages (a batch
    handler gets one span, linked to every message's context). The span is current while the
    handler runs, so logs carry its ``trace_id`` and outgoing calls made with the client
    helpers (:func:`~framework.tracing.grpc_client.client_interceptors`,
    :func:`~framework.tracing.http_client.traced_httpx_client`,
    :class:`~framework.tracing.publisher.TracedPublisher`, :func:`inject`) continue the trace.
    Errors are recorded with the framework error's code and reason
    (see :mod:`framework.tracing.outcome`).

    Args:
        tracer_provider: the provider to use; ``None`` follows the global one. Until a global
            provider is installed (``setup_tracing``), the middleware only checks for it and
            calls the handler: tracing off costs next to nothing.
        reply_header: HTTP response header / gRPC trailing-metadata key that receives the
            server span's ``traceparent``, so a caller can look the trace up; ``None`` to
            send nothing.
    """
    tracers = TracerSource(tracer_provider)
    get_tracer = tracers.get
    get_transport = current_transport.get

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = get_transport()
            if transport is None:
                return await handler(request)
            tracer = get_tracer()
            if tracer is None:
                return await handler(request)
            return await _traced(tracer, transport, handler, request, reply_header)

        return run

    return middleware


async def _traced(
    tracer: Tracer,
    transport: Transport,
    handler: Handler,
    request: Any,
    reply_header: str | None,
) -> Any:
    kind = transport.kind
    parent = extract(transport.request_headers)
    if kind in SERVER_KINDS:
        span = tracer.start_span(
            span_name(transport), parent, _SERVER, server_attributes(transport)
        )
        if reply_header is not None and kind in REPLY_HEADER_KINDS:
            span_context = span.get_span_context()
            if span_context.is_valid:
                transport.reply_headers[reply_header] = traceparent(span_context)
    else:
        span = tracer.start_span(
            span_name(transport),
            parent,
            _CONSUMER,
            consumer_attributes(transport),
            _batch_links(transport.raw),
        )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        reply = await handler(request)
    except asyncio.CancelledError:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "cancelled"))
        raise
    except Exception as exc:
        record_server_failure(span, transport, exc)
        raise
    else:
        record_server_reply(span, transport, reply)
        return reply
    finally:
        otel_context.detach(token)
        span.end()


def _batch_links(raw: Any) -> list[trace.Link] | None:
    """Links to the context of every message of a batch (the parent is the first one's)."""
    if not isinstance(raw, list) or len(raw) < 2:
        return None
    links = []
    for message in raw:
        headers = getattr(message, "headers", None)
        if not headers:
            continue
        span_context = trace.get_current_span(extract(headers)).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links
