"""Events that no middleware sees, reported to whoever measures them (the metrics package).

Middleware sees each handled request, but not how a broker message finally ended (acked,
retried, dead-lettered), what a publish cost, or a WebSocket session opening and closing. The
framework code that knows reports it here; :func:`framework.metrics.setup_metrics` installs
the :class:`Observer` that turns the events into OpenTelemetry instruments. With no observer
installed (the default) each report is one global read and a ``None`` test.

This module imports nothing optional, so core code (brokers, servers) can report without
depending on OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = [
    "DEAD_LETTERED",
    "FILTERED",
    "OK",
    "RETRIED",
    "LagReading",
    "LagSource",
    "Observer",
    "current_observer",
    "set_observer",
]

#: One partition's consumer lag: (system, topic, group, partition, messages behind).
LagReading = tuple[str, str, "str | None", int, int]
#: Called at collection time (possibly from another thread): the current lag readings.
LagSource = Callable[[], Iterable[LagReading]]

#: Outcomes of one processing attempt of a broker message (``pykratos.messaging.outcome``).
OK = "ok"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
#: Not this subscriber's: its ``tags`` filter left the message out (acknowledged unhandled).
FILTERED = "filtered"


class Observer(Protocol):
    """Receives the framework's events; every method must be cheap and must not raise."""

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
        """One processing attempt ended.

        Args:
            system: broker kind (``"kafka"``, ``"rabbitmq"``, ``"memory"`` ...).
            destination: topic / queue subscribed to.
            group: consumer group, if any.
            outcome: :data:`OK`, :data:`RETRIED` (failed, will be tried again),
                :data:`DEAD_LETTERED` (failed for good; sent to the DLQ or dropped) or
                :data:`FILTERED` (left out by the subscriber's tags; never handled).
            duration: seconds the handler ran; ``None`` when it never ran (undecodable,
                filtered).
            count: messages in the attempt (a batch handler's batch size, else 1).
            error_type: the failure's type or reason, ``None`` on success.
        """

    def message_published(
        self, system: str, destination: str, duration: float, error_type: str | None
    ) -> None:
        """One publish ended after ``duration`` seconds; ``error_type`` set when it failed."""

    def session_changed(self, kind: str, delta: int) -> None:
        """A long-lived session (WebSocket connection) opened (+1) or closed (-1)."""

    def request_refused(self, kind: str, reason: str) -> None:
        """A server refused a request before its middleware chain (so no middleware, and
        not the request-duration metrics, saw it).

        Args:
            kind: the server kind (``"http"``, ``"grpc"``).
            reason: why, e.g. ``"RATELIMIT"`` for the admission limit (the error reason the
                caller got).
        """

    def lag_source(self, source: LagSource) -> Callable[[], None]:
        """Read consumer lag from ``source`` at each collection; returns the function that
        stops reading it (call it when the subscription stops)."""


_observer: Observer | None = None


def set_observer(observer: Observer | None) -> None:
    """Install ``observer`` process-wide (``None`` removes it)."""
    global _observer
    _observer = observer


def current_observer() -> Observer | None:
    """The installed observer, or ``None``."""
    return _observer
