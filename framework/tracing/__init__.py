"""OpenTelemetry tracing across every hop: HTTP, gRPC, WebSocket and brokers.

Server side, one middleware for every transport::

    from framework.tracing import setup_tracing, tracing

    setup_tracing("order-svc", exporter="otlp")          # once, at process start
    HttpServer(middlewares=[tracing(), access_log(), recovery()])
    GrpcServer(middlewares=[tracing(), access_log(), recovery()])
    BrokerServer(broker, [router], middlewares=[tracing(), access_log(), recovery()])

Client side, the context travels with each outgoing call:

- gRPC: ``grpc.aio.insecure_channel(target, interceptors=client_interceptors())``
  (``framework.tracing.grpc_client``, needs the grpc extra);
- HTTP: ``traced_httpx_client(base_url=...)`` (``framework.tracing.http_client``, needs httpx);
- brokers: :class:`TracedPublisher` instead of ``Publisher``, or :func:`inject` into the
  headers of a raw ``broker.publish``.

Needs the ``otel`` extra (``pip install 'pykratos[otel]'``). Importing this package does not:
:func:`inject`, :func:`extract`'s module and :class:`TracingUnavailableError` are importable
anyway (``inject`` is then a no-op), and the rest raises :class:`TracingUnavailableError` on
first use, naming the extra. Without a configured tracer provider everything here is a
pass-through.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from framework.tracing.availability import (
    OTEL_EXTRA_HINT,
    TracingUnavailableError,
    otel_available,
)
from framework.tracing.propagation import extract, inject, traceparent

if TYPE_CHECKING:
    from framework.tracing.middleware import tracing
    from framework.tracing.publisher import TracedPublisher
    from framework.tracing.setup import setup_tracing

__all__ = [
    "OTEL_EXTRA_HINT",
    "TracedPublisher",
    "TracingUnavailableError",
    "extract",
    "inject",
    "otel_available",
    "setup_tracing",
    "traceparent",
    "tracing",
]

# Loaded on first access: these modules import OpenTelemetry.
_LAZY = {
    "tracing": "framework.tracing.middleware",
    "TracedPublisher": "framework.tracing.publisher",
    "setup_tracing": "framework.tracing.setup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
