"""The servicer behind the test proto ``echo.v1.Echo``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from framework.errors import NotFound
from framework.transport.context import from_context
from tests.grpc.protos import echo_pb2, echo_pb2_grpc

__all__ = ["EchoService"]


class EchoService(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
    """Echoes text back; fails on demand (``EchoRequest.fail``); ``Missing`` is left out."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.slow_entered = asyncio.Event()
        self.slow_release = asyncio.Event()

    async def _maybe_fail(self, request: Any, context: Any) -> None:
        if request.fail == "error":
            transport = from_context()
            assert transport is not None
            transport.reply_headers["x-before-error"] = "kept"
            raise NotFound("ECHO_NOT_FOUND", f"no echo for {request.text!r}", text=request.text)
        if request.fail == "crash":
            raise RuntimeError("secret internal detail")
        if request.fail == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")

    async def Unary(self, request: Any, context: Any) -> Any:
        self.events.append("handler")
        await self._maybe_fail(request, context)
        return echo_pb2.EchoReply(text=request.text)

    async def ServerStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for index in range(request.count):
            if request.fail and index == request.fail_at:
                await self._maybe_fail(request, context)
            self.events.append(f"yield {index}")
            yield echo_pb2.EchoReply(text=request.text, index=index)

    async def ClientStream(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        texts: list[str] = []
        async for request in request_iterator:
            await self._maybe_fail(request, context)
            texts.append(request.text)
        return echo_pb2.EchoReply(text="".join(texts), index=len(texts))

    async def Bidi(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        index = 0
        async for request in request_iterator:
            await self._maybe_fail(request, context)
            yield echo_pb2.EchoReply(text=request.text.upper(), index=index)
            index += 1

    async def Slow(self, request: Any, context: Any) -> Any:
        self.slow_entered.set()
        await self.slow_release.wait()
        return echo_pb2.EchoReply(text=request.text)
