"""Admission control before routing: refuse what the server cannot take, at the lowest cost.

The ``ratelimit()`` middleware refuses inside the route's middleware chain, after uvicorn,
Starlette's middleware stack, FastAPI's routing, the transport context and the outer
middleware (tracing, metrics, access log) have run: on an overloaded server every refusal
still costs a good part of a request, and that work competes with the admitted requests.
:class:`Admission` asks its limiter first, as the server's outermost ASGI middleware, and
answers a refused request with a pre-rendered 429 ``RATELIMIT`` (the structured error body),
before any routing or request parsing beyond uvicorn's.

Probe and scrape paths (``/healthz``, ``/readyz``, the metrics endpoint) are exempt: an
overloaded server must still say it is alive and be measured.

Refusals here never reach the middleware chain, so the ``metrics()`` middleware does not see
them; :attr:`Admission.refused` counts them, and so does the metrics observer
(``pykratos.server.refused_requests``, :mod:`framework.metrics.names`) when one is installed.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from framework.errors import TooManyRequests
from framework.middleware.ratelimit.middleware import RATELIMIT, Limiter
from framework.observer import current_observer

__all__ = ["Admission"]


class Admission:
    """ASGI middleware admitting HTTP requests through ``limiter`` before the application.

    Args:
        app: the ASGI application (the server's FastAPI app).
        limiter: asked once per request (``allow()``); a falsy answer refuses the request
            with 429 ``RATELIMIT``; a callable answer is called when the admitted request's
            response is finished (:class:`~framework.middleware.ratelimit.MaxInFlight`,
            :class:`~framework.middleware.ratelimit.BBR`,
            :class:`~framework.middleware.ratelimit.TokenBucket`).
        exempt: request paths never refused (health probes, metrics scrapes); the set stays
            open to additions (:attr:`exempt`).

    WebSocket handshakes and lifespan events pass through untouched.
    """

    def __init__(self, app: ASGIApp, limiter: Limiter, exempt: Iterable[str] = ()) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt: set[str] = set(exempt)
        #: Requests refused so far.
        self.refused = 0
        error = TooManyRequests(RATELIMIT, "the server is at its admission limit; retry later")
        self._body = orjson.dumps(error.to_dict())
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        admitted = self.limiter.allow()
        if not admitted:
            self.refused += 1
            observer = current_observer()
            if observer is not None:
                observer.request_refused("http", RATELIMIT)
            await send({"type": "http.response.start", "status": 429, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        if admitted is True:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admitted()
