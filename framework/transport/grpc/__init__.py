"""gRPC transport: :class:`GrpcServer` on grpc.aio (needs the ``pykratos[grpc]`` extra).

The server runs the framework middleware chain around every method with a
``Transport(kind="grpc", operation="/pkg.Service/Method")``, sends :class:`framework.Error`
as the mapped status with a ``google.rpc.ErrorInfo`` detail, serves the standard health
service (driven by the App's readiness) and server reflection.
"""

from framework.transport.grpc.health import HealthServicer
from framework.transport.grpc.interceptor import NOT_IMPLEMENTED, wrap_method_handler
from framework.transport.grpc.server import GrpcServer
from framework.transport.grpc.status import STATUS_DETAILS_KEY, to_abort_args, to_rpc_status

__all__ = [
    "NOT_IMPLEMENTED",
    "STATUS_DETAILS_KEY",
    "GrpcServer",
    "HealthServicer",
    "to_abort_args",
    "to_rpc_status",
    "wrap_method_handler",
]
