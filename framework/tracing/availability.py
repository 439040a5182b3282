"""Whether OpenTelemetry is installed, and the error raised when tracing needs it but it is not.

The framework core never imports OpenTelemetry: only the modules of this package that create
spans do, and they turn a missing package into :class:`TracingUnavailableError`, which says
which extra to install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

__all__ = ["OTEL_EXTRA_HINT", "TracingUnavailableError", "otel_available"]

#: How to get the dependencies of tracing.
OTEL_EXTRA_HINT = "pip install 'pykratos[otel]'"


class TracingUnavailableError(ImportError):
    """Tracing was asked for but a package it needs is not installed.

    Args:
        what: what was asked for (``"setup_tracing(exporter='otlp')"``).
        hint: how to install what is missing.
        missing: the module that could not be imported.
    """

    def __init__(
        self, what: str, hint: str = OTEL_EXTRA_HINT, *, missing: str = "opentelemetry"
    ) -> None:
        super().__init__(
            f"{what} needs the module {missing!r}, which is not installed: {hint}",
            name=missing,
        )

    @classmethod
    def from_import_error(cls, what: str, exc: ImportError) -> TracingUnavailableError:
        """Wrap the ``ImportError`` of an OpenTelemetry module."""
        return cls(what, missing=exc.name or "opentelemetry")


def otel_available() -> bool:
    """True when the OpenTelemetry API and SDK (the ``otel`` extra) can be imported."""
    try:
        import opentelemetry.sdk.trace
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True
