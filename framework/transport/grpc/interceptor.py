"""Run the framework middleware chain around every gRPC method.

Rather than a ``grpc.aio.ServerInterceptor`` (which grpc awaits on every call just to find
the handler), each method handler is wrapped once, when the server starts: the chain is
composed per method and the operation name, endpoint and error domain are closure constants.
Per call the wrapper only builds the :class:`~framework.transport.Transport`, sets the
contextvar and awaits the chain.

``Transport.request_headers`` is the invocation metadata as a dict (the last value wins for a
repeated key; ``-bin`` values are bytes); ``Transport.raw`` is the grpc ``ServicerContext``
(for a request stream, a thin wrapper of it whose ``read()`` checks each message, see
:class:`~framework.transport.grpc.decode.CheckedContext`).
What the chain puts in ``Transport.reply_headers`` is sent as trailing metadata (keys
lower-cased), on success and with an error status alike.

The :data:`~framework.middleware.Handler` the chain wraps takes one request and returns one
reply, so for streaming RPCs it wraps the call *as a whole*:

============== ========================================== ==================================
RPC kind       request seen by middleware                 reply seen by middleware
============== ========================================== ==================================
unary-unary    the request message                        the response message
unary-stream   the request message                        ``None``, after the last response
                                                          was written
stream-unary   the async iterator of request messages     the response message
stream-stream  the async iterator of request messages     ``None``, after the last response
                                                          was written
============== ========================================== ==================================

Responses of a streaming method are written to the client as the servicer yields them, from
inside the chain, so an exception raised mid-stream propagates through every middleware
(recovery, access log, ...) and is sent as the mapped status after the messages already
written. Middleware that needs each streamed message should wrap the servicer instead.

Servicer methods may be ``async def`` (the fast path), async generators (streaming replies),
coroutines using ``context.write``/``context.read``, or plain functions; plain functions run
on the event loop thread, so they must not block. ``NotImplementedError`` (what generated
base classes raise for a method left unimplemented) is sent as 501 / UNIMPLEMENTED.

Request bytes the method's deserializer cannot decode are answered 400 / INVALID_ARGUMENT
``MALFORMED_REQUEST`` (see :mod:`framework.transport.grpc.decode`). The task running each
method is registered in the server's :class:`~framework.transport.grpc.inflight.InFlight`
until the method returns, so a stop waits for it even when the client already has its answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from grpc.aio import AbortError

from framework.errors import Error, NotImplemented_, TooManyRequests
from framework.middleware.core import Handler, Middleware
from framework.middleware.ratelimit.middleware import RATELIMIT, Limiter
from framework.observer import current_observer
from framework.transport.context import Transport, current_transport
from framework.transport.grpc.decode import (
    CheckedContext,
    RequestGuard,
    Undecodable,
    checked_requests,
    guard_deserializer,
)
from framework.transport.grpc.inflight import InFlight
from framework.transport.grpc.status import error_from_abort, to_abort_args, to_error
from framework.transport.grpc.wiring import method_behavior

__all__ = [
    "NOT_IMPLEMENTED",
    "CallSettings",
    "WrappingGenericHandler",
    "wrap_method_handler",
]

NOT_IMPLEMENTED = "NOT_IMPLEMENTED"

Behavior = Callable[..., Any]
Trailers = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True, slots=True)
class CallSettings:
    """What every wrapped method of one server shares.

    Attributes:
        middleware: the composed chain, or ``None`` to run the servicer directly.
        endpoint: the server endpoint, copied into each :class:`Transport`.
        domain: the ``google.rpc.ErrorInfo.domain`` of errors this server sends.
        inflight: where each running method registers its task (the server waits on it).
        admission: asked before each call; a refusal is RESOURCE_EXHAUSTED ``RATELIMIT``
            before the chain runs.
    """

    middleware: Middleware | None
    endpoint: str
    domain: str
    inflight: InFlight = field(default_factory=InFlight)
    admission: Limiter | None = None


class _HandlerAborted(Error):
    """The servicer called ``context.abort`` itself.

    It travels through the chain as an :class:`Error` (so recovery lets it pass and the access
    log records the real status); the server then re-raises the original ``AbortError``,
    which grpc expects to see.
    """

    __slots__ = ("abort_error",)

    def __init__(self, error: Error, abort_error: AbortError) -> None:
        super().__init__(error.code, error.reason, error.message, error.metadata)
        self.abort_error = abort_error


def _merge_trailers(context: Any, reply_headers: Mapping[str, str | bytes]) -> Trailers:
    existing: Trailers = tuple(context.trailing_metadata() or ())
    return existing + tuple((key.lower(), value) for key, value in reply_headers.items())


async def _fail(context: Any, exc: Exception, transport: Transport, domain: str) -> NoReturn:
    """Send ``exc`` as the call's status (abort) and raise what grpc expects."""
    if isinstance(exc, _HandlerAborted):
        raise exc.abort_error
    if isinstance(exc, AbortError) or context.done():
        # Already answered (the servicer aborted, or the client went away): nothing to send.
        raise exc
    if isinstance(exc, NotImplementedError):
        exc = NotImplemented_(NOT_IMPLEMENTED, f"{transport.operation} is not implemented")
    error = to_error(exc)
    code, details, trailers = to_abort_args(error, None, domain)
    headers = _merge_trailers(context, transport.reply_headers)
    await context.abort(code, details, headers + trailers)
    raise AssertionError("unreachable: context.abort() always raises")  # pragma: no cover


