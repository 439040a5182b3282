"""``GET /metrics`` on an :class:`~framework.transport.http.HttpServer` for Prometheus."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi.routing import APIRoute
from starlette.responses import Response

from framework.metrics.setup import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from framework.transport.http.server import HttpServer

__all__ = ["mount_metrics"]


def mount_metrics(server: HttpServer, metrics: Metrics, path: str = "/metrics") -> None:
    """Serve ``metrics`` at ``path`` on ``server``: the Prometheus text format.

    Like the health routes, the endpoint stays out of the middleware chain (a scrape is not
    traffic: it is neither measured, rate limited nor authenticated) and the OpenAPI schema.
    Collection runs in a worker thread, so a scrape does not hold the event loop.
    """

    async def scrape() -> Response:
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE)

    if server.admission is not None:
        server.admission.exempt.add(path)  # a scrape is not refused under overload either
    server.app.router.add_api_route(
        path, scrape, methods=["GET"], include_in_schema=False, route_class_override=APIRoute
    )
