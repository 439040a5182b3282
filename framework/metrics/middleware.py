"""The :func:`metrics` middleware: request duration and in-flight requests, per operation.

Put it right after ``tracing()`` (outermost otherwise), so its duration covers the rest of
the chain, rate-limit rejections included::

    HttpServer(middlewares=[tracing(), metrics(), access_log(), recovery()])

It measures HTTP, gRPC and WebSocket handlers (see :mod:`framework.metrics.names`); on a
broker server it passes messages through untouched, because a message's outcome (acked,
retried, dead-lettered) is only known to the broker's processor, which reports it to the
observer installed by :func:`~framework.metrics.setup_metrics`.

Requests refused by a server's admission limit (``HttpServer(admission=...)``,
``GrpcServer(admission=...)``) never reach the chain, so they are not counted here: the
metrics observer counts them in ``pykratos.server.refused_requests``.

Per call the success path costs ~6.6k instructions (Python 3.11; ~1.5 us): the operation's
record comes from a dict of this chain, its "ok" series is held by the record, and the
duration goes to the framework's own histogram (:mod:`framework.metrics.instruments`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from framework.errors import from_exception
from framework.metrics.instruments import OperationRecord, ServerInstruments, instruments_for
from framework.middleware.core import Handler, Middleware
from framework.transport.context import current_transport

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["metrics"]

_MEASURED = frozenset({"http", "grpc", "websocket"})
_clock = time.perf_counter


def metrics(meter_provider: MeterProvider | None = None) -> Middleware:
    """Record ``http.server.request.duration`` / ``rpc.server.call.duration`` /
    ``pykratos.websocket.message.duration`` (seconds) and the in-flight count of every call.

    Args:
        meter_provider: where to record; ``None`` uses OpenTelemetry's global provider
            (installed by ``setup_metrics()``), looked up at the first call.

    The status recorded is the one the caller gets: the HTTP status code (the reply's
    ``status_code``, or the mapped code of the error raised), the gRPC status name, and for
    failures ``error.type``: the error's reason (HTTP 5xx, WebSocket) or the gRPC status name.
    """
    instruments: list[ServerInstruments] = []
    if meter_provider is not None:
        instruments.append(instruments_for(meter_provider))
    get_transport = current_transport.get

    def resolve() -> ServerInstruments:
        if not instruments:
            from opentelemetry.metrics import get_meter_provider

            instruments.append(instruments_for(get_meter_provider()))
        return instruments[0]

    def middleware(handler: Handler) -> Handler:
        # A chain is built per route / method, so this holds one or two operations.
        records: dict[str, OperationRecord] = {}

        def record_of(kind: str, operation: str) -> OperationRecord:
            record = resolve().record_for(kind, operation)
            if len(records) < 256:  # a chain shared by many operations caches the first
                records[operation] = record
            return record

        async def run(request: Any) -> Any:
            transport = get_transport()
            if transport is None or transport.kind not in _MEASURED:
                return await handler(request)
            kind = transport.kind
            record = records.get(transport.operation)
            if record is None or record.kind != kind:
                record = record_of(kind, transport.operation)
            record.active += 1
            started = _clock()
            try:
                reply = await handler(request)
            except asyncio.CancelledError:
                record.record(_clock() - started, _cancelled(kind), "cancelled")
                raise
            except Exception as exc:
                status, error_type = _failure(kind, exc)
                record.record(_clock() - started, status, error_type)
                raise
            finally:
                record.active -= 1
            # The common case, a success, goes straight to the operation's "ok" series.
            if kind != "http":
                record.ok.add(_clock() - started)
                return reply
            # A handler may return a Response itself, error statuses included.
            status = getattr(reply, "status_code", 200)
            if status == 200:
                record.ok.add(_clock() - started)
            else:
                status = status if isinstance(status, int) else 200
                record.record(_clock() - started, status, str(status) if status >= 500 else None)
            return reply

        return run

    return middleware


def _failure(kind: str, exc: BaseException) -> tuple[Any, str | None]:
    error = from_exception(exc)
    if kind == "http":
        # A 4xx is the caller's mistake, not a server error (semantic conventions).
        error_type = (error.reason or type(exc).__name__) if error.code >= 500 else None
        return error.code, error_type
    if kind == "grpc":
        return error.grpc_status, error.grpc_status
    return None, error.reason or type(exc).__name__


def _cancelled(kind: str) -> Any:
    if kind == "http":
        return 499  # client closed the request (nginx's code; no standard one exists)
    if kind == "grpc":
        return "CANCELLED"
    return None
