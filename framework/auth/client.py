"""JWT on the client side: sign and attach the token to outgoing calls.

- :func:`jwt_client`: a :data:`~framework.middleware.Middleware` for client pipelines; it sets
  ``authorization`` in the current transport's ``request_headers`` (a mutable mapping the
  client sends as headers / metadata).
- :func:`grpc_auth_interceptors`: ``grpc.aio`` client interceptors adding the metadata.
- :class:`HttpxJwtAuth`: an ``httpx.Auth`` adding the header.
- :meth:`~framework.auth.jwt.JwtSigner.authorization` for anything else (broker headers).
"""

from __future__ import annotations

from typing import Any

from framework.auth.jwt import JwtSigner
from framework.middleware.core import Handler, Middleware
from framework.transport.context import current_transport

__all__ = ["HttpxJwtAuth", "grpc_auth_interceptors", "jwt_client"]


def jwt_client(signer: JwtSigner, *, header: str = "authorization") -> Middleware:
    """Client middleware: put ``Bearer <token>`` in the outgoing call's headers.

    Raises ``RuntimeError`` when there is no transport, or its ``request_headers`` cannot be
    written: a client pipeline must provide a mutable mapping.
    """

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = current_transport.get()
            headers = None if transport is None else transport.request_headers
            if not isinstance(headers, dict):
                raise RuntimeError("jwt_client needs a client transport with a dict of headers")
            headers[header] = signer.authorization()
            return await handler(request)

        return run

    return middleware


class HttpxJwtAuth:
    """``httpx.AsyncClient(auth=HttpxJwtAuth(signer))``: a fresh-enough token on every
    request (httpx accepts any callable taking and returning the request as ``auth``)."""

    def __init__(self, signer: JwtSigner) -> None:
        self._signer = signer

    def __call__(self, request: Any) -> Any:
        """Set ``Authorization: Bearer <token>`` on ``request``."""
        request.headers["Authorization"] = self._signer.authorization()
        return request


def grpc_auth_interceptors(signer: JwtSigner) -> list[Any]:
    """Interceptors for ``grpc.aio.insecure_channel/secure_channel(..., interceptors=...)``
    adding ``authorization: Bearer <token>`` to every call's metadata (all four RPC kinds)."""
    import grpc.aio

    def details(call_details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(call_details.metadata or ()))
        metadata["authorization"] = signer.authorization()
        return call_details._replace(metadata=metadata)

    class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, call: Any, request: Any) -> Any:
            return await continuation(details(call), request)

    class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_stream(self, continuation: Any, call: Any, request: Any) -> Any:
            return await continuation(details(call), request)

    class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_stream_unary(self, continuation: Any, call: Any, requests: Any) -> Any:
            return await continuation(details(call), requests)

    class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_stream_stream(
            self, continuation: Any, call: Any, requests: Any
        ) -> Any:
            return await continuation(details(call), requests)

    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
