"""GrpcServer: a grpc.aio server that runs the framework middleware chain.

Example::

    server = GrpcServer(port=9000, middlewares=[recovery(), access_log(), auth_only_orders])
    server.register(order_pb2_grpc.add_OrderServiceServicer_to_server, OrderService(uc))
    app = App("order", servers=[server])

Every registered method runs inside the middleware chain with a
``Transport(kind="grpc", operation="/pkg.Service/Method")`` (see
:mod:`framework.transport.grpc.interceptor`). Errors are sent as the mapped status code with a
``google.rpc.Status`` / ``ErrorInfo`` detail (:mod:`framework.transport.grpc.status`). The
standard health service follows the App's readiness, and server reflection lists the
registered services. Health and reflection calls bypass the middleware chain: a probe or a
``grpcurl list`` should neither need credentials nor fill the access log.

Bad input is a client error: request bytes that do not decode are answered INVALID_ARGUMENT
``MALFORMED_REQUEST`` (:mod:`framework.transport.grpc.decode`), and a message larger than
``max_receive_message_length`` is refused by grpc itself with RESOURCE_EXHAUSTED before it is
buffered (:func:`framework.errors.from_exception` reads it back as 413 ``PAYLOAD_TOO_LARGE``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection

from framework.app import app_info
from framework.middleware.core import Middleware, chain
from framework.middleware.logging import access_log
from framework.middleware.ratelimit.middleware import Limiter
from framework.middleware.recovery import recovery
from framework.transport.address import host_port
from framework.transport.grpc.health import HEALTH_SERVICE_NAME, NOT_SERVING, HealthServicer
from framework.transport.grpc.inflight import InFlight
from framework.transport.grpc.interceptor import (
    CallSettings,
    WrappingGenericHandler,
    wrap_method_handler,
)
from framework.transport.grpc.registry import AddServicerFn, ServiceRegistry
from framework.transport.grpc.wiring import check_services_wired
from framework.transport.tls import ServerTls, TlsOptions

# Grace of the shutdown that stop_intake() begins: "until stop() says otherwise".
_INTAKE_GRACE = 24 * 3600.0

__all__ = ["DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH", "GrpcServer"]

_log = logging.getLogger("pykratos.grpc")

#: Largest request message accepted by default, in bytes: 1 MiB, the same bound as the HTTP
#: body and the WebSocket message defaults.
DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 1024 * 1024

_MAX_RECEIVE_OPTION = "grpc.max_receive_message_length"


class GrpcServer:
    """A gRPC server (grpc.aio) implementing :class:`~framework.transport.Server` and
    :class:`~framework.transport.ReadinessAware`.

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one (see :attr:`endpoint` after start).
        middlewares: the chain run around every method, outermost first; ``None`` (default)
            means ``[recovery(), access_log()]``, ``()`` means none.
        reflection: serve ``grpc.reflection.v1alpha.ServerReflection`` for the registered
            services and health.
        name: name used in logs and App error messages.
        options: grpc channel arguments, e.g. ``[("grpc.max_send_message_length", n)]``;
            ``grpc.so_reuseport`` defaults to 0 so that a port in use fails :meth:`start`.
        max_receive_message_length: largest request message in bytes (default 1 MiB; -1 for
            no limit); grpc refuses a larger one with RESOURCE_EXHAUSTED before reading it.
            Also settable as the ``grpc.max_receive_message_length`` entry of ``options``, not
            both.
        maximum_concurrent_rpcs: answer RESOURCE_EXHAUSTED beyond this many in-flight calls
            (grpc's core refuses them before any Python runs, with no ``ErrorInfo``).
        admission: a limiter asked for every call before the middleware chain (e.g.
            :class:`~framework.middleware.ratelimit.MaxInFlight`); a refused call gets
            RESOURCE_EXHAUSTED with reason ``RATELIMIT`` without a transport context or any
            middleware. ``None``: no admission limit.
        interceptors: raw ``grpc.aio.ServerInterceptor`` objects, run before the middleware.
        error_domain: ``ErrorInfo.domain`` of the errors sent; ``None`` uses the running App's
            name (empty outside an App).
        tls: serve over TLS (``client_auth="require"``: mutual TLS) with this certificate;
            changed files are used from the next handshake (:mod:`framework.transport.tls`).

    There is no thread-pool option: every method runs as a coroutine on the event loop.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        middlewares: Sequence[Middleware] | None = None,
        reflection: bool = True,
        name: str = "grpc",
        options: Sequence[tuple[str, Any]] = (),
        maximum_concurrent_rpcs: int | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        error_domain: str | None = None,
        max_receive_message_length: int | None = None,
        tls: ServerTls | TlsOptions | None = None,
        admission: Limiter | None = None,
    ) -> None:
        self.host = host
        self.admission = admission
        self.tls = ServerTls(tls) if isinstance(tls, TlsOptions) else tls
        self.port = port
        self.name = name
        self.reflection = reflection
        self.middlewares: tuple[Middleware, ...] = (
            (recovery(), access_log()) if middlewares is None else tuple(middlewares)
        )
        # grpc turns SO_REUSEPORT on by default, so a second process on the same port binds
        # "successfully" and silently shares the traffic; a taken port must fail the start.
        self.options: tuple[tuple[str, Any], ...] = tuple(options)
        if not any(key == "grpc.so_reuseport" for key, _ in self.options):
            self.options += (("grpc.so_reuseport", 0),)
        self.max_receive_message_length = self._receive_limit(max_receive_message_length)
        self.maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self.interceptors = tuple(interceptors)
        self.error_domain = error_domain
        self._registry = ServiceRegistry()
        self._health = HealthServicer()
        self._health.set("", NOT_SERVING)
        self._server: grpc.aio.Server | None = None
        self._bound_port: int | None = None
        self._inflight = InFlight()
        self._shutdown: asyncio.Task[None] | None = None  # begun by stop_intake()

    def _receive_limit(self, explicit: int | None) -> int:
        """The request size limit, from the argument or ``options``; written into ``options``."""
        given = [value for key, value in self.options if key == _MAX_RECEIVE_OPTION]
        if explicit is not None and given:
            raise ValueError(
                f"{self.name}: max_receive_message_length is given both as an argument and in "
                f"options ({_MAX_RECEIVE_OPTION}); keep one"
            )
        limit = explicit if explicit is not None else (
            given[-1] if given else DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH
        )
        if not isinstance(limit, int) or isinstance(limit, bool) or (limit <= 0 and limit != -1):
            raise ValueError(
                f"{self.name}: max_receive_message_length must be a positive number of bytes "
                f"(or -1, grpc's 'no limit'), got {limit!r}"
            )
        if not given:
            self.options += ((_MAX_RECEIVE_OPTION, limit),)
        return limit

    # -- registration ---------------------------------------------------------------------

    def register(self, add_to_server: AddServicerFn, servicer: Any) -> tuple[str, ...]:
        """Register a generated service; return the full service names it added.

        ``add_to_server`` is the generated ``add_<Service>Servicer_to_server`` function, e.g.
        ``server.register(order_pb2_grpc.add_OrderServiceServicer_to_server, svc)``. The
        service names are learned from it (for health and reflection); each starts
        NOT_SERVING until :meth:`set_serving`. Must be called before :meth:`start`.
        """
        if self._server is not None:
            raise RuntimeError(f"{self.name}: register() must be called before start()")
        names = self._registry.register(add_to_server, servicer)
        for service in names:
            self._health.set(service, NOT_SERVING)
        return names

    @property
    def services(self) -> tuple[str, ...]:
        """Full names of the registered services."""
        return self._registry.service_names

    @property
    def health(self) -> HealthServicer:
        """The health servicer (statuses can also be set per service by hand)."""
        return self._health

    # -- Server protocol ------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``grpc://host:port`` (``grpcs://`` with TLS); the real port once started."""
        port = self._bound_port if self._bound_port is not None else self.port
        scheme = "grpcs" if self.tls is not None else "grpc"
        return f"{scheme}://{host_port(self.host, port)}"

    async def start(self) -> None:
        """Bind, register every service, start serving; returns once calls are accepted.

        Raises:
            framework.di.WiringError: a servicer method takes a dependency-injector marker no
                wiring resolves, or a servicer holds a bare marker (checked before binding).
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError(f"{self.name}: already started")
        check_services_wired(self._registry.services)
        server = grpc.aio.server(
            interceptors=self.interceptors or None,
            options=self.options,
            maximum_concurrent_rpcs=self.maximum_concurrent_rpcs,
        )
        self._server = server
        address = host_port(self.host, self.port)
        try:
            if self.tls is not None:
                self._bound_port = server.add_secure_port(address, self.tls.grpc_credentials())
            else:
                self._bound_port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"{self.name}: cannot bind gRPC server to {address}: {exc}") from exc
        settings = CallSettings(
            middleware=chain(*self.middlewares) if self.middlewares else None,
            endpoint=self.endpoint,
            domain=self._domain(),
            inflight=self._inflight,
            admission=self.admission,
        )
        for service, handlers in self._registry.services.items():
            wrapped = {
                method: wrap_method_handler(f"/{service}/{method}", handler, settings)
                for method, handler in handlers.items()
            }
            # Registered methods are matched by grpc core without a Python lookup; the generic
            # handler is the fallback grpc itself expects alongside them.
            server.add_registered_method_handlers(service, wrapped)
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, wrapped),)
            )
        for generic in self._registry.generic_handlers:
            server.add_generic_rpc_handlers((WrappingGenericHandler(generic, settings),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self.reflection:
            grpc_reflection.enable_server_reflection(
                (*self.services, HEALTH_SERVICE_NAME, grpc_reflection.SERVICE_NAME), server
            )
        await server.start()
        _log.info(
            "%s serving %s on %s",
            self.name,
            ", ".join(self.services) or "no services",
            self.endpoint,
            extra={"kind": "grpc", "endpoint": self.endpoint},
        )

    async def stop_intake(self) -> None:
        """Refuse new calls now (health NOT_SERVING, ``Watch`` streams end); running calls go
        on until :meth:`stop` gives them its timeout. Idempotent."""
        self._health.shutdown()
        server = self._server
        if server is None or self._shutdown is not None:
            return
        # grpc.aio's stop() refuses new calls at once and cancels running ones only when its
        # grace ends; a later call with a smaller grace stops sooner (documented), which is
        # what stop() does with the real timeout. The task's first step, before its first
        # suspension, is the one that refuses new calls: yielding once lets it run.
        self._shutdown = asyncio.create_task(server.stop(grace=_INTAKE_GRACE))
        await asyncio.sleep(0)

    async def stop(self, timeout: float) -> None:
        """Refuse new calls, let running methods finish within ``timeout``, then cancel them.

        Returns once no servicer method runs any more, including one whose client already
        has its answer (it returned or called ``context.abort()``) and that is still cleaning
        up. Health turns NOT_SERVING and health ``Watch`` streams end first, so a watching
        client does not hold the stop for the whole timeout. Safe before/after a failed start.
        """
        self._health.shutdown()
        server = self._server
        if server is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        # grpc waits for the calls whose status is not sent yet (and cancels them at the end).
        await server.stop(grace=max(timeout, 0.0))
        if self._shutdown is not None:
            # Ends with the shutdown just completed.
            await asyncio.gather(self._shutdown, return_exceptions=True)
            self._shutdown = None
        if await self._inflight.wait(deadline - loop.time()):
            return
        _log.warning(
            "%s: %d method(s) still running after the %.1fs stop timeout: cancelling them",
            self.name,
            self._inflight.cancel(),
            timeout,
        )
        # Cancelled methods only unwind their finally blocks now; do not wait on them forever.
        if not await self._inflight.wait(1.0):
            _log.error("%s: %d method(s) ignored cancellation", self.name, len(self._inflight))

    def set_serving(self, serving: bool) -> None:
        """Health of ``""`` and of every registered service: SERVING or NOT_SERVING."""
        self._health.set_all(("", *self.services), serving)

    def _domain(self) -> str:
        if self.error_domain is not None:
            return self.error_domain
        info = app_info()
        return info.name if info is not None else ""
