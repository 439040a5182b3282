"""HTTP server: FastAPI on uvicorn, inside the App's event loop.

Request bodies over ``max_body_size`` are refused with 413 ``PAYLOAD_TOO_LARGE`` while they
stream in (:mod:`framework.transport.http.limits`); routes whose dependency-injector markers
were never wired stop :meth:`HttpServer.start` (:mod:`framework.transport.http.wiring`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import weakref
from collections.abc import Generator, Sequence
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from framework.app import app_info
from framework.errors import Error
from framework.middleware.core import Middleware, chain, declared_errors
from framework.middleware.ratelimit.middleware import RATELIMIT, Limiter
from framework.transport.address import host_port
from framework.transport.http.admission import Admission
from framework.transport.http.docs import install_docs
from framework.transport.http.errors import JsonResponse, error_response, to_error
from framework.transport.http.limits import DEFAULT_MAX_BODY_SIZE, BodyLimit
from framework.transport.http.openapi import document_errors
from framework.transport.http.protocol import ReadLimits, guarded_protocol
from framework.transport.http.route import PIPELINE_STATE, OperationRoute, Pipeline
from framework.transport.http.wiring import check_routes_wired
from framework.transport.tls import ServerTls, TlsOptions

__all__ = ["HttpServer"]

_log = logging.getLogger("pykratos.http")

# FastAPI >= 0.13x has built-in OpenTelemetry that starts its own SERVER span, in a trace of
# its own, whenever a global tracer provider exists: next to the tracing middleware's span,
# every request would be two spans in two traces. Likewise, with a global meter provider
# (``setup_metrics()``'s default) it records ``http.server.request.duration`` and
# ``http.server.active_requests`` itself: a second series of each next to the ``metrics()``
# middleware's, at the SDK's recording cost (13-26 us per ``Histogram.record()`` measured
# here, see framework.metrics.instruments). Older versions have no such switch.
_NATIVE_TELEMETRY = "telemetry" in inspect.signature(FastAPI.__init__).parameters


def _new_fastapi(name: str) -> FastAPI:
    """The FastAPI app a server builds for itself, without FastAPI's own request tracing and
    metrics (the framework's ``tracing()`` and ``metrics()`` middleware make them), and
    without FastAPI's documentation pages, which load their assets from CDNs
    (:mod:`framework.transport.http.docs` serves them from this process instead)."""
    if _NATIVE_TELEMETRY:
        return FastAPI(  # type: ignore[call-arg,unused-ignore]
            title=name,
            docs_url=None,
            redoc_url=None,
            telemetry={"tracing": False, "metrics": False},
        )
    return FastAPI(title=name, docs_url=None, redoc_url=None)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (the App owns SIGTERM/SIGINT), and with an
    event set once the socket is serving."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class HttpServer:
    """A FastAPI application served by uvicorn, as a :class:`framework.Server`.

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`endpoint`).
        middlewares: the framework middleware chain run around every route
            (first = outermost).
        name: label for logs.
        health_path, ready_path: liveness (always 200 while the process serves) and
            readiness (200 only between App start and App stop, 503 otherwise).
        app: an existing FastAPI app to serve, used as it is (build it with
            ``FastAPI(telemetry={"tracing": False})`` on FastAPI versions
            with built-in OpenTelemetry, or each traced request gets a second server span and
            a second duration series). By default a new
            one is created, titled and versioned in its OpenAPI document after the App it runs
            in (:func:`framework.app_info`; ``name`` outside an App), with FastAPI's own
            request tracing off.
        max_body_size: largest request body in bytes (default 1 MiB); a larger one is answered
            413 ``PAYLOAD_TOO_LARGE`` before it is read whole (``Content-Length`` checked up
            front, chunked bodies counted as they arrive). ``None`` removes the limit. The
            limit is installed as an ASGI middleware of ``app``.
        asyncapi_path: where the App's AsyncAPI document is served (``/asyncapi.json``, beside
            FastAPI's ``/openapi.json``), with an offline HTML view at the same path without
            ``.json``; ``None`` serves neither. The document describes the App this server runs
            in (:meth:`bind_app`; :func:`framework.asyncapi.build_asyncapi`).
        docs_path, redoc_path: where the Swagger UI and ReDoc pages of the OpenAPI document are
            served, with their JavaScript and CSS served by this server too (no CDN: they work
            offline and tell no third party who reads the API;
            :mod:`framework.transport.http.docs`); ``None`` serves neither page. Only on the
            FastAPI app the server builds: an ``app`` passed in keeps its own pages.
        tls: serve HTTPS (optionally mutual TLS) with this certificate; files are reloaded
            when they change (:mod:`framework.transport.tls`).
        admission: a limiter asked for every HTTP request before FastAPI runs (e.g.
            :class:`~framework.middleware.ratelimit.MaxInFlight`); a refused request is
            answered 429 ``RATELIMIT`` at a fraction of a request's cost. Health routes and
            the metrics endpoint are exempt. See :mod:`framework.transport.http.admission`
            (:attr:`admission` holds the installed middleware). ``None``: no admission limit.
        header_timeout: seconds a client has to send a request's line and headers, from the
            accept and from the first byte of each next request on a kept-alive connection;
            then 408 ``REQUEST_TIMEOUT`` and the connection is closed (slowloris). ``None``:
            no limit.
        body_timeout: seconds at most between two reads of a request body the application
            is waiting for; then 408 (if no response started) and the connection is closed.
            ``None``: no limit.
        keep_alive_timeout: seconds an idle kept-alive connection stays open between a
            response and the next request's first byte (uvicorn's ``timeout_keep_alive``).
        max_header_size: largest request line and headers in bytes (default 32 KiB); a
            larger head is answered 431 ``REQUEST_HEADER_FIELDS_TOO_LARGE``.
        uvicorn_options: extra ``uvicorn.Config`` keyword arguments (e.g. ``http="h11"``;
            only uvicorn's ``"h11"`` and ``"httptools"`` protocols, which ``"auto"`` picks
            from, take the timeouts above and the graceful drain:
            :mod:`framework.transport.http.protocol`).

    Routers from the service layer are added with :meth:`include_router`; they must be built
    with :class:`framework.transport.http.Router` so the middleware pipeline runs.
    :meth:`start` refuses routes with unwired dependency-injector markers
    (:class:`framework.di.WiringError` naming the route).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        middlewares: Sequence[Middleware] = (),
        name: str = "http",
        health_path: str = "/healthz",
        ready_path: str = "/readyz",
        app: FastAPI | None = None,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        admission: Limiter | None = None,
        asyncapi_path: str | None = "/asyncapi.json",
        docs_path: str | None = "/docs",
        redoc_path: str | None = "/redoc",
        tls: ServerTls | TlsOptions | None = None,
        header_timeout: float | None = 10.0,
        body_timeout: float | None = 30.0,
        keep_alive_timeout: float = 5.0,
        max_header_size: int = 32 * 1024,
        **uvicorn_options: Any,
    ) -> None:
        self.host = host
        self.tls = ServerTls(tls) if isinstance(tls, TlsOptions) else tls
        self.port = port
        self.name = name
        self._owns_app = app is None
        self.app = app or _new_fastapi(name)
        self.app.router.route_class = OperationRoute
        if max_body_size is not None and max_body_size < 0:
            raise ValueError(f"{name}: max_body_size must be >= 0 bytes, got {max_body_size}")
        self.max_body_size = max_body_size
        if max_body_size is not None:
            self.app.add_middleware(BodyLimit, max_body_size=max_body_size)
        self._middlewares = tuple(middlewares)
        self._pipeline = Pipeline(chain(*middlewares))
        setattr(self.app.state, PIPELINE_STATE, self._pipeline)
        self._read_limits = ReadLimits(header_timeout, body_timeout, max_header_size, name)
        if keep_alive_timeout <= 0:
            raise ValueError(f"{name}: keep_alive_timeout must be > 0 seconds, "
                             f"got {keep_alive_timeout}")
        uvicorn_options.setdefault("timeout_keep_alive", keep_alive_timeout)
        uvicorn_options.setdefault("h11_max_incomplete_event_size", max_header_size)
        # Built now so that an unsupported ``http=`` fails at construction, not at start.
        uvicorn_options["http"] = guarded_protocol(uvicorn_options.get("http", "auto"),
                                                   self._read_limits)
        self._uvicorn_options = uvicorn_options
        self._serving = False
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._app_ref: weakref.ref[Any] | None = None
        self._asyncapi: dict[str, Any] | None = None
        self._install_error_handlers()
        self._install_openapi()
        self._install_health(health_path, ready_path)
        # Wraps the app as uvicorn sees it: a refusal skips Starlette and FastAPI altogether.
        self.admission = (
            Admission(self.app, admission, exempt=(health_path, ready_path))
            if admission is not None else None
        )
        if asyncapi_path is not None:
            self._install_asyncapi(asyncapi_path)
        if self._owns_app:
            install_docs(self.app, docs_path, redoc_path)

    # -- registration ----------------------------------------------------------------------

    def include_router(self, router: APIRouter, **kwargs: Any) -> None:
        """Mount a service-layer router; refuses routes that would bypass the middleware."""
        for route in router.routes:
            if isinstance(route, APIRoute) and not isinstance(route, OperationRoute):
                raise TypeError(
                    f"route {sorted(route.methods or ())} {route.path} was created by a plain "
                    "fastapi.APIRouter, so the middleware pipeline would not run on it; build "
                    "the router with framework.transport.http.Router instead"
                )
        if kwargs:
            self.app.include_router(router, **kwargs)
            return
        # The routes already carry the router's prefix and dependencies; adding them directly
        # skips FastAPI's included-router indirection, which costs ~30 us per request.
        self.app.router.routes.extend(router.routes)

    # -- Server protocol -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://host:port`` (``https://`` with TLS); the real port once started."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host_port(self.host, self.port)}"

    def set_serving(self, serving: bool) -> None:
        """Flip readiness: ``/readyz`` answers 200 only while serving."""
        self._serving = serving

    async def start(self) -> None:
        """Check the routes' DI wiring, bind the socket, return once uvicorn accepts connections.

        Raises:
            framework.di.WiringError: a route (or a dependency it uses) takes a
                dependency-injector marker that no wiring resolves.
            OSError: the address cannot be bound.
        """
        self.prepare()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"{self.name}: cannot bind {self.host}:{self.port}: "
                          f"{exc.strerror}") from exc
        sock.set_inheritable(True)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._pipeline.endpoint = self.endpoint
        config = uvicorn.Config(
            self.admission or self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            **self._tls_options(),
            **self._uvicorn_options,
        )
        if self.tls is not None:
            # uvicorn builds a context of its own from the files; serve ours, which reloads.
            config.load()
            config.ssl = self.tls.ssl_context()
            self.tls.start_watching()
        self._server = _EmbeddedUvicorn(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=self.name)
        ready = asyncio.create_task(self._server.ready.wait())
        done, _ = await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            self._task.result()  # re-raise why uvicorn stopped
            raise RuntimeError(f"{self.name}: uvicorn exited before serving")
        _log.info("%s listening on %s", self.name, self.endpoint)

    def prepare(self) -> None:
        """Everything :meth:`start` does before binding: check the routes' DI wiring and name
        the OpenAPI document after the App. An in-process test client
        (:class:`framework.testing.TestApp`) calls it instead of :meth:`start`.

        Raises:
            framework.di.WiringError: as :meth:`start`.
        """
        check_routes_wired(self.app.routes)
        self._name_after_app()
        self._pipeline.endpoint = self.endpoint  # start() sets it again once the port is bound

    def _tls_options(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        opts = self.tls.options
        # Set so that uvicorn knows it serves https (scope["scheme"]).
        return {
            "ssl_certfile": opts.cert_file,
            "ssl_keyfile": opts.key_file,
            "ssl_keyfile_password": opts.key_password,
        }

    async def stop_intake(self) -> None:
        """Stop accepting now: close the listener, ask every connection to close once its
        current request is answered, and start uvicorn's shutdown. Requests in flight go on;
        :meth:`stop` waits for them. Idempotent."""
        self._serving = False
        server = self._server
        if server is None or server.should_exit:
            return
        # uvicorn would do the same on its next tick (every 0.1 s): doing it here makes the
        # intake stop when the App says so, not up to a tick later.
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        server.should_exit = True

    def _name_after_app(self) -> None:
        # The App's identity is known only once it starts us (App.start sets app_info()).
        info = app_info()
        if not self._owns_app or info is None:
            return
        self.app.title = info.name
        if info.version:
            self.app.version = info.version
        self.app.openapi_schema = None  # rebuilt with the new title on the next request

    async def stop(self, timeout: float) -> None:
        """Stop accepting, let in-flight requests finish within ``timeout``, then close."""
        self._serving = False
        server, task = self._server, self._task
        if server is not None and task is not None and not task.done():
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                _log.warning("%s: requests still running after %.1fs, closing them",
                             self.name, timeout)
                server.force_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 1.0)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.tls is not None and self._server is not None:
            await self.tls.stop_watching()
        self._server = self._task = None

    # -- built-in routes and error rendering ----------------------------------------------

    def _install_health(self, health_path: str, ready_path: str) -> None:
        async def healthz() -> dict[str, str]:
            return {"status": "SERVING"}

        async def readyz() -> Response:
            if self._serving:
                return JsonResponse({"status": "SERVING"})
            return JsonResponse({"status": "NOT_SERVING"}, status_code=503)

        # Health routes stay out of the middleware chain and the OpenAPI schema.
        self.app.router.add_api_route(health_path, healthz, include_in_schema=False,
                                      route_class_override=APIRoute)
        self.app.router.add_api_route(ready_path, readyz, include_in_schema=False,
                                      route_class_override=APIRoute)

    def bind_app(self, app: Any) -> None:
        """Called by :class:`framework.App` before it starts its servers: the App whose
        AsyncAPI document this server serves."""
        self._app_ref = weakref.ref(app)
        self._asyncapi = None

    def asyncapi(self) -> dict[str, Any] | None:
        """The AsyncAPI document of the bound App (built once), ``None`` if no App is bound."""
        app = self._app_ref() if self._app_ref is not None else None
        if app is None:
            return None
        if self._asyncapi is None:
            from framework.asyncapi import build_asyncapi

            self._asyncapi = build_asyncapi(app)
        return self._asyncapi

    def _install_asyncapi(self, path: str) -> None:
        missing = Error(404, "ASYNCAPI_NOT_AVAILABLE", "this server runs in no App")

        async def asyncapi_json() -> Response:
            found = self.asyncapi()
            return error_response(missing) if found is None else JsonResponse(found)

        async def asyncapi_page() -> Response:
            from framework.asyncapi import asyncapi_html

            found = self.asyncapi()
            return error_response(missing) if found is None else HTMLResponse(
                asyncapi_html(found))

        # Like the health routes: outside the middleware chain and the OpenAPI schema.
        self.app.router.add_api_route(path, asyncapi_json, include_in_schema=False,
                                      route_class_override=APIRoute)
        self.app.router.add_api_route(path.removesuffix(".json"), asyncapi_page,
                                      include_in_schema=False, route_class_override=APIRoute)

    def _declared_errors(self, kind: str, operation: str) -> dict[int, str]:
        """The errors an operation can answer beyond validation and the body limit: those its
        middleware declares, and the admission limit's 429 when one is set."""
        errors = dict(declared_errors(self._middlewares, kind, operation))
        if self.admission is not None:
            errors.setdefault(429, f"{RATELIMIT}: the server is at its admission limit")
        return errors

    def _install_openapi(self) -> None:
        # FastAPI's generator documents 422 HTTPValidationError; what this server answers is
        # the framework's error body, with the statuses its limits and middleware produce.
        app = self.app
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                document = generate()
                app.openapi_schema = document_errors(
                    document,
                    app.routes,
                    max_body_size=self.max_body_size,
                    declared=self._declared_errors,
                )
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

    def _install_error_handlers(self) -> None:
        # Errors raised outside a route (404 no such path, 405) get the structured body too.
        async def render(_: Request, exc: Exception) -> Response:
            return error_response(to_error(exc))

        self.app.add_exception_handler(StarletteHTTPException, render)
        self.app.add_exception_handler(RequestValidationError, render)
