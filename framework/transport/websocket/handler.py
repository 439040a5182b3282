"""Turns a user's handler function into a middleware-ready endpoint.

A message handler's parameters are read once, at start:

- a parameter annotated :class:`~framework.transport.websocket.session.Session` (or named
  ``session`` without annotation) receives the sender's session;
- parameters whose default is a dependency-injector marker (``Provide[...]``) are left to
  ``@inject``;
- the first remaining parameter receives the payload, validated against its annotation: a
  pydantic model, any type pydantic can validate (``dict[str, int]``, ``list[Item]``), ``bytes``
  (a binary frame's raw payload), or no annotation / ``Any`` for the raw JSON value.

The middleware chain sees the validated payload as its request and the handler's return value
as its reply; the session travels in the transport context (``from_context().raw``).
"""

from __future__ import annotations

import contextlib
import inspect
import typing
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from framework.di import check_wired, marker_parameters
from framework.errors import BadRequest
from framework.middleware.core import Handler, Middleware
from framework.transport.context import current_transport
from framework.transport.websocket.envelope import BAD_PAYLOAD, REPLY_SUFFIX
from framework.transport.websocket.session import Session
from framework.validation import describe_errors

__all__ = [
    "BoundHandler",
    "HandlerSignatureError",
    "bind_callback",
    "describe",
    "message_types",
    "remember_namespace",
]

Callback = Callable[[Session], Awaitable[None]]


class HandlerSignatureError(TypeError):
    """A handler has parameters the server cannot supply."""


