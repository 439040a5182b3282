"""Checks that a handler's dependency-injector markers were really wired.

A handler declares dependencies the usual dependency-injector way::

    @ws.on("order.get")
    @inject
    async def get_order(q: OrderQuery, orders: OrderUseCase = Provide[Container.orders]): ...

If the container was never wired for the handler's module (or ``@inject`` is missing or sits
above ``@ws.on``), calling the handler would hand it the bare ``Provide`` object. The server
calls :func:`check_wired` for every handler at start, so that mistake stops the service with
a message naming the handler instead of failing on the first message.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["WiringError", "check_wired", "marker_parameters"]


class WiringError(RuntimeError):
    """A handler takes ``Provide[...]`` parameters that no container wiring resolves."""


def _is_marker(value: Any) -> bool:
    return getattr(value, "__IS_MARKER__", False) is True


def marker_parameters(fn: Callable[..., Any]) -> dict[str, Any]:
    """Parameters of ``fn`` whose default is a ``Provide``/``Provider``/``Closing`` marker."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in params.items() if _is_marker(p.default)}


def _patched_injections(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The injections dependency-injector bound to ``fn``; ``None`` if ``fn`` is not patched.

    dependency-injector keeps them in a module-level registry of ``@inject``-patched callables;
    it has no public accessor, so this reads the registry and tolerates its absence.
    """
    try:
        from dependency_injector import wiring
    except ImportError:  # pragma: no cover - dependency-injector is a core dependency
        return None
    registry = getattr(wiring, "_patched_registry", None)
    if registry is None:  # pragma: no cover - a future dependency-injector layout
        return None
    patched = registry.get_callable(fn)
    return None if patched is None else dict(patched.injections)


def check_wired(fn: Callable[..., Any], what: str) -> None:
    """Raise :class:`WiringError` naming ``what`` if ``fn`` has unresolved markers."""
    markers = marker_parameters(fn)
    if not markers:
        return
    injections = _patched_injections(fn)
    names = ", ".join(f"{name}={marker!r}" for name, marker in markers.items())
    if injections is None:
        raise WiringError(
            f"{what} takes {names} from a container but is not an @inject-decorated function:"
            " put @inject directly under the registering decorator"
        )
    missing = [name for name in markers if name not in injections]
    if missing:
        module = getattr(inspect.unwrap(fn), "__module__", "?")
        raise WiringError(
            f"{what}: parameter(s) {', '.join(missing)} are not wired to a container; "
            f"call container.wire(modules=[{module!r}]) before starting the server"
        )
