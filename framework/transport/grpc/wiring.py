"""gRPC servicers never get a bare dependency-injector marker.

:func:`check_services_wired` runs at server start over every registered method: a method
taking ``Provide[...]`` parameters that no wiring resolves, or a servicer object holding a
bare marker as an attribute (built by calling its class directly, its constructor's
``Provide[...]`` defaults never wired), raises :class:`~framework.di.WiringError` naming the
method. Methods of hand-written generic handlers are only known per call and are not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc

from framework.di import check_attributes, check_wired, find_markers, qualified_name

__all__ = ["check_services_wired", "method_behavior"]


def method_behavior(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    """The servicer callable a method handler runs, whatever the RPC kind."""
    if handler.response_streaming:
        behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream
    else:
        behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary
    return behavior  # type: ignore[no-any-return]  # grpc is untyped


def check_services_wired(services: Mapping[str, Mapping[str, grpc.RpcMethodHandler]]) -> None:
    """Raise :class:`~framework.di.WiringError` for the first method that would get a marker."""
    checked: set[int] = set()
    for service, handlers in services.items():
        for method, handler in handlers.items():
            behavior = method_behavior(handler)
            what = f"gRPC method /{service}/{method} ({qualified_name(behavior)})"
            check_wired(behavior, what, find_markers(behavior).items())
            servicer = getattr(behavior, "__self__", None)
            if servicer is not None and id(servicer) not in checked:
                checked.add(id(servicer))
                check_attributes(servicer, what)
