"""The opening handshake as the application sees it: origin check and authentication.

``authenticate(handshake)`` (sync or async) returns the principal (any object; it becomes
``session.principal``), or rejects the client:

- returning ``None`` -> HTTP 401 ``UNAUTHENTICATED``;
- raising :class:`framework.errors.Error` -> that status and body (e.g. ``Forbidden(...)`` ->
  403), so ``Unauthorized``/``Forbidden`` say exactly why;
- raising anything else is a bug in the hook: logged with its stack, HTTP 500.

Rejections carry the framework's JSON error body
``{"code", "reason", "message", "metadata"}``.
"""

from __future__ import annotations

import email.utils
import http
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from framework.errors import Error, Forbidden, InternalServer, Unauthorized
from framework.transport.websocket.envelope import dumps
from framework.validation import excerpt

__all__ = [
    "ORIGIN_NOT_ALLOWED",
    "ROUTE_NOT_FOUND",
    "UNAUTHENTICATED",
    "Authenticate",
    "Handshake",
    "OriginRule",
    "authenticate_handshake",
    "check_origin",
    "reject",
]

UNAUTHENTICATED = "UNAUTHENTICATED"
ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"

#: An allowed origin: exact string, a compiled pattern (full match), or ``None`` to accept
#: requests without an ``Origin`` header (non-browser clients).
OriginRule = str | re.Pattern[str] | None

_log = logging.getLogger("pykratos.websocket")


@dataclass(frozen=True, slots=True)
class Handshake:
    """The client's upgrade request.

    Attributes:
        path: the request path without the query string.
        query: query parameters (last value wins for repeated names).
        headers: request headers with lower-cased names (repeated headers joined by ", ").
        remote_address: the peer's ``(host, port)``.
    """

    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    remote_address: Any = None

    @classmethod
    def from_request(cls, request: Request, remote_address: Any = None) -> Handshake:
        """Build it from a websockets :class:`~websockets.http11.Request`."""
        url = urlsplit(request.path)
        headers: dict[str, str] = {}
        for name, value in request.headers.raw_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return cls(url.path, dict(parse_qsl(url.query)), headers, remote_address)

    def token(self, query_param: str = "token") -> str | None:
        """The bearer token from ``Authorization: Bearer ...`` or the ``?token=`` query
        parameter (browsers cannot set headers on a WebSocket), or ``None``."""
        auth = self.headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return self.query.get(query_param) or None


Authenticate = Callable[[Handshake], Any | Awaitable[Any]]


def check_origin(handshake: Handshake, allowed: Sequence[OriginRule]) -> Error | None:
    """``None`` if the ``Origin`` header is allowed, else a 403 ``ORIGIN_NOT_ALLOWED``."""
    origin = handshake.headers.get("origin")
    for rule in allowed:
        if rule is None:
            if origin is None:
                return None
        elif origin is not None and (
            rule == origin if isinstance(rule, str) else rule.fullmatch(origin)
        ):
            return None
    shown = repr(origin if origin is None else excerpt(origin))
    return Forbidden(ORIGIN_NOT_ALLOWED, f"origin {shown} is not allowed")


async def authenticate_handshake(fn: Authenticate, handshake: Handshake) -> Any:
    """Run ``fn``; return the principal or raise the :class:`Error` to reject with."""
    try:
        principal = fn(handshake)
        if inspect.isawaitable(principal):
            principal = await principal
    except Error:
        raise
    except Exception as exc:
        _log.exception("websocket authenticate hook failed for %s", handshake.path)
        raise InternalServer("AUTHENTICATE_FAILED", "authentication failed") from exc
    if principal is None:
        raise Unauthorized(UNAUTHENTICATED, "missing or invalid credentials")
    return principal


def reject(error: Error) -> Response:
    """An HTTP response refusing the upgrade, with ``error`` as JSON body."""
    try:
        phrase = http.HTTPStatus(error.code).phrase
    except ValueError:  # a non-standard code such as 499
        phrase = error.reason or "Error"
    body = dumps(error.to_dict())
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/json"),
        ]
    )
    return Response(error.code, phrase, headers, body)
