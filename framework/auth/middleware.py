"""JWT on the server side: the :func:`jwt_auth` middleware and the WebSocket handshake hook.

::

    verifier = JwtVerifier(secret, audience="orders")
    public = {"GET /v1/status", "/grpc.health.v1.Health/Check"}
    auth = selector(jwt_auth(verifier)).match(lambda op: op not in public).build()
    HttpServer(middlewares=[tracing(), metrics(), auth, recovery()])
    WebSocketServer(authenticate=jwt_handshake(verifier), middlewares=[auth])

The claims of the verified token are readable by middleware and handlers further in with
:func:`claims_from_context` (and on a WebSocket, as ``session.principal``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from framework.auth.jwt import Claims, JwtVerifier, bearer_token
from framework.middleware.core import Handler, Middleware, declare_errors
from framework.transport.context import current_transport

__all__ = ["claims_from_context", "jwt_auth", "jwt_handshake"]

_claims: contextvars.ContextVar[Claims | None] = contextvars.ContextVar(
    "pykratos_jwt_claims", default=None
)

_SERVER_KINDS = frozenset({"http", "grpc", "websocket"})


def claims_from_context() -> Claims | None:
    """The verified claims of the call being handled, or ``None`` (not authenticated)."""
    return _claims.get()


def jwt_auth(
    verifier: JwtVerifier, *, header: str = "authorization", brokers: bool = False
) -> Middleware:
    """Refuse calls without a valid ``Authorization: Bearer <jwt>``: 401 / UNAUTHENTICATED.

    Args:
        verifier: checks the token (:class:`~framework.auth.jwt.JwtVerifier`).
        header: request header / gRPC metadata key carrying the token (lower case).
        brokers: also require a token in broker message headers. Off by default: a
            message refused is retried and dead-lettered, which suits a poisoned queue but
            not a publisher that simply does not sign.

    On HTTP the header is read from the request, on gRPC from the call metadata. On a
    WebSocket, a session opened through :func:`jwt_handshake` already carries its claims
    (checked once, at the handshake; its ``principal``); otherwise the handshake's
    ``Authorization`` header is verified. Select operations (allow lists) with a selector.
    """
    get_transport = current_transport.get
    header = header.lower()

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = get_transport()
            if transport is None or (transport.kind not in _SERVER_KINDS and not brokers):
                return await handler(request)
            principal = getattr(transport.raw, "principal", None)
            if transport.kind == "websocket" and isinstance(principal, Mapping):
                claims: Claims = principal
            else:
                claims = verifier.verify(bearer_token(transport.request_headers, header))
            token = _claims.set(claims)
            try:
                return await handler(request)
            finally:
                _claims.reset(token)

        return run

    return declare_errors(
        middleware,
        lambda kind, _: {401: "UNAUTHORIZED, TOKEN_EXPIRED or TOKEN_INVALID: no valid bearer token"}
        if kind in _SERVER_KINDS or brokers
        else {},
    )


def jwt_handshake(verifier: JwtVerifier, *, query_param: str | None = "token") -> Any:
    """A WebSocket ``authenticate`` hook: verify the token of the upgrade request.

    The token comes from ``Authorization: Bearer`` or, since browsers cannot set headers on a
    WebSocket, the ``?token=`` query parameter (``query_param=None`` refuses it there). A
    refused handshake is an HTTP 401 with the reason in the JSON body; an accepted one makes
    the claims the session's ``principal``.
    """

    def authenticate(handshake: Any) -> Claims:
        token = bearer_token(handshake.headers)
        if token is None and query_param is not None:
            token = handshake.query.get(query_param) or None
        return verifier.verify(token)

    return authenticate
