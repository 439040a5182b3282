"""Error -> gRPC status: the mapped code, the message and a rich ``google.rpc.Status``.

The reverse direction lives in :func:`framework.errors.from_exception`, which decodes the
``grpc-status-details-bin`` trailer written here back into the same :class:`Error`, so a
client sees the reason and metadata the server raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from framework.errors import Error, grpc_code_to_http, metadata_text
from framework.middleware.recovery import internal_error

__all__ = [
    "STATUS_DETAILS_KEY",
    "AbortArgs",
    "error_from_abort",
    "grpc_status_code",
    "to_abort_args",
    "to_error",
    "to_rpc_status",
]

STATUS_DETAILS_KEY = "grpc-status-details-bin"

AbortArgs = tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]

_log = logging.getLogger("pykratos.grpc")


def grpc_status_code(error: Error) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` an error is sent as; never OK (an error is not a success)."""
    code: grpc.StatusCode = getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN if code is grpc.StatusCode.OK else code


def to_rpc_status(error: Error, domain: str = "") -> status_pb2.Status:
    """The ``google.rpc.Status`` for ``error`` with one ``google.rpc.ErrorInfo`` detail."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=domain, metadata=metadata_text(error.metadata)
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(
        code=grpc_status_code(error).value[0], message=error.message, details=[detail]
    )


def to_error(exc: BaseException) -> Error:
    """The :class:`Error` sent for ``exc``.

    An :class:`Error` is sent as is. Anything else only gets here when no recovery middleware
    is installed; it is logged with its stack and the current operation and sent as the same
    generic 500 ``INTERNAL_ERROR`` recovery would send, so internals never leak to the client.
    """
    if isinstance(exc, Error):
        return exc
    return internal_error(exc, logger=_log, hint=" (not caught by a recovery middleware)")


def to_abort_args(
    error: Error, reply_headers: Mapping[str, str | bytes] | None = None, domain: str = ""
) -> AbortArgs:
    """Arguments for ``ServicerContext.abort``: code, details and the trailing metadata.

    The trailers carry the handler's reply headers plus the serialized rich status.
    """
    status = to_rpc_status(error, domain)
    trailers: list[tuple[str, str | bytes]] = []
    if reply_headers:
        trailers.extend((key.lower(), value) for key, value in reply_headers.items())
    trailers.append((STATUS_DETAILS_KEY, status.SerializeToString()))
    return grpc_status_code(error), error.message, tuple(trailers)


def error_from_abort(code: grpc.StatusCode | None, details: str | None) -> Error:
    """The :class:`Error` describing a call the handler aborted itself via ``context.abort``.

    Middleware (access log, metrics) then sees the status the client gets.
    """
    name = code.name if code is not None else "UNKNOWN"
    return Error(grpc_code_to_http(name), "", details or "")
