"""Find the tracer to use, late and once, so tracing costs nothing until it is configured.

Middleware and client helpers are often built before :func:`~framework.tracing.setup_tracing`
runs (or it never runs). A :class:`TracerSource` made without an explicit provider looks for
the *global* provider until a real one (an SDK ``TracerProvider``, or any other
implementation) is installed, then keeps its tracer. While only the API's placeholder exists,
:meth:`TracerSource.get` returns ``None`` and callers skip all span work: that is the "tracing
off" fast path.

Asking the API costs about a microsecond (it checks an environment variable each time), too
much for every request of an untraced service. So a source looks again only when
:func:`~framework.tracing.setup_tracing` announced a new global provider
(:func:`global_provider_changed`), or after :data:`RECHECK_INTERVAL` seconds for a provider
installed another way (``opentelemetry.trace.set_tracer_provider``, auto-instrumentation).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from framework import __version__
from framework.tracing.availability import TracingUnavailableError

try:
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("framework.tracing", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["INSTRUMENTATION_SCOPE", "RECHECK_INTERVAL", "TracerSource", "global_provider_changed"]

#: Instrumentation scope name of every span the framework creates.
INSTRUMENTATION_SCOPE = "pykratos"

#: Seconds between two looks for a global provider installed without ``setup_tracing``.
RECHECK_INTERVAL = 1.0

# What the API hands out before any provider is installed: spans from these record nothing.
_PLACEHOLDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


class TracerSource:
    """Resolves the framework's tracer from ``provider``, or from the global provider once set.

    Args:
        provider: a specific ``TracerProvider`` (tests, several providers in one process);
            ``None`` follows the global one set by ``setup_tracing`` /
            ``opentelemetry.trace.set_tracer_provider``.
    """

    __slots__ = ("_next_look", "_seen_changes", "_tracer")

    # Bumped by global_provider_changed(): every source then looks again at once.
    _changes: ClassVar[int] = 0

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._tracer: Tracer | None = None
        self._seen_changes = -1  # look on first use
        self._next_look = 0.0
        if provider is not None:
            self._tracer = provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)

    def get(self) -> Tracer | None:
        """The tracer, or ``None`` while no tracer provider is configured."""
        tracer = self._tracer
        if tracer is not None:
            return tracer
        if self._seen_changes == TracerSource._changes and time.monotonic() < self._next_look:
            return None
        return self._look()

    def _look(self) -> Tracer | None:
        self._seen_changes = TracerSource._changes
        self._next_look = time.monotonic() + RECHECK_INTERVAL
        provider = trace.get_tracer_provider()
        if isinstance(provider, _PLACEHOLDERS):
            return None
        tracer = self._tracer = provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)
        return tracer


def global_provider_changed() -> None:
    """Tell every :class:`TracerSource` that a global provider was just installed."""
    TracerSource._changes += 1
