"""The instruments behind :func:`~framework.metrics.metrics` and the broker observer.

Instruments are created once per meter provider and shared by every middleware and server
that uses it. Per request the middleware only reads a per-operation record (attributes built
once), bumps a plain integer for the in-flight count (read by an observable up-down counter at
collection time) and adds the duration to the record's own explicit-bucket histogram.

Why not ``Histogram.record()`` of the OpenTelemetry SDK for the request durations: it cleans,
sorts and hashes the attributes on every call, 13-26 us per call measured here (SDK 1.45),
which is 8-15 % of a whole HTTP request of the reference service. The framework aggregates
the same way (cumulative, the same bucket boundaries, sum, count, min, max) for about 1 us,
and hands the result to the SDK's readers as ordinary OpenTelemetry ``Metric`` data at each
collection (:func:`attach_server_metrics`), so exporters (Prometheus, OTLP) see no difference.
Broker and publish instruments are SDK instruments: their events are far rarer than requests
relative to their cost.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from framework.metrics import names
from framework.observer import LagSource

try:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricReader,
        MetricsData,
        ResourceMetrics,
        ScopeMetrics,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"framework.metrics needs OpenTelemetry: pip install 'pykratos[metrics]' ({exc})"
    ) from exc

__all__ = [
    "BrokerObserver",
    "OperationRecord",
    "ServerInstruments",
    "attach_server_metrics",
    "instruments_for",
]

Attributes = dict[str, Any]
METER_NAME = "pykratos"


def _histogram(meter: Meter, name: str, description: str) -> Any:
    """An SDK histogram with the semantic conventions' bucket advice (broker instruments)."""
    return meter.create_histogram(
        name,
        unit="s",
        description=description,
        explicit_bucket_boundaries_advisory=names.DURATION_BUCKETS,
    )


def _base_attributes(kind: str, operation: str) -> Attributes:
    if kind == "http":
        method, _, route = operation.partition(" ")
        return {"http.request.method": method, "http.route": route}
    if kind == "grpc":
        return {"rpc.system.name": "grpc", "rpc.method": operation.lstrip("/")}
    return {"websocket.message.type": operation}


_BOUNDS = names.DURATION_BUCKETS

#: (instrument name, description) of the duration histogram of each server kind.
_DURATIONS = {
    "http": (names.HTTP_DURATION, "Duration of HTTP server requests."),
    "grpc": (names.RPC_DURATION, "Duration of incoming gRPC calls."),
    "websocket": (names.WS_DURATION, "Duration of WebSocket message handlers."),
}


