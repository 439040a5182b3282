"""Find the tracer to use, late and once, so tracing costs nothing until it is configured.

Middleware and client helpers are often built before :func:`~framework.tracing.setup_tracing`
runs (or it never runs). A :class:`TracerSource` made without an explicit provider asks the
OpenTelemetry API for the *global* provider on each call until a real one (an SDK
``TracerProvider``, or any other implementation) has been installed, then keeps its tracer.
While only the API's placeholder exists, :meth:`TracerSource.get` returns ``None`` and callers
skip all span work: that is the "tracing off" fast path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework import __version__
from framework.tracing.availability import TracingUnavailableError

try:
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("framework.tracing", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["INSTRUMENTATION_SCOPE", "TracerSource"]

#: Instrumentation scope name of every span the framework creates.
INSTRUMENTATION_SCOPE = "pykratos"

# What the API hands out before any provider is installed: spans from these record nothing.
_PLACEHOLDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


class TracerSource:
    """Resolves the framework's tracer from ``provider``, or from the global provider once set.

    Args:
        provider: a specific ``TracerProvider`` (tests, several providers in one process);
            ``None`` follows the global one set by ``setup_tracing`` /
            ``opentelemetry.trace.set_tracer_provider``.
    """

    __slots__ = ("_tracer",)

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._tracer: Tracer | None = None
        if provider is not None:
            self._tracer = provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)

    def get(self) -> Tracer | None:
        """The tracer, or ``None`` while no tracer provider is configured."""
        tracer = self._tracer
        if tracer is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, _PLACEHOLDERS):
                return None
            tracer = self._tracer = provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)
        return tracer
