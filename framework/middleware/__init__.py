"""One middleware pipeline for HTTP, gRPC, WebSocket and broker handlers."""

from framework.middleware.core import (
    ErrorDeclaration,
    Handler,
    Middleware,
    chain,
    declare_errors,
    declared_errors,
)
from framework.middleware.logging import access_log
from framework.middleware.recovery import INTERNAL_ERROR, internal_error, recovery
from framework.middleware.selector import Selector, selector
from framework.middleware.timeout import TIMEOUT, timeout
from framework.middleware.validate import VALIDATOR, validate

__all__ = [
    "INTERNAL_ERROR",
    "TIMEOUT",
    "VALIDATOR",
    "ErrorDeclaration",
    "Handler",
    "Middleware",
    "Selector",
    "access_log",
    "chain",
    "declare_errors",
    "declared_errors",
    "internal_error",
    "recovery",
    "selector",
    "timeout",
    "validate",
]
