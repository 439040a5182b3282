"""Authentication with JSON Web Tokens for every transport (needs the ``auth`` extra).

Server side: :func:`jwt_auth` (middleware; HTTP, gRPC, WebSocket, optionally brokers),
:func:`jwt_handshake` (WebSocket upgrade), :func:`claims_from_context`. Client side:
:class:`JwtSigner`, :func:`jwt_client`, :func:`grpc_auth_interceptors`, :class:`HttpxJwtAuth`.
Refusals are 401 / ``UNAUTHENTICATED`` with reason ``UNAUTHORIZED``, ``TOKEN_EXPIRED`` or
``TOKEN_INVALID``.
"""

from framework.auth.client import HttpxJwtAuth, grpc_auth_interceptors, jwt_client
from framework.auth.jwt import (
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    UNAUTHORIZED,
    Claims,
    JwtSigner,
    JwtVerifier,
    bearer_token,
)
from framework.auth.middleware import claims_from_context, jwt_auth, jwt_handshake

__all__ = [
    "TOKEN_EXPIRED",
    "TOKEN_INVALID",
    "UNAUTHORIZED",
    "Claims",
    "HttpxJwtAuth",
    "JwtSigner",
    "JwtVerifier",
    "bearer_token",
    "claims_from_context",
    "grpc_auth_interceptors",
    "jwt_auth",
    "jwt_client",
    "jwt_handshake",
]
