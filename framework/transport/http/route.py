"""Run the framework's middleware chain around every FastAPI route.

:class:`OperationRoute` is an ``APIRoute`` whose request handler sets the transport context
(``kind="http"``, ``operation="GET /v1/orders/{id}"``) and runs the server's middleware chain
around FastAPI's own handler, so recovery, logging, validation and timeouts behave exactly as
for gRPC and broker handlers. Use :class:`Router` (an ``APIRouter`` with this route class) in
the service layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from framework.errors import Error
from framework.middleware.core import Handler
from framework.middleware.recovery import internal_error
from framework.transport.context import Transport, current_transport
from framework.transport.http.errors import error_response, to_error
from framework.transport.http.media import check_media_type, strict_content_type, takes_json_body
from framework.transport.http.unicode import check_json_text

__all__ = ["PIPELINE_STATE", "OperationRoute", "Pipeline", "Router"]

_log = logging.getLogger("pykratos.http")

#: Attribute of ``FastAPI.state`` holding the server's :class:`Pipeline`.
PIPELINE_STATE = "pykratos_pipeline"


class Pipeline:
    """The server's middleware chain, applied lazily (once) to each route handler."""

    def __init__(self, wrap: Callable[[Handler], Handler], endpoint: str = "") -> None:
        self.wrap = wrap
        self.endpoint = endpoint


def _unhandled(exc: Exception) -> Error:
    """An exception that left the chain: known ones map, unknown ones are logged, not leaked."""
    error = to_error(exc)
    if error.code >= 500 and not isinstance(exc, Error):
        return internal_error(exc, logger=_log, hint=" (not caught by a recovery middleware)")
    return error


class OperationRoute(APIRoute):
    """An ``APIRoute`` whose handler runs inside the framework's middleware pipeline."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler for this route, run inside the transport context and the chain."""
        fastapi_handler = super().get_route_handler()
        path = self.path_format
        has_body = self.body_field is not None
        json_body = takes_json_body(self)
        strict = strict_content_type(self)

        async def inner(request: Request) -> Response:
            # Validation and HTTPException must reach middleware as Errors, so access logs
            # and selectors see "400 VALIDATOR", not a generic 500.
            try:
                if has_body:
                    # Read once: FastAPI reuses the cached body.
                    body = await request.body()
                    if json_body:
                        check_media_type(request.headers, body, strict=strict)
                    check_json_text(body)
                return await fastapi_handler(request)
            except Error:
                raise
            except Exception as exc:
                error = to_error(exc)
                if error.code >= 500:
                    raise  # let recovery log the stack
                raise error from exc

        # Per request only the Transport is built: the chain (per serving app) and the
        # operation names (per method) are computed once.
        operations = {method: f"{method} {path}" for method in self.methods or ()}
        bound: dict[object, tuple[Handler, Pipeline | None]] = {}

        def bind(app: object) -> tuple[Handler, Pipeline | None]:
            pipeline: Pipeline | None = getattr(getattr(app, "state", None), PIPELINE_STATE, None)
            entry = bound[app] = (pipeline.wrap(inner) if pipeline else inner, pipeline)
            return entry

        async def handle(request: Request) -> Response:
            scope = request.scope
            app = scope["app"]
            run, pipeline = bound.get(app) or bind(app)
            method = scope["method"]
            transport = Transport(
                kind="http",
                operation=operations.get(method) or f"{method} {path}",
                request_headers=request.headers,
                endpoint=pipeline.endpoint if pipeline else "",
                raw=request,
            )
            token = current_transport.set(transport)
            try:
                response: Response = await run(request)
            except Exception as exc:
                response = error_response(_unhandled(exc))
            finally:
                current_transport.reset(token)
            if transport.reply_headers:
                response.headers.update(transport.reply_headers)
            return response

        return handle


class Router(APIRouter):
    """``fastapi.APIRouter`` whose routes run the framework's middleware pipeline."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", OperationRoute)
        super().__init__(**kwargs)
