"""`setup_metrics`: an SDK meter provider, the Prometheus reader and the broker observer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from framework.metrics.instruments import (
    METER_NAME,
    BrokerObserver,
    attach_server_metrics,
    instruments_for,
)
from framework.observer import current_observer, set_observer

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"framework.metrics needs OpenTelemetry and the Prometheus exporter: "
        f"pip install 'pykratos[metrics]' ({exc})"
    ) from exc

__all__ = ["CONTENT_TYPE", "Metrics", "setup_metrics"]

#: Content type of :meth:`Metrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST

_log = logging.getLogger("pykratos.metrics")


class Metrics:
    """A service's metrics: the SDK provider and the Prometheus registry it exports to.

    Built by :func:`setup_metrics`. ``provider`` goes to :func:`~framework.metrics.metrics`
    (or is the global one); :meth:`exposition` renders what ``GET /metrics`` returns.
    """

    def __init__(
        self, provider: MeterProvider, registry: CollectorRegistry, observer: BrokerObserver
    ) -> None:
        self.provider = provider
        self.registry = registry
        self.observer = observer

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every instrument, collected now."""
        return bytes(generate_latest(self.registry))

    def shutdown(self) -> None:
        """Stop the provider (readers unregister) and remove the observer if it is ours."""
        if current_observer() is self.observer:
            set_observer(None)
        self.provider.shutdown()


def setup_metrics(
    service_name: str,
    *,
    service_version: str = "",
    readers: Sequence[MetricReader] = (),
    set_global: bool = True,
    observe: bool = True,
) -> Metrics:
    """Create a ``MeterProvider`` exporting to a Prometheus registry of its own.

    Args:
        service_name: the ``service.name`` resource attribute (Prometheus ``target_info``).
        service_version: ``service.version``, if not empty.
        readers: more readers, e.g. a ``PeriodicExportingMetricReader`` with an OTLP
            exporter to push to a collector (cumulative temporality: the request-duration
            histograms are cumulative).
        set_global: install the provider as OpenTelemetry's global one, which
            :func:`~framework.metrics.metrics` without arguments uses. OpenTelemetry allows
            this once per process; a second call keeps the first global provider (and logs).
        observe: install the :class:`~framework.observer.Observer` that records broker
            processing, publishing, WebSocket sessions and the requests servers refuse
            before their middleware chain (admission) with this provider; without it those
            instruments stay empty.
    """
    attributes = {"service.name": service_name}
    if service_version:
        attributes["service.version"] = service_version
    registry = CollectorRegistry(auto_describe=True)
    prometheus = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(
        metric_readers=[prometheus, *readers], resource=Resource.create(attributes)
    )
    # The request-duration histograms are aggregated by the framework (instruments.py says
    # why) and join each reader's collection.
    server = instruments_for(provider)
    for reader in (prometheus, *readers):
        attach_server_metrics(reader, server)
    if set_global:
        otel_metrics.set_meter_provider(provider)
        if otel_metrics.get_meter_provider() is not provider:
            _log.warning("a global meter provider was already set; it stays the global one")
    observer = BrokerObserver(provider.get_meter(METER_NAME))
    if observe:
        set_observer(observer)
    return Metrics(provider, registry, observer)