class _Point:
    """One histogram series: explicit buckets (upper bound inclusive, as OpenTelemetry)."""

    __slots__ = ("attributes", "count", "counts", "max", "min", "sum")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.counts = [0] * (len(_BOUNDS) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def add(self, seconds: float) -> None:
        """Count one call that took ``seconds``."""
        self.counts[bisect_left(_BOUNDS, seconds)] += 1
        self.count += 1
        self.sum += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds


#: The status of a successful call per server kind (WebSocket messages have none).
_SUCCESS: dict[str, Any] = {"http": 200, "grpc": "OK"}


class OperationRecord:
    """What is measured for one (server kind, operation): attributes, in-flight, durations.

    Attributes:
        kind, base: the server kind and the attributes every series of the operation has.
        active: calls running now (read by the in-flight instrument at collection).
        ok: the series of successful calls (HTTP 200, gRPC ``OK``, WebSocket no error),
            looked up once so that the common case costs no key hashing per call.
    """

    __slots__ = ("_points", "active", "base", "kind", "ok")

    def __init__(self, kind: str, operation: str) -> None:
        self.kind = kind
        self.base = _base_attributes(kind, operation)
        self.active = 0
        self._points: dict[tuple[Any, str | None], _Point] = {}
        self.ok = self._new_point(_SUCCESS.get(kind), None)

    def record(self, seconds: float, status: Any, error_type: str | None) -> None:
        """Record one finished call; ``status`` is the HTTP code / gRPC code name / ``None``."""
        point = self._points.get((status, error_type))
        if point is None:
            point = self._new_point(status, error_type)
        point.add(seconds)

    def _new_point(self, status: Any, error_type: str | None) -> _Point:
        attributes = dict(self.base)
        if self.kind == "http":
            attributes["http.response.status_code"] = status
        elif self.kind == "grpc":
            attributes["rpc.response.status_code"] = status
        if error_type is not None:
            attributes["error.type"] = error_type
        point = _Point(attributes)
        # Statuses and reasons are a small set per operation; past the cap, one series
        # takes the rest rather than growing without bound.
        if len(self._points) < 256:
            self._points[(status, error_type)] = point
        return point

    def data_points(self, start_ns: int, now_ns: int) -> list[HistogramDataPoint]:
        """The cumulative data points of this operation, as OpenTelemetry data."""
        return [
            HistogramDataPoint(
                attributes=point.attributes,
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=point.count,
                sum=point.sum,
                bucket_counts=list(point.counts),
                explicit_bounds=list(_BOUNDS),
                min=point.min,
                max=point.max,
            )
            for point in list(self._points.values())
            if point.count
        ]


class ServerInstruments:
    """Duration histograms and in-flight counters of the HTTP, gRPC and WebSocket servers."""

    def __init__(self, meter: Meter) -> None:
        self._records: dict[tuple[str, str], OperationRecord] = {}
        self._lock = threading.Lock()
        self._start_ns = time.time_ns()
        for kind, name in names.ACTIVE_REQUESTS.items():
            meter.create_observable_up_down_counter(
                name,
                callbacks=[self._active_callback(kind)],
                unit="{request}",
                description=f"Number of {kind} requests being served.",
            )

    def record_for(self, kind: str, operation: str) -> OperationRecord:
        """The record of ``operation`` on a ``kind`` server (created on first use)."""
        key = (kind, operation)
        record = self._records.get(key)
        if record is None:
            with self._lock:  # the collection callback iterates from another thread
                record = self._records.setdefault(key, OperationRecord(kind, operation))
        return record

    def _active_callback(self, kind: str) -> Any:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                records = [r for r in self._records.values() if r.kind == kind]
            return [Observation(r.active, r.base) for r in records]

        return observe

    def metrics(self) -> list[Metric]:
        """The duration histograms as OpenTelemetry metric data, collected now."""
        now_ns = time.time_ns()
        with self._lock:
            records = list(self._records.values())
        found: list[Metric] = []
        for kind, (name, description) in _DURATIONS.items():
            points = [
                point
                for record in records
                if record.kind == kind
                for point in record.data_points(self._start_ns, now_ns)
            ]
            if points:
                data = Histogram(points, AggregationTemporality.CUMULATIVE)
                found.append(Metric(name, description, "s", data))
        return found


_SCOPE = InstrumentationScope("pykratos")


def attach_server_metrics(reader: MetricReader, server: ServerInstruments) -> None:
    """Make ``reader`` export ``server``'s histograms with what it collects from the SDK.

    A :class:`MetricReader` hands each collection to its ``_receive_metrics`` (the hook its
    subclasses implement, Prometheus and periodic exporting alike); the histograms are added
    to the collection's first resource there.
    """
    receive = reader._receive_metrics

    def receive_with_servers(metrics_data: MetricsData, *args: Any, **kwargs: Any) -> None:
        extra = server.metrics()
        if extra and metrics_data is not None and metrics_data.resource_metrics:
            first, *rest = metrics_data.resource_metrics
            scopes = [*first.scope_metrics, ScopeMetrics(_SCOPE, extra, "")]
            merged = ResourceMetrics(first.resource, scopes, first.schema_url)
            metrics_data = MetricsData([merged, *rest])
        receive(metrics_data, *args, **kwargs)

    reader._receive_metrics = receive_with_servers  # type: ignore[method-assign]


class BrokerObserver:
    """The :class:`framework.observer.Observer` that records broker and session events."""

    def __init__(self, meter: Meter) -> None:
        self._process = _histogram(
            meter, names.MESSAGING_PROCESS_DURATION, "Duration of processing operations."
        )
        self._consumed = meter.create_counter(
            names.MESSAGING_CONSUMED,
            unit="{message}",
            description="Messages handled, by outcome (ok, retried, dead_lettered).",
        )
        self._operation = _histogram(
            meter, names.MESSAGING_OPERATION_DURATION, "Duration of messaging operations."
        )
        self._sent = meter.create_counter(
            names.MESSAGING_SENT, unit="{message}", description="Messages published."
        )
        self._sessions = meter.create_up_down_counter(
            names.WS_SESSIONS, unit="{session}", description="Open WebSocket sessions."
        )
        self._refused = meter.create_counter(
            names.SERVER_REFUSED,
            unit="{request}",
            description="Requests a server refused before its middleware chain (admission).",
        )
        self._attributes: dict[tuple[Any, ...], Attributes] = {}
        self._lag_sources: list[LagSource] = []
        meter.create_observable_gauge(
            names.CONSUMER_LAG,
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages of a partition not yet processed (high watermark - position).",
        )

    def lag_source(self, source: LagSource) -> Callable[[], None]:
        """See :meth:`framework.observer.Observer.lag_source`."""
        self._lag_sources.append(source)

        def remove() -> None:
            if source in self._lag_sources:
                self._lag_sources.remove(source)

        return remove

    def _observe_lag(self, _: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for source in list(self._lag_sources):
            for system, topic, group, partition, lag in source():
                attributes: Attributes = {
                    "messaging.system": system,
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition),
                }
                if group is not None:
                    attributes["messaging.consumer.group.name"] = group
                observations.append(Observation(lag, attributes))
        return observations

    def _cached(self, key: tuple[Any, ...], build: Attributes) -> Attributes:
        found = self._attributes.get(key)
        if found is not None:
            return found
        if len(self._attributes) < 4096:
            self._attributes[key] = build
        return build

    def message_processed(
        self,
        system: str,
        destination: str,
        group: str | None,
        outcome: str,
        duration: float | None,
        count: int,
        error_type: str | None,
    ) -> None:
        """See :meth:`framework.observer.Observer.message_processed`."""
        key = ("p", system, destination, group, outcome, error_type)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {
                "messaging.system": system,
                "messaging.destination.name": destination,
                "messaging.operation.name": "process",
                names.OUTCOME: outcome,
            }
            if group is not None:
                attributes["messaging.consumer.group.name"] = group
            if error_type is not None:
                attributes["error.type"] = error_type
            attributes = self._cached(key, attributes)
        if duration is not None:
            self._process.record(duration, attributes)
        self._consumed.add(count, attributes)

    def message_published(
        self, system: str, destination: str, duration: float, error_type: str | None
    ) -> None:
        """See :meth:`framework.observer.Observer.message_published`."""
        key = ("s", system, destination, error_type)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {
                "messaging.system": system,
                "messaging.destination.name": destination,
                "messaging.operation.name": "publish",
                "messaging.operation.type": "send",
            }
            if error_type is not None:
                attributes["error.type"] = error_type
            attributes = self._cached(key, attributes)
        self._operation.record(duration, attributes)
        self._sent.add(1, attributes)

    def session_changed(self, kind: str, delta: int) -> None:
        """See :meth:`framework.observer.Observer.session_changed`."""
        self._sessions.add(delta)

    def request_refused(self, kind: str, reason: str) -> None:
        """See :meth:`framework.observer.Observer.request_refused`."""
        key = ("r", kind, reason)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._cached(key, {names.SERVER_KIND: kind, "error.type": reason})
        self._refused.add(1, attributes)


_instruments: dict[int, tuple[MeterProvider, ServerInstruments]] = {}
_instruments_lock = threading.Lock()


def instruments_for(provider: MeterProvider) -> ServerInstruments:
    """The shared :class:`ServerInstruments` of ``provider`` (one set per provider)."""
    entry = _instruments.get(id(provider))
    if entry is None or entry[0] is not provider:
        with _instruments_lock:
            entry = _instruments.get(id(provider))
            if entry is None or entry[0] is not provider:
                entry = (provider, ServerInstruments(provider.get_meter(METER_NAME)))
                _instruments[id(provider)] = entry
    return entry[1]
