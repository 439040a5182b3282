"""uvicorn's HTTP/1.1 protocols with read timeouts and a drain that answers what it has read.

uvicorn (h11 and httptools alike) has a keep-alive idle timeout but no read timeout: a client
that opens connections and sends a request head a byte at a time (slowloris), or a body a byte
at a time, holds each connection and its buffers forever; a fresh connection that sends
nothing is never closed either. And its graceful shutdown closes every connection whose last
response is complete, even when the next request has already arrived (in part or whole,
pipelined or in the socket's buffer): that request is lost and the client gets a reset.

:func:`guarded_protocol` makes a subclass of uvicorn's protocol class that adds:

- **head timeout** (``header_timeout``): from the accept, and from the first byte of each next
  request, the request line and headers must be complete within this many seconds. A client
  that sent part of a head is answered ``408 REQUEST_TIMEOUT`` (the framework's error body,
  ``Connection: close``); a connection that sent nothing is closed. Time the server spends
  answering the previous request (pipelining) does not count.
- **body timeout** (``body_timeout``): while the application waits for more of the request
  body, at most this many seconds may pass between two reads (nginx's
  ``client_body_timeout``); then 408 if no response was started, and the connection is
  closed (the application's ``receive()`` returns ``http.disconnect``). Time while the server
  itself stopped reading (the application has not consumed what it has) does not count.
- **idle timeout**: uvicorn's own ``timeout_keep_alive`` between a response and the next
  request's first byte (the head timeout takes over from that byte).
- **drain** (:meth:`shutdown`, what the server's stop calls on every connection): a request
  whose bytes have reached the server (its head being read, queued behind another, or waiting
  in the socket's buffer) is read and answered, the last response on the connection carrying
  ``Connection: close``; a connection with nothing pending is closed at once. A request
  that begins arriving after the drain began is not read (the client sees the connection
  end after the previous response, as with any kept-alive connection that closes).
- **lingering close** on every close the protocol makes
  (:class:`~framework.transport.http.linger.LingeringTransport`), so that a client still
  sending does not get a reset that destroys the last response before it reads it.
- **bad requests in the framework's error body**: what the parser refuses (not HTTP/1.1) is
  answered ``400 BAD_REQUEST``, a request line and headers over ``max_header_size`` bytes
  ``431 REQUEST_HEADER_FIELDS_TOO_LARGE``, both as ``{"code", "reason", "message",
  "metadata"}`` like every other error (uvicorn answers ``text/plain``), then closed.

Each timeout closing a connection is logged at WARNING, at most once per minute per server
(any client can trigger it). Only uvicorn's ``h11`` and ``httptools`` protocols are supported,
and only the uvicorn minor release ``pyproject.toml`` pins (0.54): the subclass reaches
uvicorn's private protocol state (``cycle``, ``flow``, the keep-alive task).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson

from framework.log_throttle import LogThrottle
from framework.transport.http.linger import LINGER_SECONDS, LingeringTransport, unread_count

__all__ = ["REQUEST_TIMEOUT", "ReadLimits", "guarded_protocol"]

_log = logging.getLogger("pykratos.http")

#: Reason of the 408 answered to a client too slow to send its request.
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"


@dataclass
class ReadLimits:
    """The read timeouts of one server, in seconds (``None``: no limit)."""

    header_timeout: float | None = 10.0
    body_timeout: float | None = 30.0
    max_header_size: int = 32 * 1024
    server_name: str = "http"
    throttle: LogThrottle = field(default_factory=lambda: LogThrottle(60.0))

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            # NaN passes "<= 0" and an infinite timer never fires: None says "no limit".
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{self.server_name}: {name} must be a finite number > 0 "
                                 f"seconds, or None, got {value}")
        size = self.max_header_size
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"{self.server_name}: max_header_size must be an int of bytes, "
                             f"got {size!r}")
        if self.max_header_size <= 0:
            raise ValueError(f"{self.server_name}: max_header_size must be > 0 bytes, "
                             f"got {self.max_header_size}")


def _error_response(status: HTTPStatus, message: str, **metadata: str) -> bytes:
    """A complete ``Connection: close`` response with the framework's error body."""
    reason = REQUEST_TIMEOUT if status == HTTPStatus.REQUEST_TIMEOUT else status.name
    body = orjson.dumps(
        {"code": int(status), "reason": reason, "message": message, "metadata": metadata}
    )
    return (
        f"HTTP/1.1 {int(status)} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
    )


def _timeout_response(what: str, seconds: float) -> bytes:
    return _error_response(
        HTTPStatus.REQUEST_TIMEOUT, f"the request {what} was not received within {seconds:g}s"
    )


