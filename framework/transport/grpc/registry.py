"""Learn what a generated ``add_XServicer_to_server`` function registers.

Generated code (grpcio-tools >= 1.62) calls both ``server.add_generic_rpc_handlers`` and
``server.add_registered_method_handlers(service_name, handlers)``; older code only the first.
:class:`ServiceRegistry` stands in for the server during that call and keeps:

- per service name, the dict of method handlers (from either call), so the server can wrap
  each method once and report the service to health and reflection;
- any other generic handler, wrapped lazily per method at call time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

__all__ = ["AddServicerFn", "ServiceRegistry"]

AddServicerFn = Callable[[Any, Any], Any]


def _dictionary_handlers(handler: Any) -> tuple[str, dict[str, grpc.RpcMethodHandler]] | None:
    """Service name and handlers of a ``grpc.method_handlers_generic_handler`` result.

    grpc keeps them in private attributes (``_name``, ``_method_handlers`` keyed by full
    method); if those ever change we fall back to wrapping the handler lazily.
    """
    name = getattr(handler, "_name", None)
    methods = getattr(handler, "_method_handlers", None)
    if not isinstance(name, str) or not isinstance(methods, Mapping):
        return None
    prefix = f"/{name}/"
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for full_method, method_handler in methods.items():
        if not isinstance(full_method, str) or not full_method.startswith(prefix):
            return None
        handlers[full_method[len(prefix) :]] = method_handler
    return name, handlers


class ServiceRegistry:
    """Services captured from generated registration functions, in registration order."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self.generic_handlers: list[grpc.GenericRpcHandler] = []

    @property
    def service_names(self) -> tuple[str, ...]:
        """Full names of every known service (``"echo.v1.Echo"``)."""
        return tuple(self.services)

    def register(self, add_to_server: AddServicerFn, servicer: Any) -> tuple[str, ...]:
        """Run ``add_to_server(servicer, capture)``; return the service names it registered."""
        capture = _Capture()
        add_to_server(servicer, capture)
        names: list[str] = []
        for name, handlers in capture.registered.items():
            self._add_service(name, handlers)
            names.append(name)
        for generic in capture.generic:
            known = _dictionary_handlers(generic)
            if known is not None:
                name, handlers = known
                if name not in capture.registered:
                    self._add_service(name, handlers)
                    names.append(name)
                continue
            service_name = getattr(generic, "service_name", None)
            if callable(service_name) and service_name() in capture.registered:
                continue
            self.generic_handlers.append(generic)
        if not names and not capture.generic:
            raise ValueError(
                f"{getattr(add_to_server, '__name__', add_to_server)!r} registered nothing: "
                "pass a generated add_<Service>Servicer_to_server function"
            )
        return tuple(names)

    def _add_service(self, name: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        if name in self.services:
            raise ValueError(f"gRPC service {name!r} is already registered")
        self.services[name] = dict(handlers)


class _Capture:
    """The part of ``grpc.aio.Server`` that generated registration code calls."""

    def __init__(self) -> None:
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self.registered[service_name] = dict(method_handlers)
