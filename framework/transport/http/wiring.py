"""HTTP routes never hand an endpoint a bare dependency-injector marker.

FastAPI reads a parameter whose default is ``Provide[...]`` as a query parameter with that
default, so an endpoint whose module was never wired would run and answer with the marker's
repr. :func:`check_routes_wired` runs at server start, over every route's endpoint and the
FastAPI dependencies it uses, and raises :class:`~framework.di.WiringError` naming the route.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute

from framework.di import check_attributes, check_wired, find_markers, is_marker, qualified_name

__all__ = ["check_routes_wired"]


def _dependency_calls(dependant: Any) -> Iterable[Any]:
    """Every callable FastAPI resolves for a route, sub-dependencies included."""
    for sub in getattr(dependant, "dependencies", ()):
        call = getattr(sub, "call", None)
        # Depends(Provide[...]) makes the marker itself the "dependency": the endpoint's own
        # check covers it.
        if call is not None and not is_marker(call):
            yield call
        yield from _dependency_calls(sub)


def check_routes_wired(routes: Iterable[Any]) -> None:
    """Raise :class:`~framework.di.WiringError` for the first route that would get a marker."""
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        methods = ",".join(sorted(route.methods or ()))
        what = f"HTTP route {methods} {route.path} ({qualified_name(route.endpoint)})"
        for call in (route.endpoint, *_dependency_calls(route.dependant)):
            # A class used as a dependency is injected through its constructor.
            fn = getattr(call, "__init__", call) if isinstance(call, type) else call
            label = what if call is route.endpoint else f"{what}, dependency {qualified_name(fn)}"
            check_wired(fn, label, find_markers(fn).items())
            owner = getattr(fn, "__self__", None)
            if owner is not None:
                check_attributes(owner, label)
