"""The OpenAPI document tells the errors the server really answers.

FastAPI documents a 422 ``HTTPValidationError`` on every operation with parameters or a body;
the :class:`~framework.transport.http.HttpServer` answers a failed validation with 400
``VALIDATOR`` instead, and every error with the framework's body
``{"code", "reason", "message", "metadata"}`` (:mod:`framework.transport.http.errors`).
:func:`document_errors` rewrites a generated document so that each operation lists:

- ``400`` where FastAPI would have put its 422 (the operation validates parameters or a body);
- ``415`` on operations that take a JSON body (:mod:`framework.transport.http.media`);
- ``413`` on every operation when the server has a ``max_body_size``;
- what the server's middleware declares for that operation
  (:func:`framework.middleware.declare_errors`: 500 from ``recovery``, 504 from ``timeout``,
  429 from ``ratelimit``, 401 from ``jwt_auth``, each only where its selector applies);
- 500 always (an exception no middleware catches is answered 500 ``INTERNAL_ERROR``);
- the error statuses the route declares itself (``responses=error_responses({404: ...})``);
  a declared error status without a body schema gets the framework's.

Every one of them refers to one ``Error`` schema in ``components.schemas``; FastAPI's
``HTTPValidationError`` and ``ValidationError`` schemas go when nothing refers to them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi.routing import APIRoute

from framework.errors import PAYLOAD_TOO_LARGE
from framework.middleware.recovery import INTERNAL_ERROR
from framework.middleware.validate import VALIDATOR
from framework.transport.http.media import UNSUPPORTED_MEDIA_TYPE, takes_json_body

__all__ = ["ERROR_SCHEMA", "document_errors", "error_responses"]

#: JSON Schema of the framework's error body (:meth:`framework.errors.Error.to_dict`).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "The framework's error body, the same on HTTP, WebSocket and gRPC "
    "(google.rpc.ErrorInfo): an HTTP status, a stable machine-readable reason, a message "
    "for humans and string metadata.",
    "properties": {
        "code": {"type": "integer", "title": "Code", "description": "HTTP status"},
        "reason": {
            "type": "string",
            "title": "Reason",
            "description": "stable upper-snake identifier, e.g. ORDER_NOT_FOUND",
        },
        "message": {"type": "string", "title": "Message"},
        "metadata": {
            "type": "object",
            "title": "Metadata",
            "additionalProperties": {"type": "string"},
        },
    },
    "required": ["code", "reason", "message", "metadata"],
    "additionalProperties": False,
}

_SCHEMA_NAME = "Error"
_FALLBACK_NAME = "FrameworkError"
_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

#: (kind, operation) -> {status: description} declared by the server's middleware.
Declared = Callable[[str, str], Mapping[int, str]]


def error_responses(errors: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each error status with its description and the
    framework's error body, e.g. ``error_responses({404: "ORDER_NOT_FOUND: no such order"})``.

    Raises:
        ValueError: a status below 400 (not an error).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status, description in errors.items():
        if status < 400:
            raise ValueError(f"error_responses: {status} is not an error status (>= 400)")
        out[status] = {"description": description}
    return out


def document_errors(
    document: dict[str, Any],
    routes: Iterable[Any],
    *,
    max_body_size: int | None,
    declared: Declared,
) -> dict[str, Any]:
    """Rewrite ``document`` (FastAPI's ``app.openapi()`` output) in place, as the module
    docstring says, and return it. ``routes`` are the app's routes, ``declared`` gives the
    middleware's errors for an operation."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    name = _schema_name(components)
    ref = {"$ref": f"#/components/schemas/{name}"}
    by_operation = {
        (method.lower(), route.path_format): route
        for route in routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    used = False
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            route = by_operation.get((method, path))
            errors = _errors_of(operation, route, method.upper(), path, max_body_size, declared)
            responses = operation.setdefault("responses", {})
            for status, description in sorted(errors.items()):
                responses.setdefault(str(status), {"description": description})
            for status, response in responses.items():
                if _is_error(status) and not response.get("content"):
                    response["content"] = {"application/json": {"schema": dict(ref)}}
                    used = True
    if used:
        components[name] = ERROR_SCHEMA
    _drop_unreferenced(document, components, _FASTAPI_SCHEMAS)
    if not components:
        del document["components"]["schemas"]
        if not document["components"]:
            del document["components"]
    return document


def _errors_of(
    operation: dict[str, Any],
    route: APIRoute | None,
    method: str,
    path: str,
    max_body_size: int | None,
    declared: Declared,
) -> dict[int, str]:
    responses = operation.get("responses", {})
    errors: dict[int, str] = {}
    validation = responses.pop("422", None)
    if validation is not None:
        errors[400] = f"{VALIDATOR}: the parameters or the body do not validate"
    if max_body_size is not None:
        errors[413] = f"{PAYLOAD_TOO_LARGE}: the body is larger than {max_body_size} bytes"
    if route is not None and takes_json_body(route):
        errors[415] = f"{UNSUPPORTED_MEDIA_TYPE}: the body is not application/json"
    if route is not None:
        for status, description in declared("http", f"{method} {path}").items():
            errors.setdefault(status, description)
    errors.setdefault(500, f"{INTERNAL_ERROR}: the handler failed")
    return errors


def _is_error(status: str) -> bool:
    return (status.isdigit() and int(status) >= 400) or status.upper() in ("4XX", "5XX")


def _schema_name(components: Mapping[str, Any]) -> str:
    """``Error``, unless the application has a schema of its own by that name."""
    existing = components.get(_SCHEMA_NAME)
    return _SCHEMA_NAME if existing in (None, ERROR_SCHEMA) else _FALLBACK_NAME


def _drop_unreferenced(
    document: dict[str, Any], components: dict[str, Any], names: Iterable[str]
) -> None:
    for name in names:  # in order: a schema the previous one referred to may go too
        if name in components and f'"#/components/schemas/{name}"' not in json.dumps(document):
            del components[name]
