"""The instruments behind :func:`~framework.metrics.metrics` and the broker observer.

Instruments are created once per meter provider and shared by every middleware and server
that uses it. Per request the middleware only reads a per-operation record (attributes built
once), bumps a plain integer for the in-flight count (read by an observable up-down counter
at collection time, so in-flight costs no SDK call) and records one histogram point.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from framework.metrics import names

try:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"framework.metrics needs OpenTelemetry: pip install 'pykratos[metrics]' ({exc})"
    ) from exc

__all__ = ["BrokerObserver", "OperationRecord", "ServerInstruments", "instruments_for"]

Attributes = dict[str, Any]
METER_NAME = "pykratos"


def _histogram(meter: Meter, name: str, description: str) -> Any:
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


class OperationRecord:
    """What is measured for one (server kind, operation): attributes, in-flight count."""

    __slots__ = ("_by_status", "active", "base", "histogram", "kind")

    def __init__(self, kind: str, operation: str, histogram: Any) -> None:
        self.kind = kind
        self.histogram = histogram
        self.base = _base_attributes(kind, operation)
        self.active = 0
        self._by_status: dict[tuple[Any, str | None], Attributes] = {}

    def record(self, seconds: float, status: Any, error_type: str | None) -> None:
        """Record one finished call; ``status`` is the HTTP code / gRPC code name / ``None``."""
        key = (status, error_type)
        attributes = self._by_status.get(key)
        if attributes is None:
            attributes = dict(self.base)
            if self.kind == "http":
                attributes["http.response.status_code"] = status
            elif self.kind == "grpc":
                attributes["rpc.response.status_code"] = status
            if error_type is not None:
                attributes["error.type"] = error_type
            # Bounded: statuses and reasons are a small set per operation.
            if len(self._by_status) < 256:
                self._by_status[key] = attributes
        self.histogram.record(seconds, attributes)


class ServerInstruments:
    """Duration histograms and in-flight counters of the HTTP, gRPC and WebSocket servers."""

    def __init__(self, meter: Meter) -> None:
        self._durations = {
            "http": _histogram(meter, names.HTTP_DURATION, "Duration of HTTP server requests."),
            "grpc": _histogram(meter, names.RPC_DURATION, "Duration of incoming gRPC calls."),
            "websocket": _histogram(
                meter, names.WS_DURATION, "Duration of WebSocket message handlers."
            ),
        }
        self._records: dict[tuple[str, str], OperationRecord] = {}
        self._lock = threading.Lock()
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
                record = self._records.setdefault(
                    key, OperationRecord(kind, operation, self._durations[kind])
                )
        return record

    def _active_callback(self, kind: str) -> Any:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                records = [r for r in self._records.values() if r.kind == kind]
            return [Observation(r.active, r.base) for r in records]

        return observe


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
        self._attributes: dict[tuple[Any, ...], Attributes] = {}

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
