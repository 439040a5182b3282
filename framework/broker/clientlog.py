"""What the broker client libraries (aiokafka, aio-pika, aiormq) may write to the log.

Two problems with their defaults: every start writes dozens of INFO lines, and an outage
writes the same connection error hundreds of times per second. So:

* :func:`quiet_client_loggers` sets the libraries' loggers to WARNING, but only where the
  application left them unset (``NOTSET``): a level set by the user's own log config wins.
  Brokers call it when they connect; :func:`framework.log.setup_logging` calls it too.
* :class:`ConnectionLog` collapses connection errors into one WARNING per state change:
  ``connected -> unavailable`` (the first error, or the broker noticing it first) and
  ``unavailable -> recovered`` (the broker saw an operation succeed again), the latter with
  the number of library lines suppressed meanwhile. While a broker's ``connect()`` runs, the
  library lines are suppressed too: ``connect()`` raises one error that says what is wrong,
  and a "Reconnecting..." line before the process exits would only mislead.

The state is per library (one :func:`connection_log` per broker kind), as the libraries'
lines do not say which client instance wrote them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator

__all__ = ["CLIENT_LOGGERS", "ConnectionLog", "connection_log", "quiet_client_loggers"]

#: Loggers of the client libraries, by broker kind.
CLIENT_LOGGERS: dict[str, tuple[str, ...]] = {
    "kafka": ("aiokafka",),
    "rabbitmq": ("aio_pika", "aiormq"),
}

_log = logging.getLogger("pykratos.broker")
# What a library line about a lost or refused connection looks like (aiokafka: "Unable
# connect to node", "Unable to update metadata", "NodeNotReadyError", "KafkaConnectionError",
# "RequestTimedOutError"; aiormq/aio-pika: "Connection attempt ... failed", "Reconnecting",
# "error when creating transport"). Other errors (a failed commit, a rebalance) pass.
_CONNECTION_ERROR = re.compile(
    r"connect|timed ?out|nodenotready|not ?available|refused|unreachable|"
    r"update metadata|creating transport|broken pipe|reset by peer",
    re.IGNORECASE,
)
_MAX_REASON = 300


def quiet_client_loggers(level: int | str = logging.WARNING) -> None:
    """Set every client library logger that has no level of its own to ``level``."""
    if isinstance(level, str):
        level = level.upper()
    for names in CLIENT_LOGGERS.values():
        for name in names:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET:
                logger.setLevel(level)


class ConnectionLog(logging.Filter):
    """Connection state of one client library, as its log lines and the broker see it."""

    def __init__(self, kind: str, loggers: tuple[str, ...]) -> None:
        super().__init__()
        self.kind = kind
        self.loggers = loggers
        self.endpoint = ""
        self._down_since: float | None = None
        self._suppressed = 0
        self._connecting = 0
        #: The last WARNING/ERROR line suppressed while a ``connect()`` ran (its cause).
        self.last_connect_error = ""
        self._listeners: list[Callable[[], None]] = []

    @property
    def available(self) -> bool:
        """False between an ``unavailable`` and the next ``recovered``."""
        return self._down_since is None

    @property
    def suppressed(self) -> int:
        """Library lines suppressed during the current outage."""
        return self._suppressed

    def install(self, endpoint: str = "") -> None:
        """Filter the library's loggers (children included) and remember ``endpoint`` for
        the lines this class writes; safe to call again."""
        if endpoint:
            self.endpoint = endpoint
        quiet_client_loggers()
        # A logger's filters do not apply to its children: filter every logger the library
        # created (they are all created when its modules are imported).
        manager = logging.Logger.manager
        names = [
            name
            for name in list(manager.loggerDict)
            if any(name == root or name.startswith(root + ".") for root in self.loggers)
        ]
        for name in {*self.loggers, *names}:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def on_unavailable(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the state turns unavailable (e.g. to start probing
        for the recovery)."""
        self._listeners.append(listener)

    def forget(self, listener: Callable[[], None]) -> None:
        """Remove a listener added with :meth:`on_unavailable`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def unavailable(self, reason: str, endpoint: str = "") -> None:
        """The broker is unreachable: one WARNING now, library lines suppressed until
        :meth:`recovered`."""
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self._suppressed = 0
        _log.warning(
            "%s at %s unavailable: %s (client library connection errors are suppressed "
            "until it recovers)",
            self.kind,
            endpoint or self.endpoint or "?",
            reason[:_MAX_REASON],
            extra={"kind": self.kind, "state": "unavailable"},
        )
        for listener in list(self._listeners):
            listener()

    def recovered(self, endpoint: str = "") -> None:
        """An operation succeeded: one WARNING if the broker was unavailable (cheap otherwise)."""
        down_since = self._down_since
        if down_since is None:
            return
        self._down_since = None
        _log.warning(
            "%s at %s recovered after %.1fs (%d client library log line(s) suppressed)",
            self.kind,
            endpoint or self.endpoint or "?",
            time.monotonic() - down_since,
            self._suppressed,
            extra={"kind": self.kind, "state": "recovered", "suppressed": self._suppressed},
        )
        self._suppressed = 0

    @contextlib.contextmanager
    def connecting(self) -> Iterator[None]:
        """Suppress the library's lines (but DEBUG) while a ``connect()`` runs; the last
        error among them is kept in :attr:`last_connect_error`."""
        self._connecting += 1
        self.last_connect_error = ""
        try:
            yield
        finally:
            self._connecting -= 1

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep a library record, or count and drop it (see the module docstring)."""
        if record.levelno <= logging.DEBUG:
            return True
        if self._connecting:
            if record.levelno >= logging.WARNING:
                self.last_connect_error = record.getMessage()[:_MAX_REASON]
            return False
        if self._down_since is not None:
            self._suppressed += 1
            return False
        if record.levelno >= logging.WARNING and _CONNECTION_ERROR.search(record.getMessage()):
            self.unavailable(record.getMessage())
            return False
        return True


_LOGS: dict[str, ConnectionLog] = {}


def connection_log(kind: str) -> ConnectionLog:
    """The :class:`ConnectionLog` of broker ``kind`` (``"kafka"``, ``"rabbitmq"``)."""
    found = _LOGS.get(kind)
    if found is None:
        found = _LOGS[kind] = ConnectionLog(kind, CLIENT_LOGGERS[kind])
    return found
