"""Request bytes that do not decode are a client error, not a server crash.

grpc calls a method's request deserializer itself; when it raises (corrupt protobuf, bytes of
another message type), grpc answers ``UNKNOWN`` and logs a stack trace at ERROR, once per call,
so any client could flood the log. The server therefore wraps every deserializer with
:func:`guard_deserializer`: a failure returns an :class:`Undecodable` marker instead of
raising, and the call is answered ``INVALID_ARGUMENT`` (HTTP 400) with the reason
:data:`MALFORMED_REQUEST`; the servicer never sees the marker:

- one request message: the call is refused before the middleware chain runs (there is no
  request to hand it), with no access-log line;
- a request stream: the bad message raises the :class:`~framework.errors.Error` from the
  servicer's ``async for`` (or ``context.read()``), so it travels through the chain like any
  other error the servicer does not catch.

Either way one WARNING line names the method and the decode error, at most once per
``interval`` per method, with the number of similar lines suppressed since the last one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from framework.errors import BadRequest, Error
from framework.log_throttle import LogThrottle

__all__ = [
    "MALFORMED_REQUEST",
    "CheckedContext",
    "RequestGuard",
    "Undecodable",
    "checked_requests",
    "guard_deserializer",
]

#: Reason of the 400 / INVALID_ARGUMENT sent for request bytes the method cannot decode.
MALFORMED_REQUEST = "MALFORMED_REQUEST"

_log = logging.getLogger("pykratos.grpc")


class Undecodable:
    """What a guarded deserializer returns instead of raising; ``cause`` is what it raised."""

    __slots__ = ("cause",)

    def __init__(self, cause: Exception) -> None:
        self.cause = cause


def guard_deserializer(
    deserializer: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning :class:`Undecodable` instead of raising (``None`` stays)."""
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:
            return Undecodable(exc)

    return deserialize


class RequestGuard:
    """Turns an :class:`Undecodable` of one method into its error, logging it throttled.

    Args:
        operation: the full method name (``/order.v1.OrderService/GetOrder``).
        interval: seconds between two WARNING lines about this method.
    """

    __slots__ = ("_throttle", "operation")

    def __init__(self, operation: str, interval: float = 60.0) -> None:
        self.operation = operation
        self._throttle = LogThrottle(interval)

    def error(self, bad: Undecodable) -> Error:
        """The 400 ``MALFORMED_REQUEST`` to answer; logs a WARNING unless throttled."""
        suppressed = self._throttle.admit()
        if suppressed is not None:
            _log.warning(
                "%s: request message cannot be decoded (%s: %s): answered INVALID_ARGUMENT %s%s",
                self.operation,
                type(bad.cause).__name__,
                bad.cause,
                MALFORMED_REQUEST,
                f" ({suppressed} more since the last such line, which is written at most "
                f"once per {self._throttle.interval:g}s)" if suppressed else "",
                extra={"kind": "grpc", "operation": self.operation, "reason": MALFORMED_REQUEST},
            )
        # The decoder's own text stays in the log: a custom deserializer may put internals in it.
        return BadRequest(
            MALFORMED_REQUEST, f"the request of {self.operation} is not a valid request message"
        )


async def checked_requests(requests: Any, guard: RequestGuard) -> AsyncIterator[Any]:
    """The request stream, raising the guard's error at the first undecodable message."""
    async for message in requests:
        if message.__class__ is Undecodable:
            raise guard.error(message)
        yield message


class CheckedContext:
    """A ``ServicerContext`` whose ``read()`` raises the guard's error for an undecodable
    message; everything else is the wrapped context's."""

    __slots__ = ("_context", "_guard")

    def __init__(self, context: Any, guard: RequestGuard) -> None:
        self._context = context
        self._guard = guard

    async def read(self) -> Any:
        """The next request message (grpc's ``EOF`` at the end of the stream)."""
        message = await self._context.read()
        if message.__class__ is Undecodable:
            raise self._guard.error(message)
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
