"""A gRPC channel over discovered instances, running client middleware on every call.

::

    channel = await grpc_channel("discovery:///orders", discovery=registry,
                                 middlewares=default_client_middlewares())
    stub = order_pb2_grpc.OrderStub(channel)
    reply = await stub.GetOrder(GetOrderRequest(id=7), timeout=2)

The channel duck-types ``grpc.aio.Channel`` for generated stubs. Each **unary** call runs
the middleware chain (the same :data:`~framework.middleware.Middleware` type as servers),
whose innermost step picks a node with the balancer and calls it on that node's own
``grpc.aio`` channel; a failure comes back as :class:`framework.errors.Error`
(:func:`~framework.errors.from_exception`). Streaming calls go to a picked node without the
middleware chain (their replies are streams, not one value a middleware could see).

Tracing builds on :func:`framework.tracing.grpc_client.client_interceptors`: with
``tracing=True`` every node channel gets those interceptors (CLIENT spans, context
propagated); ``None`` turns them on when OpenTelemetry is installed and a provider is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc.aio import AioRpcError

from framework.client.balancer import Balancer
from framework.client.context import ClientCall, current_call
from framework.client.filters import Filter
from framework.client.node import Node
from framework.client.resolver import Resolver
from framework.client.target import parse_target
from framework.client.tracing_option import use_tracing
from framework.errors import from_exception
from framework.middleware.core import Handler, Middleware, chain
from framework.registry.contract import Discovery

__all__ = ["GrpcClientChannel", "grpc_channel"]

_SERVER_FAILURES = frozenset({500, 503, 504})


async def grpc_channel(
    target: str,
    *,
    discovery: Discovery | None = None,
    middlewares: Sequence[Middleware] = (),
    balancer: Balancer | None = None,
    filters: Sequence[Filter] = (),
    options: Sequence[tuple[str, Any]] = (),
    tracing: bool | None = False,
    resolve_timeout: float = 10.0,
    close_grace: float = 30.0,
) -> GrpcClientChannel:
    """Build and start a :class:`GrpcClientChannel` (see it for the arguments)."""
    channel = GrpcClientChannel(
        target,
        discovery=discovery,
        middlewares=middlewares,
        balancer=balancer,
        filters=filters,
        options=options,
        tracing=tracing,
        close_grace=close_grace,
    )
    await channel.start(resolve_timeout)
    return channel


class GrpcClientChannel:
    """A stub-compatible channel to every instance of a target.

    Args:
        target: ``discovery:///<service>`` or ``host:port[,host:port]``.
        discovery: the registry for a ``discovery:///`` target.
        middlewares: client middleware, first = outermost (e.g.
            :func:`~framework.client.default_client_middlewares`).
        balancer: node picker (:class:`~framework.client.balancer.P2C` by default).
        filters: instance filters (:mod:`framework.client.filters`).
        options: ``grpc.aio`` channel options for every node channel.
        tracing: add the tracing interceptors to node channels (see the module docstring).
        close_grace: seconds a removed node's channel stays open for calls in flight.
    """

    def __init__(
        self,
        target: str,
        *,
        discovery: Discovery | None = None,
        middlewares: Sequence[Middleware] = (),
        balancer: Balancer | None = None,
        filters: Sequence[Filter] = (),
        options: Sequence[tuple[str, Any]] = (),
        tracing: bool | None = False,
        close_grace: float = 30.0,
    ) -> None:
        self.target = parse_target(target)
        self._resolver = Resolver(
            self.target,
            "grpc",
            discovery=discovery,
            balancer=balancer,
            filters=filters,
            on_removed=self._retire,
        )
        self._middleware = chain(*middlewares)
        self._options = list(options)
        self._interceptors = _tracing_interceptors(tracing)
        self._close_grace = close_grace

    @property
    def nodes(self) -> list[Node]:
        """The nodes calls are balanced over right now."""
        return self._resolver.nodes

    async def start(self, resolve_timeout: float = 10.0) -> None:
        """Resolve the target (and keep watching it)."""
        await self._resolver.start(resolve_timeout)

    async def close(self) -> None:
        """Stop watching and close every node channel."""
        await self._resolver.close()
        channels = [n.channel for n in self._resolver.nodes if n.channel is not None]
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    async def __aenter__(self) -> GrpcClientChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the part of grpc.aio.Channel that generated stubs use -------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> _UnaryUnary:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _Streaming:
        return _Streaming(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> _Streaming:
        return _Streaming(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> _Streaming:
        return _Streaming(self, "stream_stream", method, args, kwargs)

    # -- internals -----------------------------------------------------------------------

    def _node_channel(self, node: Node) -> grpc.aio.Channel:
        channel = node.channel
        if channel is None:
            channel = node.channel = grpc.aio.insecure_channel(
                node.address, options=self._options, interceptors=self._interceptors
            )
        return channel

    async def _retire(self, node: Node) -> None:
        """Close a removed node's channel once its calls ended (or after the grace)."""
        if node.inflight > 0:
            node.idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.idle.wait(), self._close_grace)
        channel, node.channel = node.channel, None
        node.calls.clear()
        if channel is not None:
            await channel.close()


class _UnaryUnary:
    """What ``stub.Method`` is: calling it runs the middleware chain around one call."""

    __slots__ = ("_channel", "_deserialize", "_handler", "_method", "_serialize")

    def __init__(
        self,
        channel: GrpcClientChannel,
        method: str,
        serialize: Callable[[Any], bytes] | None,
        deserialize: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serialize = serialize
        self._deserialize = deserialize
        self._handler: Handler = channel._middleware(self._invoke)

    async def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        **_: Any,
    ) -> Any:
        call = ClientCall(
            "grpc",
            self._method,
            dict(metadata) if metadata else {},
            timeout=timeout,
            service=self._channel.target.service,
        )
        token = current_call.set(call)
        try:
            return await self._handler(request)
        finally:
            current_call.reset(token)

    async def _invoke(self, request: Any) -> Any:
        call = current_call.get()
        assert call is not None
        node = self._channel._resolver.pick(call.failed)
        call.endpoint = node.address
        send = node.calls.get(self._method)
        if send is None:
            send = node.calls[self._method] = self._channel._node_channel(node).unary_unary(
                self._method,
                request_serializer=self._serialize,
                response_deserializer=self._deserialize,
                _registered_method=True,
            )
        headers = call.request_headers
        started = node.begin()
        try:
            reply = await send(
                request,
                timeout=call.time_left(),
                metadata=tuple(headers.items()) if headers else None,
            )
        except AioRpcError as exc:
            error = from_exception(exc)
            failed = error.code in _SERVER_FAILURES
            node.end(started, failed)
            if failed:
                call.failed = {*(call.failed or ()), node.address}
            raise error from exc
        except BaseException:
            node.end(started, True)
            raise
        node.end(started, False)
        return reply


class _Streaming:
    """A streaming multicallable on a picked node (no middleware, see the module docstring)."""

    def __init__(
        self,
        channel: GrpcClientChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._channel, self._kind, self._method = channel, kind, method
        self._args, self._kwargs = args, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        node = self._channel._resolver.pick()
        channel = self._channel._node_channel(node)
        factory = getattr(channel, self._kind)
        return factory(self._method, *self._args, **self._kwargs)(*args, **kwargs)


def _tracing_interceptors(tracing: bool | None) -> list[Any] | None:
    if not use_tracing(tracing, "framework.tracing.grpc_client"):
        return None
    from framework.tracing.grpc_client import client_interceptors

    return client_interceptors()
