"""gRPC client tracing: interceptors for ``grpc.aio`` channels.

::

    channel = grpc.aio.insecure_channel(target, interceptors=client_interceptors())

Every call (unary and streaming alike) gets a CLIENT span named ``pkg.Service/Method``, child
of the current span, and the span's context is sent in the call metadata, where the
:func:`~framework.tracing.tracing` middleware of a :class:`~framework.transport.grpc.GrpcServer`
picks it up. A failed call's span carries the status and the framework error reason decoded
from the server's ``ErrorInfo`` detail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc
from grpc.aio import (
    AioRpcError,
    ClientCallDetails,
    Metadata,
    StreamStreamClientInterceptor,
    StreamUnaryClientInterceptor,
    UnaryStreamClientInterceptor,
    UnaryUnaryClientInterceptor,
)

from framework.errors import from_exception
from framework.tracing.attributes import grpc_method_attributes
from framework.tracing.availability import TracingUnavailableError
from framework.tracing.outcome import GRPC_STATUS_NUMBERS, record_error
from framework.tracing.propagation import inject
from framework.tracing.tracer import TracerSource

try:
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("framework.tracing.grpc_client", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = [
    "StreamStreamTracing",
    "StreamUnaryTracing",
    "UnaryStreamTracing",
    "UnaryUnaryTracing",
    "client_interceptors",
]

_OK = grpc.StatusCode.OK
Continuation = Callable[[ClientCallDetails, Any], Awaitable[Any]]


def client_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """The four interceptors that trace every kind of call of a ``grpc.aio`` channel.

    A ``grpc.aio`` channel files each interceptor under the *first* call kind it implements,
    so one object cannot serve all four: pass this whole list.

    Args:
        tracer_provider: the provider to use; ``None`` follows the global one (while none is
            configured, calls go through untouched).
    """
    tracers = TracerSource(tracer_provider)
    return [
        UnaryUnaryTracing(tracers),
        UnaryStreamTracing(tracers),
        StreamUnaryTracing(tracers),
        StreamStreamTracing(tracers),
    ]


class _ClientTracing:
    """What the four interceptors share: opening the span, propagating, ending it.

    Args:
        tracer_provider: the provider to use (``None``: the global one), or a
            :class:`~framework.tracing.tracer.TracerSource` shared with other interceptors.
    """

    def __init__(self, tracer_provider: TracerProvider | TracerSource | None = None) -> None:
        self._tracers = (
            tracer_provider
            if isinstance(tracer_provider, TracerSource)
            else TracerSource(tracer_provider)
        )
        # Spans being finished after a streaming call ended (see _end_when_done).
        self._finishing: set[asyncio.Task[None]] = set()

    def _start(self, details: ClientCallDetails) -> tuple[Span, ClientCallDetails] | None:
        """Open the CLIENT span and put its context in a copy of the call metadata."""
        tracer = self._tracers.get()
        if tracer is None:
            return None
        method = details.method
        if isinstance(method, bytes):
            method = method.decode("utf-8")
        span = tracer.start_span(
            method.lstrip("/"),
            kind=trace.SpanKind.CLIENT,
            attributes=grpc_method_attributes(method),
        )
        carrier: dict[str, str] = inject({}, trace.set_span_in_context(span))
        if not carrier:  # a propagator that writes nothing: leave the caller's metadata alone
            return span, details
        # A Metadata object given by the caller is passed through as is: never mutate it.
        metadata = Metadata(*(details.metadata or ()), *carrier.items())
        return span, details._replace(metadata=metadata)

    async def _streaming(
        self, continuation: Continuation, details: ClientCallDetails, request: Any
    ) -> Any:
        """Start a call with a request or response stream; its span ends when it finishes.

        The interceptor must return the call at once: with the ``write()`` API the caller
        only starts sending requests after that.
        """
        started = self._start(details)
        if started is None:
            return await continuation(details, request)
        span, details = started
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            _record_raised(span, exc)
            span.end()
            raise
        self._end_when_done(span, call)
        return call

    def _end_when_done(self, span: Span, call: Any) -> None:
        """End ``span`` when ``call`` finishes.

        Done callbacks are synchronous but reading a call's status is a coroutine, so the
        callback notes the end time and a short task reads the status and ends the span.
        """
        loop = asyncio.get_running_loop()

        def done(finished: Any) -> None:
            end_time = time.time_ns()
            task = loop.create_task(_finish_and_end(span, finished, end_time))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

        call.add_done_callback(done)


class UnaryUnaryTracing(_ClientTracing, UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Traces unary calls; the span ends when the status is in, before the caller's
    ``await`` returns."""

    async def intercept_unary_unary(
        self, continuation: Continuation, client_call_details: ClientCallDetails, request: Any
    ) -> Any:
        """Run the call inside a CLIENT span."""
        started = self._start(client_call_details)
        if started is None:
            return await continuation(client_call_details, request)
        span, details = started
        try:
            call = await continuation(details, request)
            await _finish(span, call)
        except BaseException as exc:
            _record_raised(span, exc)
            raise
        finally:
            span.end()
        return call


class UnaryStreamTracing(_ClientTracing, UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Traces server-streaming calls; the span ends with the stream, whichever API (``async
    for`` or ``read()``) the caller reads it with."""

    async def intercept_unary_stream(
        self, continuation: Continuation, client_call_details: ClientCallDetails, request: Any
    ) -> Any:
        """Run the call inside a CLIENT span."""
        return await self._streaming(continuation, client_call_details, request)


class StreamUnaryTracing(_ClientTracing, StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Traces client-streaming calls (request iterator or ``write()`` API)."""

    async def intercept_stream_unary(
        self,
        continuation: Continuation,
        client_call_details: ClientCallDetails,
        request_iterator: AsyncIterable[Any] | Iterable[Any],
    ) -> Any:
        """Run the call inside a CLIENT span."""
        return await self._streaming(continuation, client_call_details, request_iterator)


class StreamStreamTracing(_ClientTracing, StreamStreamClientInterceptor):  # type: ignore[misc]
    """Traces bidirectional-streaming calls."""

    async def intercept_stream_stream(
        self,
        continuation: Continuation,
        client_call_details: ClientCallDetails,
        request_iterator: AsyncIterable[Any] | Iterable[Any],
    ) -> Any:
        """Run the call inside a CLIENT span."""
        return await self._streaming(continuation, client_call_details, request_iterator)


async def _finish(span: Span, call: Any) -> None:
    """Record the finished ``call``'s status (and error) on ``span``."""
    code = await call.code()
    span.set_attribute("rpc.grpc.status_code", GRPC_STATUS_NUMBERS.get(code.name, 2))
    if code is _OK:
        return
    # Rebuild the error the caller gets, so the ErrorInfo reason is decoded the same way.
    trailers = await call.trailing_metadata()
    error = AioRpcError(code, Metadata(), trailers or Metadata(), await call.details())
    record_error(span, error, from_exception(error), failed=True)


async def _finish_and_end(span: Span, call: Any, end_time: int) -> None:
    try:
        await _finish(span, call)
    except BaseException as exc:
        _record_raised(span, exc)
        raise
    finally:
        span.end(end_time)


def _record_raised(span: Span, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute("rpc.grpc.status_code", GRPC_STATUS_NUMBERS["CANCELLED"])
        span.set_status(trace.Status(trace.StatusCode.ERROR, "cancelled"))
    elif isinstance(exc, Exception):
        record_error(span, exc, from_exception(exc), failed=True)
