"""Structured logging: JSON or console lines, with operation fields and a ``trace_id`` slot.

Call :func:`setup_logging` once at start (the reference service does it from config). Fields
passed as ``extra={...}`` (``kind``, ``operation``, ``code``, ``reason``, ``latency_ms``, ...)
appear as JSON keys or as ``key=value`` pairs. ``trace_id``/``span_id`` are filled from the
current OpenTelemetry span when the ``otel`` extra is installed and a span is recording, and
are empty otherwise.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

__all__ = ["ConsoleFormatter", "JsonFormatter", "TraceContextFilter", "setup_logging"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# ...plus uvicorn's ANSI-coloured duplicate of the message, which is not a field.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {
    "message", "asctime", "taskName", "color_message"
}


@functools.cache
def _span_getter() -> Callable[[], Any] | None:
    """OpenTelemetry's ``get_current_span``, or ``None`` without the otel extra.

    Imported on the first record rather than with this module (the core never imports
    OpenTelemetry by itself), and only once: retrying a failed import would cost ~35 us on
    every record.
    """
    try:
        from opentelemetry.trace import get_current_span
    except ImportError:
        return None
    return get_current_span


def _current_trace_ids() -> tuple[str, str]:
    get_current_span = _span_getter()
    if get_current_span is None:
        return "", ""
    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to every record (empty when there is no span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = _current_trace_ids()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extras, and the stack if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["stack"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """Human-oriented: ``time LEVEL logger: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items() if v not in ("", None))
        line = f"{stamp}.{int(record.msecs):03d} {record.levelname:<5} {record.name}: "
        line += record.getMessage() + (f" {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(
    fmt: Literal["json", "console"] = "console",
    level: str | int = "INFO",
    *,
    client_level: str | int | None = "WARNING",
) -> None:
    """Route the root logger to stderr with the chosen format; idempotent.

    ``client_level`` is the level of the broker client libraries' loggers (``aiokafka``,
    ``aio_pika``, ``aiormq``), which are chatty at INFO (dozens of lines per start). It only
    applies to a logger the application did not configure itself; ``None`` leaves them at
    the root level. To see their INFO lines, set their level in your own log config, e.g.
    ``logging.getLogger("aiokafka").setLevel("INFO")``.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_pykratos", False):
            root.removeHandler(old)
    handler._pykratos = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # uvicorn's own access log would duplicate ours.
    logging.getLogger("uvicorn.access").disabled = True
    if client_level is not None:
        # Imported here: the logging module must not pull the broker package in.
        from framework.broker.clientlog import quiet_client_loggers

        quiet_client_loggers(client_level)
