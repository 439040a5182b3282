"""`setup_tracing`: configure an OpenTelemetry SDK tracer provider in one call."""

from __future__ import annotations

import logging
from typing import Literal

from framework.tracing.availability import TracingUnavailableError
from framework.tracing.tracer import global_provider_changed

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("setup_tracing()", exc) from exc

__all__ = ["EXPORTERS", "ExporterName", "setup_tracing"]

ExporterName = Literal["console", "otlp", "none"]
#: Exporters :func:`setup_tracing` knows by name.
EXPORTERS: tuple[ExporterName, ...] = ("console", "otlp", "none")
_OTLP_HINT = "pip install opentelemetry-exporter-otlp"

_log = logging.getLogger("pykratos.tracing")


def setup_tracing(
    service_name: str,
    exporter: ExporterName | SpanExporter = "console",
    *,
    service_version: str = "",
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
    batch: bool | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Create an SDK ``TracerProvider`` for this service and (by default) install it globally.

    Args:
        service_name: the ``service.name`` resource attribute (the service in trace UIs).
        exporter: where spans go: ``"console"`` (stdout, for development), ``"otlp"`` (a
            collector; needs ``opentelemetry-exporter-otlp``, gRPC flavour preferred, else
            HTTP), ``"none"`` (spans exist, so trace ids propagate and reach the logs, but are
            not exported), or any SDK ``SpanExporter`` instance.
        service_version: the ``service.version`` resource attribute, if not empty.
        endpoint: OTLP collector endpoint; only for ``"otlp"`` (otherwise the exporter reads
            ``OTEL_EXPORTER_OTLP_ENDPOINT``, default localhost).
        sample_ratio: fraction of new traces sampled, 0..1; a trace started upstream keeps the
            caller's sampling decision.
        batch: export in the background in batches (``BatchSpanProcessor``) rather than on
            each span end; default: batch for everything except ``"console"``.
        set_global: install the provider as OpenTelemetry's global one, which the framework's
            middleware and clients use when not given a provider. OpenTelemetry allows that
            once per process, so a second call raises.

    Returns the provider; it flushes at interpreter exit, or call ``provider.shutdown()``.

    Raises:
        ValueError: unknown exporter, ratio out of range, ``endpoint`` without OTLP.
        TracingUnavailableError: ``"otlp"`` without the exporter package installed.
        RuntimeError: ``set_global`` while a global provider is already installed.
    """
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be between 0 and 1, got {sample_ratio}")
    if isinstance(exporter, str) and exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    if endpoint is not None and exporter != "otlp":
        raise ValueError(f"endpoint only applies to exporter='otlp', not {exporter!r}")
    if set_global and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        raise RuntimeError(
            "a global OpenTelemetry tracer provider is already installed, and it cannot be "
            "replaced: call setup_tracing() once per process, or pass set_global=False and "
            "give the provider to tracing(tracer_provider=...) and the client helpers"
        )
    attributes = {"service.name": service_name}
    if service_version:
        attributes["service.version"] = service_version
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        resource=Resource.create(attributes),
    )
    span_exporter = _exporter(exporter, service_name, endpoint)
    if span_exporter is not None:
        use_batch = exporter != "console" if batch is None else batch
        processor = BatchSpanProcessor if use_batch else SimpleSpanProcessor
        provider.add_span_processor(processor(span_exporter))
    if set_global:
        trace.set_tracer_provider(provider)
        global_provider_changed()  # middleware built earlier starts tracing now
    _log.info(
        "tracing %s: exporter=%s sample_ratio=%s",
        service_name,
        exporter if isinstance(exporter, str) else type(exporter).__name__,
        sample_ratio,
    )
    return provider


def _exporter(
    exporter: ExporterName | SpanExporter, service_name: str, endpoint: str | None
) -> SpanExporter | None:
    if not isinstance(exporter, str):
        return exporter
    if exporter == "none":
        return None
    if exporter == "console":
        return ConsoleSpanExporter(service_name=service_name)
    return _otlp_exporter(endpoint)


def _otlp_exporter(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise TracingUnavailableError(
                "setup_tracing(exporter='otlp')",
                _OTLP_HINT,
                missing="opentelemetry.exporter.otlp",
            ) from exc
    exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    return exporter