class _Guard:
    """Mixin over uvicorn's ``H11Protocol``/``HttpToolsProtocol`` (see the module docstring)."""

    limits: ReadLimits
    # Set by uvicorn's protocol classes.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    flow: Any
    client: Any
    connections: set[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = False  # part of a request head has arrived (for the 408 choice)
        self._body_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._last: Any = None  # the cycle marked last while draining
        self._budget = 0  # bytes received before the drain began, still to be read

    # -- what the subclass knows about its parser -------------------------------------------

    def _unparsed(self) -> bool:
        """Bytes of a next request have arrived that no request cycle holds yet (its head is
        not complete)."""
        raise NotImplementedError

    # -- uvicorn's protocol interface ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        lingering = LingeringTransport(
            transport, self, LINGER_SECONDS, lambda: self.connections.discard(self)
        )
        super().connection_made(lingering)  # type: ignore[misc]
        self._arm_head()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # lingering close: what the client still sends is not read
        if self._draining and not self._admits(len(data)):
            self._stop_reading()
            return
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        protocol: object = self.transport.get_protocol()
        if self.transport.is_closing() or protocol is not self:
            self._cancel_timers()  # closed, or upgraded to a WebSocket
            return
        if self.cycle is not before:
            self._cancel_head()
        if self._unparsed():
            self._head_bytes = True
            self._arm_head()
        self._check_body()
        if self._draining:
            self._close_after_pending()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self.transport.is_closing():
            return
        if not self._unparsed():
            self._cancel_head()  # a queued request has started: its head was complete
        self._check_body()
        if self._draining:
            self._close_after_pending()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        transport = self.transport
        super().connection_lost(exc)  # type: ignore[misc]
        if isinstance(transport, LingeringTransport):
            transport.lost()

    def shutdown(self) -> None:
        """Graceful stop: answer every request already received, then close (see above)."""
        if self._draining or self.transport is None or self.transport.is_closing():
            return
        self._draining = True
        # The bytes already received, not yet read: the requests they hold are answered.
        self._budget = unread_count(self.transport)
        if self._busy() or self._unparsed() or self._budget:
            self._close_after_pending()
            self._arm_head()  # bytes that never make a request do not hold the stop
            return
        super().shutdown()  # type: ignore[misc]  # idle: uvicorn closes it

    def send_400_response(self, msg: str) -> None:
        """What the parser refused, in the framework's error body (uvicorn: ``text/plain``)."""
        self._cancel_timers()
        limit = self.limits.max_header_size
        if self._head_oversized():
            response = _error_response(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"the request line and headers are larger than the {limit} bytes this server "
                "accepts",
                limit=str(limit),
            )
        else:
            response = _error_response(HTTPStatus.BAD_REQUEST, f"not a valid HTTP/1.1 request: "
                                       f"{msg.rstrip('.')}")
        self.transport.write(response)
        self.transport.close()

    def _head_oversized(self) -> bool:
        """The request being refused has a head over ``max_header_size``."""
        raise NotImplementedError

    # -- drain -------------------------------------------------------------------------------

    def _busy(self) -> bool:
        """A request read is not answered yet. ``cycle`` is the newest request read (httptools
        queues pipelined ones, answered in order): when it is answered, all are."""
        return self.cycle is not None and not self.cycle.response_complete

    def _close_after_pending(self) -> None:
        """While draining, re-evaluated whenever bytes arrive or a response completes: the
        newest request read is the last one (``Connection: close``) unless more bytes are
        waiting; once it is read whole, reading stops, so nothing after it counts as read;
        a connection with nothing pending is closed."""
        pending = self._unparsed() or (self._budget > 0 and unread_count(self.transport) > 0)
        marked = self._last
        cycle = self.cycle
        if marked is not None and marked is not cycle and not marked.response_started:
            self._keep_alive(marked, True)  # a request was read after it: not the last
        if self._busy():
            if pending and cycle.response_started and not cycle.keep_alive:
                return  # already told the client it closes: what follows is not answered
            self._keep_alive(cycle, pending)
            self._last = None if pending else cycle
            if not pending and not cycle.more_body:
                self.transport.pause_reading()
        elif not pending:
            self._cancel_timers()
            self.transport.close()

    def _admits(self, size: int) -> bool:
        """While draining: are these bytes part of a request received before the drain began?
        They are while the bytes then waiting are being read, and while a request begun is
        incomplete (its head, or a body the application waits for)."""
        budget, self._budget = self._budget, max(0, self._budget - size)
        cycle = self.cycle
        reading_body = cycle is not None and cycle.more_body and not cycle.response_complete
        return budget > 0 or self._unparsed() or reading_body

    def _stop_reading(self) -> None:
        """A request began after the drain did: it is not read; the connection closes after
        the response to the last request before it (at once when there is none)."""
        self.transport.pause_reading()
        if self._busy():
            self._keep_alive(self.cycle, False)
            self._last = self.cycle
        else:
            self._cancel_timers()
            self.transport.close()

    def _keep_alive(self, cycle: Any, keep: bool) -> None:
        """Whether the connection stays open after ``cycle``'s response; a response not
        started yet then says ``Connection: close``."""
        cycle.keep_alive = keep

    # -- timers ------------------------------------------------------------------------------

    def _arm_head(self) -> None:
        seconds = self.limits.header_timeout
        if seconds is not None and self._head_timer is None:
            self._head_timer = self.loop.call_later(seconds, self._head_expired)

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_bytes = False

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._busy():
            # Still answering an earlier request: the client is not the slow one.
            self._arm_head()
            return
        seconds = self.limits.header_timeout or 0.0
        if self._head_bytes:
            self._refuse("head (request line and headers)", seconds, answer=True)
        else:
            self._refuse("", seconds, answer=False)

    def _check_body(self) -> None:
        """(Re)arm the body timer while the application waits for body bytes, else cancel."""
        cycle, seconds = self.cycle, self.limits.body_timeout
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if seconds is None or cycle is None or cycle.response_complete or not cycle.more_body:
            return
        self._body_timer = self.loop.call_later(seconds, self._body_expired, cycle)

    def _body_expired(self, cycle: Any) -> None:
        self._body_timer = None
        if self.transport.is_closing() or cycle is not self.cycle:
            return
        if cycle.response_complete or not cycle.more_body:
            return
        if self.flow.read_paused:
            self._check_body()  # the application has not read what it has: not the client
            return
        answer = not cycle.response_started
        # The application's own response (if it comes) must not follow ours on the wire.
        cycle.disconnected = True
        cycle.message_event.set()
        self._refuse("body", self.limits.body_timeout or 0.0, answer=answer)

    def _cancel_timers(self) -> None:
        self._cancel_head()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _refuse(self, what: str, seconds: float, *, answer: bool) -> None:
        self._cancel_timers()
        if answer:
            self.transport.write(_timeout_response(what, seconds))
        self.transport.close()
        limits = self.limits
        suppressed = limits.throttle.admit()
        if suppressed is None:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        detail = (f"the request {what} not received within {seconds:g}s: 408 {REQUEST_TIMEOUT}"
                  if answer else f"no request within {seconds:g}s of connecting")
        _log.warning(
            "%s: closed the connection of %s: %s%s",
            limits.server_name,
            client,
            detail,
            f" ({suppressed} more since the last such line, which is written at most once "
            f"per {limits.throttle.interval:g}s)" if suppressed else "",
            extra={"kind": "http", "reason": REQUEST_TIMEOUT},
        )


