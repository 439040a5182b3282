"""HTTP transport: FastAPI + uvicorn running inside the App's event loop."""

from framework.transport.http.errors import error_response, to_error
from framework.transport.http.openapi import error_responses
from framework.transport.http.route import OperationRoute, Router
from framework.transport.http.server import HttpServer

__all__ = [
    "HttpServer",
    "OperationRoute",
    "Router",
    "error_response",
    "error_responses",
    "to_error",
]
