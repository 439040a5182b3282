"""An httpx client over discovered instances, running client middleware on every request.

::

    async with await http_client("discovery:///orders", discovery=registry,
                                 middlewares=default_client_middlewares()) as client:
        order = (await client.get("/v1/orders/7")).json()

Requests use any URL host (``http://orders/...``, or a path with the default ``base_url``);
the transport replaces scheme, host and port with a node picked by the balancer. Each request
runs the middleware chain; a response >= 400 is raised as :class:`framework.errors.Error`
rebuilt from the framework's JSON error body (``{"code","reason","message","metadata"}``), a
transport failure as 503 ``UNAVAILABLE``. The call's timeout goes out in
:data:`~framework.client.deadline.TIMEOUT_HEADER` for the callee's own calls.

Tracing builds on :class:`framework.tracing.http_client.TracingTransport` (``tracing=True``,
or ``None``: when a provider is set).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from framework.client.balancer import Balancer
from framework.client.context import ClientCall, current_call
from framework.client.deadline import TIMEOUT_HEADER
from framework.client.filters import Filter
from framework.client.resolver import Resolver
from framework.client.target import parse_target
from framework.client.tracing_option import use_tracing
from framework.errors import Error, ServiceUnavailable
from framework.middleware.core import Middleware, chain
from framework.registry.contract import Discovery

__all__ = ["UNAVAILABLE", "DiscoveryTransport", "http_client"]

#: Reason of the 503 raised when the instance could not be reached.
UNAVAILABLE = "UNAVAILABLE"
_SERVER_FAILURES = frozenset({500, 503, 504})


class DiscoveryTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending each request to a node picked among the target's instances.

    Args: as :func:`http_client`; ``transport`` is the one doing the I/O.
    """

    def __init__(
        self,
        target: str,
        *,
        discovery: Discovery | None = None,
        middlewares: Sequence[Middleware] = (),
        balancer: Balancer | None = None,
        filters: Sequence[Filter] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        tracing: bool | None = False,
    ) -> None:
        self.target = parse_target(target)
        self.resolver = Resolver(
            self.target, "http", discovery=discovery, balancer=balancer, filters=filters
        )
        inner = transport or httpx.AsyncHTTPTransport()
        self._inner = _traced(inner, tracing)
        self._handler = chain(*middlewares)(self._invoke)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Run the middleware chain around sending ``request``."""
        timeout = request.extensions.get("timeout", {}).get("read")
        call = ClientCall(
            "http",
            f"{request.method} {request.url.path}",
            {},
            timeout=timeout,
            service=self.target.service,
            raw=request,
        )
        token = current_call.set(call)
        try:
            response: httpx.Response = await self._handler(request)
        finally:
            current_call.reset(token)
        return response

    async def _invoke(self, request: httpx.Request) -> httpx.Response:
        call = current_call.get()
        assert call is not None
        node = self.resolver.pick(call.failed)
        call.endpoint = node.address
        host, _, port = node.address.rpartition(":")
        request.url = request.url.copy_with(scheme="http", host=host.strip("[]"), port=int(port))
        request.headers["host"] = node.address
        request.headers.update(call.request_headers)
        left = call.time_left()
        if left is not None:
            request.extensions["timeout"] = dict.fromkeys(
                ("connect", "read", "write", "pool"), left
            )
            request.headers[TIMEOUT_HEADER] = f"{left:.3f}"
        started = node.begin()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TimeoutException as exc:
            node.end(started, True)
            raise Error(504, "DEADLINE_EXCEEDED", f"{node.address}: {exc}") from exc
        except httpx.TransportError as exc:
            node.end(started, True)
            call.failed = {*(call.failed or ()), node.address}
            raise ServiceUnavailable(UNAVAILABLE, f"{node.address}: {exc!r}") from exc
        except BaseException:
            node.end(started, True)
            raise
        failed = response.status_code in _SERVER_FAILURES
        node.end(started, failed)
        if failed:
            call.failed = {*(call.failed or ()), node.address}
        call.reply_headers = response.headers
        if response.status_code >= 400:
            body = await response.aread()
            await response.aclose()
            raise _error_from(response.status_code, body)
        return response

    async def start(self, resolve_timeout: float = 10.0) -> None:
        """Resolve the target (and keep watching it)."""
        await self.resolver.start(resolve_timeout)

    async def aclose(self) -> None:
        """Stop watching and close the inner transport."""
        await self.resolver.close()
        await self._inner.aclose()


async def http_client(
    target: str,
    *,
    discovery: Discovery | None = None,
    middlewares: Sequence[Middleware] = (),
    balancer: Balancer | None = None,
    filters: Sequence[Filter] = (),
    tracing: bool | None = False,
    resolve_timeout: float = 10.0,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose requests go to the target's instances.

    ``target`` is ``discovery:///<service>`` (with ``discovery``) or ``host:port[,...]``;
    ``client_options`` go to ``httpx.AsyncClient`` (``timeout``, ``headers``...; the default
    ``base_url`` is ``http://<service>``).
    """
    transport = DiscoveryTransport(
        target,
        discovery=discovery,
        middlewares=middlewares,
        balancer=balancer,
        filters=filters,
        tracing=tracing,
    )
    await transport.start(resolve_timeout)
    client_options.setdefault("base_url", "http://service")
    return httpx.AsyncClient(transport=transport, **client_options)


def _error_from(status: int, body: bytes) -> Error:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("reason"), str):
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else None
        return Error(
            int(data.get("code", status)), data["reason"], str(data.get("message", "")), metadata
        )
    return Error(status, "", body.decode("utf-8", "replace")[:500])


def _traced(transport: httpx.AsyncBaseTransport, tracing: bool | None) -> httpx.AsyncBaseTransport:
    if not use_tracing(tracing, "framework.tracing.http_client"):
        return transport
    from framework.tracing.http_client import TracingTransport

    return TracingTransport(transport)