class _HeadTooLarge(Exception):
    pass


class _HttpToolsGuard(_Guard):
    """httptools: its parser calls ``on_message_begin``/``on_headers_complete`` on us."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_size = 0
        self._oversized = False

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_size = 0
        super().on_message_begin()  # type: ignore[misc]

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)  # type: ignore[misc]

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)  # type: ignore[misc]

    def _count_head(self, size: int) -> None:
        # httptools itself has no limit: the head would grow for as long as the client sends.
        self._head_size += size
        if self._head_size > self.limits.max_header_size:
            self._oversized = True
            # Raised inside a parser callback: httptools stops and uvicorn calls
            # send_400_response, which answers 431.
            raise _HeadTooLarge

    def _head_oversized(self) -> bool:
        return self._oversized

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()  # type: ignore[misc]

    def _unparsed(self) -> bool:
        return self._in_head


class _H11Guard(_Guard):
    """h11: unparsed bytes wait in the connection's buffer (``trailing_data``)."""

    conn: Any

    def _keep_alive(self, cycle: Any, keep: bool) -> None:
        # uvicorn's h11 cycle closes without saying so; a "Connection: close" among the
        # response's headers makes h11 say it, and close after the response.
        if cycle.response_started:
            cycle.keep_alive = keep
            return
        headers = [h for h in cycle.default_headers if h != _CLOSE]
        cycle.default_headers = headers if keep else [*headers, _CLOSE]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_size = 0

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            self._head_size += len(data)  # bytes read while no body is expected
        super().data_received(data)
        if self.cycle is not cycle:
            self._head_size = 0

    def _head_oversized(self) -> bool:
        # h11 refuses a head once its receive buffer passes max_incomplete_event_size, which
        # the server sets to max_header_size; its error does not say which limit was hit.
        return self._head_size > self.limits.max_header_size

    def _unparsed(self) -> bool:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            return False  # what is buffered is this request's body
        return bool(self.conn.trailing_data[0])


_CLOSE = (b"connection", b"close")


def guarded_protocol(http: str | type[asyncio.Protocol], limits: ReadLimits) -> type[Any]:
    """A subclass of uvicorn's protocol for ``http`` (``"auto"``, ``"h11"``, ``"httptools"``
    or one of their classes) with ``limits`` and the drain of the module docstring.

    Raises:
        ValueError: another protocol (``"zttp"``, a class of your own): its parser is not
            one this module knows how to watch.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    base: type[asyncio.Protocol] | None
    if http == "auto":
        base = AutoHTTPProtocol
    elif http == "h11":
        base = H11Protocol
    elif http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    else:
        base = http if isinstance(http, type) else None
    guard: type[_Guard] | None = None
    if base is not None and issubclass(base, H11Protocol):
        guard = _H11Guard
    elif base is not None and base.__name__ == "HttpToolsProtocol":
        guard = _HttpToolsGuard
    if base is None or guard is None:
        raise ValueError(
            f"{limits.server_name}: http={http!r}: the read timeouts and the graceful drain "
            "support uvicorn's 'h11' and 'httptools' protocols only"
        )
    return type(f"Guarded{base.__name__}", (guard, base), {"limits": limits})
