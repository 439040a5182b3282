"""The standard ``grpc.health.v1.Health`` service, driven synchronously by the App.

grpcio-health-checking's asyncio servicer makes ``set`` a coroutine, but
:meth:`ReadinessAware.set_serving` is a plain method, so this small servicer keeps the
statuses in a dict and wakes ``Watch`` streams through one :class:`asyncio.Event` each
(rapid changes coalesce; a watcher always ends up on the latest status, as the protocol
allows). :meth:`HealthServicer.shutdown` ends every ``Watch`` stream so a watching client
never holds up a graceful stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from framework.validation import excerpt

__all__ = ["HEALTH_SERVICE_NAME", "NOT_SERVING", "SERVICE_UNKNOWN", "SERVING", "HealthServicer"]

HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN: int = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer:
    """Implements ``Check``, ``List`` and ``Watch``; statuses are set with plain method calls.

    The overall server health is the empty service name ``""``. A service that was never set
    answers ``NOT_FOUND`` to ``Check`` and ``SERVICE_UNKNOWN`` to ``Watch``.
    """

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._shut_down = False

    def status(self, service: str = "") -> int | None:
        """The current status of ``service`` (``None`` if unknown)."""
        return self._status.get(service)

    def set(self, service: str, status: int) -> None:
        """Set ``service``'s status and wake its watchers; ignored after :meth:`shutdown`."""
        if self._shut_down:
            return
        self._set(service, status)

    def set_all(self, services: Iterable[str], serving: bool) -> None:
        """Set every one of ``services`` to SERVING or NOT_SERVING."""
        status = SERVING if serving else NOT_SERVING
        for service in services:
            self.set(service, status)

    def shutdown(self) -> None:
        """Mark every service NOT_SERVING for good and end all ``Watch`` streams."""
        if self._shut_down:
            return
        for service in list(self._status):
            self._set(service, NOT_SERVING)
        self._shut_down = True
        for events in self._watchers.values():
            for event in events:
                event.set()

    def _set(self, service: str, status: int) -> None:
        self._status[service] = status
        for event in self._watchers.get(service, ()):
            event.set()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        """Unary health check of ``request.service``."""
        status = self._status.get(request.service)
        if status is None:
            service = excerpt(request.service)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        """Snapshot of every known service's status."""
        return health_pb2.HealthListResponse(
            statuses={
                service: health_pb2.HealthCheckResponse(status=status)
                for service, status in self._status.items()
            }
        )

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """Stream ``request.service``'s status now and after every change, until shutdown."""
        service = request.service
        event = asyncio.Event()
        self._watchers.setdefault(service, set()).add(event)
        last: int | None = None
        try:
            while True:
                event.clear()
                status = self._status.get(service, SERVICE_UNKNOWN)
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._shut_down:
                    return
                await event.wait()
        finally:
            watchers = self._watchers.get(service)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[service]
