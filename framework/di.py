"""Checks that a handler's dependency-injector markers were really wired.

Handlers of every transport declare dependencies the dependency-injector way::

    @router.subscriber("payment-success")
    @inject
    async def on_payment(event: PaymentSucceeded, orders: OrderUseCase = Provide[...]): ...

If the container was never wired for the handler's module (or ``@inject`` is missing, or sits
above the registering decorator), calling the handler would hand it the bare ``Provide``
object. Servers call :func:`check_wired` for every handler at start, so that mistake stops the
service with a message naming the handler and the parameter, never at the first request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["WiringError", "check_wired", "is_marker", "marker_parameters", "wired_injections"]


class WiringError(RuntimeError):
    """A handler takes ``Provide[...]`` parameters that no container wiring resolves."""


def is_marker(value: Any) -> bool:
    """True for dependency-injector's ``Provide``/``Provider``/``Closing`` markers."""
    # They all carry this class flag; testing it avoids importing dependency_injector.wiring.
    return getattr(type(value), "__IS_MARKER__", False) is True


def marker_parameters(fn: Callable[..., Any]) -> dict[str, Any]:
    """Parameters of ``fn`` whose default is a dependency-injector marker."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in params.items() if is_marker(p.default)}


def wired_injections(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """Parameter -> provider bound by wiring, or ``None`` if ``fn`` is not ``@inject``-ed."""
    try:
        from dependency_injector import wiring
    except ImportError:  # pragma: no cover - dependency-injector is a core dependency
        return None
    # dependency-injector keeps the bindings of each @inject-ed function in a registry that
    # container.wire() fills; it has no public accessor, so read it defensively.
    registry = getattr(wiring, "_patched_registry", None)
    get_callable = getattr(registry, "get_callable", None)
    if get_callable is None:  # pragma: no cover - a future dependency-injector layout
        return {}
    patched = get_callable(fn)
    return None if patched is None else dict(patched.injections)


def check_wired(
    fn: Callable[..., Any], what: str, markers: Iterable[tuple[str, Any]] | None = None
) -> None:
    """Raise :class:`WiringError` naming ``what`` if ``fn`` would get a bare marker.

    ``markers`` (parameter, marker) pairs default to the parameters whose default is a marker;
    a caller that also reads ``Annotated[..., Provide[...]]`` passes its own.
    """
    found = dict(markers) if markers is not None else marker_parameters(fn)
    if not found:
        return
    injections = wired_injections(fn)
    if injections is None:
        name, marker = next(iter(found.items()))
        raise WiringError(
            f"{what}: parameter {name!r} defaults to the dependency-injector marker {marker!r} "
            "but the function is not @inject-decorated: put @inject directly under the "
            "registering decorator"
        )
    for name, marker in found.items():
        if name not in injections:
            module = getattr(inspect.unwrap(fn), "__module__", "?")
            raise WiringError(
                f"{what}: parameter {name!r} ({marker!r}) was never wired: call "
                f"container.wire(modules=[{module!r}]) before starting the server, and check "
                "that the container provides it"
            )
