"""Metrics through the OpenTelemetry metrics API, exposed for Prometheus.

::

    metrics_ = setup_metrics("order")                     # provider + Prometheus registry
    http = HttpServer(middlewares=[tracing(), metrics(), recovery()])
    mount_metrics(http, metrics_)                        # GET /metrics
    # or on an admin port of its own: App(servers=[..., MetricsServer(metrics_, port=9464)])

Instrument names follow the OpenTelemetry semantic conventions
(:mod:`framework.metrics.names`); broker servers and publishers report through the observer
that :func:`setup_metrics` installs (:mod:`framework.observer`), so a service writes nothing
by hand. Needs the ``metrics`` extra.
"""

from framework.metrics.admin import MetricsServer
from framework.metrics.endpoint import mount_metrics
from framework.metrics.middleware import metrics
from framework.metrics.setup import CONTENT_TYPE, Metrics, setup_metrics

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "MetricsServer",
    "metrics",
    "mount_metrics",
    "setup_metrics",
]
