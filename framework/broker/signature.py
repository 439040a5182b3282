"""What a subscriber handler expects, read once from its signature (never per message).

A handler's first parameter is the payload; its annotation drives decoding (``list[T]`` for a
batch handler). Another parameter annotated :class:`~framework.broker.message.Message`
(``list[Message]`` for a batch) receives the raw message(s). Every other parameter must have a
default, usually a dependency-injector ``Provide[...]`` marker filled by ``@inject`` once the
module is wired; :func:`check_wiring` refuses, at subscribe time, a handler that would be
handed a bare marker.
"""

from __future__ import annotations

import contextlib
import inspect
import types
import typing
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from framework.broker.message import Message
from framework.di import WiringError, check_wired, is_marker

__all__ = [
    "HandlerSignature",
    "UnresolvedAnnotationError",
    "WiringError",
    "check_wiring",
    "handler_name",
    "inspect_handler",
    "payload_type",
    "remember_signature",
    "signature_of",
]


class UnresolvedAnnotationError(TypeError):
    """A handler annotation names something that cannot be resolved (yet)."""


@dataclass(frozen=True, slots=True)
class HandlerSignature:
    """The parts of a handler signature the processor needs.

    Attributes:
        payload_name: name of the first parameter.
        payload_type: its annotation (``Annotated`` stripped), ``Any`` when unannotated.
        message_param: name of the parameter receiving the raw message(s), if any.
        message_is_list: whether that parameter is annotated ``list[Message]``.
        markers: parameter name -> dependency-injector marker, for injected parameters.
    """

    payload_name: str
    payload_type: Any
    message_param: str | None
    message_is_list: bool
    markers: tuple[tuple[str, Any], ...]


_signatures: weakref.WeakKeyDictionary[Callable[..., Any], HandlerSignature] = (
    weakref.WeakKeyDictionary()
)


def handler_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a handler, for error messages and default group names."""
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}" if module else qualname


def _marker_of(parameter: inspect.Parameter, annotation: Any) -> Any:
    if typing.get_origin(annotation) is Annotated:
        for extra in typing.get_args(annotation)[1:]:
            if is_marker(extra):
                return extra
    if is_marker(parameter.default):
        return parameter.default
    return None


def _strip_annotated(annotation: Any) -> Any:
    if typing.get_origin(annotation) is Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _message_kind(annotation: Any) -> tuple[bool, bool]:
    """(is a Message parameter, is a list of messages)."""
    if annotation is Message:
        return True, False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        # ``message: Message | None = None`` keeps the handler callable without a message.
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _message_kind(members[0]) if len(members) == 1 else (False, False)
    origin = typing.get_origin(annotation)
    if origin in (list, Sequence) and typing.get_args(annotation) == (Message,):
        return True, True
    return False, False


def inspect_handler(
    fn: Callable[..., Any], localns: dict[str, Any] | None = None
) -> HandlerSignature:
    """Analyse ``fn``; raise ``TypeError`` naming the handler when it cannot be a subscriber.

    ``localns`` resolves string annotations of handlers defined inside a function.
    """
    name = handler_name(fn)
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"subscriber handler {name} must be an `async def` function")
    try:
        signature = inspect.signature(fn)  # follows __wrapped__ through @inject
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of handler {name}: {exc}") from exc
    try:
        hints = typing.get_type_hints(fn, localns=localns, include_extras=True)
    except Exception as exc:  # NameError for a forward reference, or a broken annotation
        raise UnresolvedAnnotationError(
            f"cannot resolve the annotations of handler {name}: {exc}"
        ) from exc

    params = [
        p
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if not params or params[0].kind is inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"handler {name} must take the message payload as its first parameter")
    payload, rest = params[0], params[1:]

    message_param: str | None = None
    message_is_list = False
    markers: list[tuple[str, Any]] = []
    for param in rest:
        annotation = hints.get(param.name, Any)
        marker = _marker_of(param, annotation)
        is_message, is_list = _message_kind(_strip_annotated(annotation))
        if marker is not None:
            markers.append((param.name, marker))
        elif is_message:
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise TypeError(
                    f"handler {name}: parameter {param.name!r} cannot be positional-only"
                )
            message_param, message_is_list = param.name, is_list
        elif param.default is inspect.Parameter.empty:
            raise TypeError(
                f"handler {name}: parameter {param.name!r} has no default; a broker passes only "
                "the payload, a `Message` parameter and dependency-injector Provide[...] markers"
            )

    payload_type = _strip_annotated(hints.get(payload.name, Any))
    return HandlerSignature(
        payload.name, payload_type, message_param, message_is_list, tuple(markers)
    )


def payload_type(signature: HandlerSignature, *, batch: bool, name: str = "") -> Any:
    """The type each message body decodes into.

    For a batch handler that is the element type of its ``list[T]`` payload annotation (``Any``
    when unannotated); any other annotation raises ``TypeError``. The ``Message`` parameter, if
    any, must likewise be ``list[Message]`` for a batch handler and ``Message`` otherwise.
    """
    label = f"handler {name}" if name else "handler"
    if signature.message_param is not None and signature.message_is_list != batch:
        wanted = "list[Message]" if batch else "Message"
        raise TypeError(
            f"{label}: parameter {signature.message_param!r} must be annotated {wanted} "
            f"for a {'batch' if batch else 'single-message'} subscriber"
        )
    annotation = signature.payload_type
    if not batch:
        return annotation
    if annotation is Any or annotation is list:
        return Any
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, Sequence) and len(args) == 1:
        return _strip_annotated(args[0])
    raise TypeError(
        f"{label}: a batch subscriber takes list[T] as its first parameter, not {annotation!r}"
    )


def remember_signature(fn: Callable[..., Any], signature: HandlerSignature) -> None:
    """Cache a signature resolved at decoration time (when local names were still in scope)."""
    # A callable that cannot be weakly referenced is simply resolved again later.
    with contextlib.suppress(TypeError):
        _signatures[fn] = signature


def signature_of(fn: Callable[..., Any]) -> HandlerSignature:
    """The cached signature of ``fn``, else :func:`inspect_handler` now."""
    try:
        cached = _signatures.get(fn)
    except TypeError:
        cached = None
    return cached if cached is not None else inspect_handler(fn)


def check_wiring(fn: Callable[..., Any], signature: HandlerSignature, name: str = "") -> None:
    """Raise :class:`WiringError` if ``fn`` would receive a bare ``Provide`` marker."""
    check_wired(fn, f"handler {name or handler_name(fn)}", signature.markers)
