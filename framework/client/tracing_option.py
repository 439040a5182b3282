"""The ``tracing`` argument of the HTTP and gRPC clients: whether to add client tracing.

``False``: no tracing. ``True``: tracing, and an ``ImportError`` when the tracing module
(hence OpenTelemetry) cannot be imported. ``None``: tracing only when the module imports and
a tracer provider has been set (the OpenTelemetry API's ``ProxyTracerProvider`` placeholder
means none was).
"""

from __future__ import annotations

import importlib

__all__ = ["use_tracing"]


def use_tracing(tracing: bool | None, module: str) -> bool:
    """Whether a client adds the tracing that ``module`` (a dotted name) provides.

    Raises:
        ImportError: ``tracing`` is ``True`` and ``module`` cannot be imported.
    """
    if tracing is False:
        return False
    try:
        importlib.import_module(module)
    except ImportError:
        if tracing:
            raise
        return False
    if tracing is None:
        from opentelemetry import trace

        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return True
