"""HTTP client tracing for httpx: :class:`TracingTransport` and :func:`traced_httpx_client`.

::

    async with traced_httpx_client(base_url="http://orders:8000") as client:
        await client.get("/v1/orders/7")

Each request gets a CLIENT span named after the method (``GET``), child of the current span,
and the span's context is sent in the request headers, where the
:func:`~framework.tracing.tracing` middleware of an :class:`~framework.transport.http.HttpServer`
continues it. The span ends when the response headers arrive; a response >= 400 or a
transport error marks it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from framework.tracing.availability import TracingUnavailableError
from framework.tracing.propagation import inject
from framework.tracing.tracer import TracerSource

try:
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("framework.tracing.http_client", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["TracingTransport", "traced_httpx_client"]

# AsyncClient arguments that configure its default transport: they must reach the transport
# we build, or a traced client would silently lose e.g. verify=False or http2=True.
_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TracingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that traces requests and forwards them to ``transport``.

    Args:
        transport: the transport doing the I/O (a default ``httpx.AsyncHTTPTransport`` if
            ``None``).
        tracer_provider: the provider to use; ``None`` follows the global one (while none is
            configured, requests go through untouched).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._tracers = TracerSource(tracer_provider)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` inside a CLIENT span carrying its context in the headers."""
        tracer = self._tracers.get()
        if tracer is None:
            return await self._inner.handle_async_request(request)
        url = request.url
        span = tracer.start_span(
            request.method,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                # Credentials in the URL must not end up in a tracing backend.
                "url.full": str(url.copy_with(username=None, password=None))
                if url.userinfo
                else str(url),
                "server.address": url.host,
                "server.port": url.port or _DEFAULT_PORTS.get(url.scheme, 0),
            },
        )
        try:
            inject(request.headers, trace.set_span_in_context(span))
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
            raise
        except BaseException:  # cancelled: still close the span
            span.end()
            raise
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {status}"))
        span.end()
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


def traced_httpx_client(
    *,
    tracer_provider: TracerProvider | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose requests are traced (see :class:`TracingTransport`).

    ``client_options`` go to ``httpx.AsyncClient`` (``base_url``, ``timeout``, ``headers``,
    ...); those that configure the default transport (``verify``, ``cert``, ``http2``,
    ``limits``, ...) also configure the traced one. Requests routed through ``mounts`` or
    proxy transports are not traced: wrap those transports in :class:`TracingTransport`.
    """
    if transport is None:
        options = {k: client_options[k] for k in _TRANSPORT_OPTIONS if k in client_options}
        transport = httpx.AsyncHTTPTransport(**options)
    return httpx.AsyncClient(
        transport=TracingTransport(transport, tracer_provider=tracer_provider), **client_options
    )
