"""A separate admin port for Prometheus: :class:`MetricsServer`, a tiny HTTP/1.1 server.

For when the service's HTTP port is public and the metrics must not be: the App starts it like
any other server (``App(servers=[..., MetricsServer(metrics, port=9464)])``). It answers
``GET <path>`` with the exposition (collected in a worker thread), ``/healthz`` with 200 and
anything else with 404, one request per connection. 9464 is the port OpenTelemetry's
Prometheus exporters use by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from framework.metrics.setup import CONTENT_TYPE, Metrics
from framework.transport.address import host_port

__all__ = ["MetricsServer"]

_log = logging.getLogger("pykratos.metrics")
_MAX_REQUEST_LINE = 8192


class MetricsServer:
    """Serves ``metrics`` on its own port; a :class:`~framework.transport.Server`.

    Args:
        metrics: what to expose (:func:`~framework.metrics.setup_metrics`).
        host, port: where to listen; port 0 picks a free one (see :attr:`endpoint`).
        path: the scrape path.
        name: label for logs.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str = "0.0.0.0",
        port: int = 9464,
        *,
        path: str = "/metrics",
        name: str = "metrics",
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.path = path
        self.name = name
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        """``http://host:port``; the real port once started."""
        return f"http://{host_port(self.host, self.port)}"

    async def start(self) -> None:
        """Bind and serve; returns once the socket accepts connections."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        _log.info("%s serving %s%s", self.name, self.endpoint, self.path)

    async def stop(self, timeout: float) -> None:
        """Close the listener and wait (within ``timeout``) for scrapes in progress."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, *_ = head[:_MAX_REQUEST_LINE].split(b"\r\n", 1)[0].split(b" ")
            path = target.split(b"?", 1)[0].decode("latin-1")
            if method not in (b"GET", b"HEAD"):
                status, body, kind = "405 Method Not Allowed", b"", "text/plain"
            elif path == self.path:
                body = await asyncio.to_thread(self.metrics.exposition)
                status, kind = "200 OK", CONTENT_TYPE
            elif path == "/healthz":
                status, body, kind = "200 OK", b"ok\n", "text/plain"
            else:
                status, body, kind = "404 Not Found", b"", "text/plain"
            header = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(header if method == b"HEAD" else header + body)
            await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass  # a broken or slow scrape: drop the connection
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