async def _refuse(context: Any, error: Error, domain: str) -> NoReturn:
    """Answer ``error`` without running the chain (there is no request to run it with)."""
    code, details, trailers = to_abort_args(error, None, domain)
    await context.abort(code, details, trailers)
    raise AssertionError("unreachable: context.abort() always raises")  # pragma: no cover


def _serve(
    chained: Handler, operation: str, settings: CallSettings, request_streaming: bool
) -> Behavior:
    """The coroutine grpc calls: set the transport context, run the chain, map errors."""
    endpoint = settings.endpoint
    domain = settings.domain
    inflight = settings.inflight
    guard = RequestGuard(operation)
    set_transport = current_transport.set
    reset_transport = current_transport.reset
    admission = settings.admission
    refusal = TooManyRequests(RATELIMIT, f"the server is at its admission limit ({operation})")

    async def rpc(request: Any, context: Any) -> Any:
        admitted = admission.allow() if admission is not None else True
        if not admitted:
            observer = current_observer()
            if observer is not None:
                observer.request_refused("grpc", RATELIMIT)
            await _refuse(context, refusal, domain)
        task = inflight.enter()
        try:
            if request_streaming:
                request = checked_requests(request, guard)
                context = CheckedContext(context, guard)
            elif request.__class__ is Undecodable:
                await _refuse(context, guard.error(request), domain)
            transport = Transport(
                "grpc", operation, dict(context.invocation_metadata()), {}, endpoint, context
            )
            token = set_transport(transport)
            try:
                reply = await chained(request)
            except Exception as exc:
                await _fail(context, exc, transport, domain)
            finally:
                reset_transport(token)
            if transport.reply_headers:
                context.set_trailing_metadata(_merge_trailers(context, transport.reply_headers))
            return reply
        finally:
            inflight.leave(task)
            if admitted is not True:
                admitted()

    return rpc


def _raw_context() -> Any:
    transport = current_transport.get()
    if transport is None:  # pragma: no cover - a middleware ran the handler out of context
        raise RuntimeError("gRPC handler called outside its transport context")
    return transport.raw


def _unary_terminal(behavior: Behavior, operation: str) -> Handler:
    """Innermost handler of a method with one response."""
    is_coroutine = inspect.iscoroutinefunction(behavior)

    async def call(request: Any) -> Any:
        context = _raw_context()
        try:
            if is_coroutine:
                return await behavior(request, context)
            result = behavior(request, context)
            return (await result) if inspect.isawaitable(result) else result
        except AbortError as exc:
            raise _HandlerAborted(error_from_abort(context.code(), context.details()), exc) from exc
        except NotImplementedError as exc:
            raise NotImplemented_(NOT_IMPLEMENTED, f"{operation} is not implemented") from exc

    return call


def _stream_terminal(behavior: Behavior, operation: str) -> Handler:
    """Innermost handler of a method with a response stream: writes every response."""
    is_async_gen = inspect.isasyncgenfunction(behavior)
    is_coroutine = inspect.iscoroutinefunction(behavior)

    async def call(request: Any) -> None:
        context = _raw_context()
        try:
            if is_async_gen:
                async for response in behavior(request, context):
                    await context.write(response)
                return
            result = behavior(request, context)
            if is_coroutine or inspect.isawaitable(result):
                # Reader/writer API: the servicer wrote its responses itself.
                result = await result
            if result is None:
                return
            if hasattr(result, "__aiter__"):
                async for response in result:
                    await context.write(response)
            else:
                for response in result:
                    await context.write(response)
        except AbortError as exc:
            raise _HandlerAborted(error_from_abort(context.code(), context.details()), exc) from exc
        except NotImplementedError as exc:
            raise NotImplemented_(NOT_IMPLEMENTED, f"{operation} is not implemented") from exc

    return call


def wrap_method_handler(
    operation: str, handler: grpc.RpcMethodHandler, settings: CallSettings
) -> grpc.RpcMethodHandler:
    """A method handler that runs ``handler`` inside the middleware chain.

    ``operation`` is the full method name (``"/echo.v1.Echo/Unary"``); it becomes
    ``Transport.operation``. The response serializer and streaming flags are kept as they are;
    the request deserializer is guarded (see :mod:`framework.transport.grpc.decode`).
    """
    behavior = method_behavior(handler)
    if handler.response_streaming:
        terminal = _stream_terminal(behavior, operation)
    else:
        terminal = _unary_terminal(behavior, operation)
    chained = settings.middleware(terminal) if settings.middleware is not None else terminal
    rpc = _serve(chained, operation, settings, handler.request_streaming)
    deserializer = guard_deserializer(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(rpc, deserializer, serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(rpc, deserializer, serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(rpc, deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(rpc, deserializer, serializer)


class WrappingGenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
    """Wraps what an arbitrary ``GenericRpcHandler`` serves, method by method.

    Used for handlers whose methods cannot be listed up front (hand-written generic
    handlers); each method is wrapped the first time it is called and then reused.
    """

    # Methods are a small fixed set in practice; the cap only guards against a handler that
    # answers for arbitrary method names.
    _CACHE_LIMIT = 1024

    def __init__(self, inner: grpc.GenericRpcHandler, settings: CallSettings) -> None:
        self._inner = inner
        self._settings = settings
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """Return the wrapped handler for the called method, or ``None`` if not served."""
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap_method_handler(method, handler, self._settings)
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[method] = (handler, wrapped)
        return wrapped
