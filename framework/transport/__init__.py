"""Transport-neutral contracts: the Server protocol and the per-request transport context.

Each concrete server lives in its own subpackage (``framework.transport.http``, ``.grpc``,
``.websocket``, ...) and is imported from there so that its heavy dependency stays optional.
"""

from framework.transport.context import Transport, current_transport, from_context, transport_scope
from framework.transport.server import HealthReporting, IntakeAware, ReadinessAware, Server

__all__ = [
    "HealthReporting",
    "IntakeAware",
    "ReadinessAware",
    "Server",
    "Transport",
    "current_transport",
    "from_context",
    "transport_scope",
]
