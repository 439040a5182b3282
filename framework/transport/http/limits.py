"""A request body size limit, enforced while the body streams in, before anything parses it.

:class:`BodyLimit` is an ASGI middleware (the :class:`~framework.transport.http.HttpServer`
installs it with its ``max_body_size``):

- a ``Content-Length`` over the limit is answered 413 at once, without reading the body and
  without running the route (one WARNING line per ``log_interval`` at most, as any client can
  trigger it);
- a body without ``Content-Length`` (chunked) is counted as it arrives; the read that passes
  the limit raises :class:`~framework.transport.http.errors.BodyTooLarge`, which reaches the
  middleware chain as ``Error(413, "PAYLOAD_TOO_LARGE")`` and is answered as such. Should the
  application turn it into another answer (code that catches every exception), the 413 is
  sent instead.

A ``Content-Length`` within the limit needs no counting: the HTTP parser never delivers more
bytes than it declares.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framework.errors import PAYLOAD_TOO_LARGE
from framework.log_throttle import LogThrottle
from framework.transport.http.errors import BodyTooLarge, error_response, too_large

__all__ = ["DEFAULT_MAX_BODY_SIZE", "BodyLimit"]

#: Default ``max_body_size`` of the HTTP server, in bytes (1 MiB).
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

_log = logging.getLogger("pykratos.http")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # the HTTP parser refuses these before the app sees them
                return None
    return None


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_body_size`` bytes with 413.

    Args:
        app: the ASGI application to protect.
        max_body_size: largest accepted body in bytes (>= 0).
        log_interval: seconds between two WARNING lines about refused ``Content-Length``s.
    """

    def __init__(self, app: ASGIApp, max_body_size: int, log_interval: float = 60.0) -> None:
        if max_body_size < 0:
            raise ValueError(f"max_body_size must be >= 0, got {max_body_size}")
        self.app = app
        self.max_body_size = max_body_size
        self._throttle = LogThrottle(log_interval)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await _Counted(self.app, self.max_body_size)(scope, receive, send)
            return
        if declared <= self.max_body_size:
            await self.app(scope, receive, send)
            return
        self._log_refused(scope, declared)
        await error_response(too_large(self.max_body_size))(scope, receive, send)

    def _log_refused(self, scope: Scope, declared: int) -> None:
        suppressed = self._throttle.admit()
        if suppressed is None:
            return
        _log.warning(
            "%s %s: refused a %d-byte body (limit %d): 413 %s%s",
            scope.get("method", ""),
            scope.get("path", ""),
            declared,
            self.max_body_size,
            PAYLOAD_TOO_LARGE,
            f" ({suppressed} more since the last such line, which is written at most once "
            f"per {self._throttle.interval:g}s)" if suppressed else "",
            extra={"kind": "http", "reason": PAYLOAD_TOO_LARGE},
        )


class _Counted:
    """One request without ``Content-Length``: count its body as the application reads it."""

    __slots__ = ("app", "exceeded", "limit", "received", "replaced")

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.exceeded = False
        self.replaced = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.exceeded:
                raise BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.exceeded = True
                    raise BodyTooLarge(self.limit)
            return message

        started = False

        async def checked_send(message: Message) -> None:
            nonlocal started
            if self.replaced:
                return  # the rest of the application's own (replaced) response
            if message["type"] == "http.response.start":
                if self.exceeded and message["status"] != 413:
                    # The application swallowed the error; the client still gets the 413.
                    self.replaced = True
                    await error_response(too_large(self.limit))(scope, receive, send)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, checked_send)
        except Exception:
            if not self.exceeded or started or self.replaced:
                raise
            await error_response(too_large(self.limit))(scope, receive, send)
