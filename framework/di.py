"""Checks that a handler's dependency-injector markers were really wired.

Handlers of every transport declare dependencies the dependency-injector way::

    @router.subscriber("payment-success")
    @inject
    async def on_payment(event: PaymentSucceeded, orders: OrderUseCase = Provide[...]): ...

If the container was never wired for the handler's module (or ``@inject`` is missing, or sits
above the registering decorator), calling the handler would hand it the bare ``Provide``
object. Every server checks its handlers at start, so that mistake stops the service with a
message naming the handler and the parameter, never at the first request:

- broker subscribers and WebSocket handlers/callbacks: :func:`check_wired` on each function;
- HTTP routes: :func:`check_wired` with :func:`find_markers` on each endpoint and on each
  FastAPI dependency it uses (``Provide[...]`` defaults, ``Depends(Provide[...])`` and
  ``Annotated`` markers);
- gRPC servicers: :func:`check_wired` on each registered method.

Handlers that are bound methods are also checked with :func:`check_attributes`: an object built
by calling its class directly, while its constructor's ``Provide[...]`` defaults were never
wired, holds the bare markers as attributes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any

__all__ = [
    "WiringError",
    "check_attributes",
    "check_wired",
    "find_markers",
    "is_marker",
    "marker_parameters",
    "qualified_name",
    "wired_injections",
]


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


def _marker_in(value: Any) -> Any:
    """``value`` if it is a marker, the marker a FastAPI ``Depends(...)`` wraps, else None."""
    if is_marker(value):
        return value
    dependency = getattr(value, "dependency", None)  # fastapi.params.Depends, by duck typing
    return dependency if is_marker(dependency) else None


def find_markers(fn: Callable[..., Any]) -> dict[str, Any]:
    """Parameters of ``fn`` that dependency-injector fills: parameter -> marker.

    Finds a marker as the default (``= Provide[...]``), inside a FastAPI ``Depends(...)``
    default (``= Depends(Provide[...])``) or in ``Annotated`` metadata
    (``Annotated[Service, Provide[...]]``).
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    try:
        hints = typing.get_type_hints(inspect.unwrap(fn), include_extras=True)
    except Exception:  # unresolvable forward reference: only defaults can be read
        hints = {}
    found: dict[str, Any] = {}
    for name, param in params.items():
        candidates = [param.default]
        annotation = hints.get(name, param.annotation)
        if typing.get_origin(annotation) is Annotated:
            candidates.extend(typing.get_args(annotation)[1:])
        for candidate in candidates:
            marker = _marker_in(candidate)
            if marker is not None:
                found[name] = marker
                break
    return found


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function or bound method, for error messages."""
    target = inspect.unwrap(getattr(fn, "__func__", fn))
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(fn))}"


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
    # A bound method is a new object on every attribute access; the registry knows its function.
    patched = get_callable(getattr(fn, "__func__", fn))
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
            f"{what}: parameter {name!r} takes the dependency-injector marker {marker!r} "
            "but the function is not @inject-decorated: put @inject directly under the "
            "registering decorator (dependency-injector also skips markers in string "
            "annotations, e.g. Annotated[..., Provide[...]] under "
            "`from __future__ import annotations`)"
        )
    for name, marker in found.items():
        if name not in injections:
            module = getattr(inspect.unwrap(getattr(fn, "__func__", fn)), "__module__", "?")
            raise WiringError(
                f"{what}: parameter {name!r} ({marker!r}) was never wired: call "
                f"container.wire(modules=[{module!r}]) before starting the server, and check "
                "that the container provides it"
            )


def check_attributes(obj: object, what: str) -> None:
    """Raise :class:`WiringError` naming ``what`` if an attribute of ``obj`` is a bare marker.

    That is what an object holds when its class was called directly and its constructor's
    ``Provide[...]`` defaults, never wired, became the values.
    """
    for name, value in getattr(obj, "__dict__", {}).items():
        if is_marker(value):
            cls = type(obj)
            raise WiringError(
                f"{what}: attribute {name!r} of the {cls.__qualname__} object is the bare "
                f"dependency-injector marker {value!r}: build it from the container, or call "
                f"container.wire(modules=[{cls.__module__!r}]) before constructing it"
            )