# Local namespaces of the scopes where handlers were declared: annotations naming classes
# local to a function (common in tests) only resolve with them, and binding happens later.
_namespaces: weakref.WeakKeyDictionary[Callable[..., Any], dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def remember_namespace(fn: Callable[..., Any], localns: dict[str, Any]) -> None:
    """Keep the declaring scope's locals to resolve ``fn``'s annotations at start."""
    # A callable that is not weak-referenceable keeps module-level resolution only.
    with contextlib.suppress(TypeError):
        _namespaces[fn] = localns


def describe(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a handler, for error messages and logs."""
    target = inspect.unwrap(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(fn))}"


def _namespace_of(fn: Callable[..., Any]) -> dict[str, Any] | None:
    try:
        return _namespaces.get(fn)
    except TypeError:
        return None


@dataclass(frozen=True, slots=True)
class _Params:
    payload: str | None
    payload_type: Any
    session: str | None
    positional_payload: bool
    session_keyword_only: bool


def _analyse(fn: Callable[..., Any], what: str, *, takes_payload: bool) -> _Params:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(inspect.unwrap(fn), localns=_namespace_of(fn))
    except Exception as exc:  # unresolvable forward reference: say which handler
        raise HandlerSignatureError(f"{what}: cannot resolve annotations: {exc}") from exc
    markers = marker_parameters(fn)
    payload: str | None = None
    payload_type: Any = Any
    session: str | None = None
    positional = False
    session_keyword_only = False
    for name, param in signature.parameters.items():
        if name in markers or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(name, inspect.Parameter.empty)
        if (isinstance(hint, type) and issubclass(hint, Session)) or (
            name == "session" and hint is inspect.Parameter.empty
        ):
            session = name
            session_keyword_only = param.kind is param.KEYWORD_ONLY
        elif not takes_payload and session is None:
            session = name  # a callback's one parameter is the session, whatever its name
            session_keyword_only = param.kind is param.KEYWORD_ONLY
        elif takes_payload and payload is None:
            payload = name
            payload_type = Any if hint is inspect.Parameter.empty else hint
            positional = param.kind is param.POSITIONAL_ONLY
        elif param.default is param.empty:
            raise HandlerSignatureError(
                f"{what}: cannot supply parameter {name!r} (expected the payload, a Session"
                " parameter, or dependency-injector Provide[...] defaults)"
            )
    return _Params(payload, payload_type, session, positional, session_keyword_only)


def message_types(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """``(payload type, reply type)`` of a message handler, for documentation (AsyncAPI):
    ``Any`` for an unannotated payload, ``None`` for a handler that takes no payload or whose
    reply is ``None`` (no reply frame is sent).

    Raises :class:`HandlerSignatureError` like the server would at start.
    """
    params = _analyse(fn, describe(fn), takes_payload=True)
    hints = typing.get_type_hints(inspect.unwrap(fn), localns=_namespace_of(fn))
    reply = hints.get("return", Any)
    return (params.payload_type if params.payload else None), (
        None if reply is type(None) else reply
    )


def _payload_decoder(payload_type: Any) -> Callable[[Any], Any] | None:
    """A validator for the payload annotation; ``None`` passes the value through."""
    if payload_type is Any or payload_type is object:
        return None
    if isinstance(payload_type, type) and issubclass(payload_type, BaseModel):
        return payload_type.model_validate
    return TypeAdapter(payload_type).validate_python


class BoundHandler:
    """A message handler ready to serve: payload decoding plus the middleware-wrapped call.

    Built at server start: checks ``fn``'s signature and DI wiring, wraps it in ``middleware``.

    Attributes:
        type: the message type it serves.
        reply_type: the type of its reply envelope (``"<type>.reply"``).
        name: ``module.qualname`` of the user's function.
        wants_bytes: the payload parameter is ``bytes`` (binary frames deliver raw bytes).
        call: the middleware chain around the user's function (request = decoded payload).
    """

    __slots__ = ("_decode", "call", "name", "reply_type", "type", "wants_bytes")

    def __init__(self, kind: str, fn: Callable[..., Any], middleware: Middleware) -> None:
        self.type = kind
        self.reply_type = kind + REPLY_SUFFIX
        self.name = describe(fn)
        what = f"websocket handler {self.name} for {kind!r}"
        check_wired(fn, what)
        params = _analyse(fn, what, takes_payload=True)
        self.wants_bytes = params.payload_type is bytes
        self._decode = _payload_decoder(params.payload_type)
        self.call: Handler = middleware(_endpoint(fn, params))

    def decode(self, payload: Any, binary: bool) -> Any:
        """Validate ``payload`` (a JSON value, or a binary frame's body) for this handler.

        Raises :class:`framework.errors.Error` 400 ``BAD_PAYLOAD`` when it does not validate.
        """
        if binary and not self.wants_bytes:
            # Binary frames carry JSON unless the handler asked for raw bytes.
            try:
                payload = _json_body(payload)
            except ValueError as exc:
                raise BadRequest(BAD_PAYLOAD, f"binary payload is not JSON: {exc}") from None
        if self._decode is None:
            return payload
        try:
            return self._decode(payload)
        except ValidationError as exc:
            summary = describe_errors(exc.errors(include_url=False))
            raise BadRequest(BAD_PAYLOAD, f"invalid payload for {self.type!r}: {summary}") from None


def _json_body(body: bytes) -> Any:
    return orjson.loads(body) if body else None


def _endpoint(fn: Callable[..., Any], params: _Params) -> Handler:
    is_async = inspect.iscoroutinefunction(fn)
    payload_name, session_name = params.payload, params.session

    async def endpoint(request: Any) -> Any:
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if payload_name is not None:
            if params.positional_payload:
                args = (request,)
            else:
                kwargs[payload_name] = request
        if session_name is not None:
            transport = current_transport.get()
            kwargs[session_name] = transport.raw if transport is not None else None
        result = fn(*args, **kwargs)
        if is_async or inspect.isawaitable(result):
            return await result
        return result

    return endpoint


def bind_callback(fn: Callable[..., Any], what: str) -> Callback:
    """A connect/disconnect callback: takes the session (and DI markers), nothing else."""
    label = f"websocket {what} callback {describe(fn)}"
    check_wired(fn, label)
    params = _analyse(fn, label, takes_payload=False)
    session_name, by_keyword = params.session, params.session_keyword_only
    is_async = inspect.iscoroutinefunction(fn)

    async def callback(session: Session) -> None:
        if session_name is None:
            result = fn()
        elif by_keyword:
            result = fn(**{session_name: session})
        else:
            result = fn(session)
        if is_async or inspect.isawaitable(result):
            await result

    return callback
