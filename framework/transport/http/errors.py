"""How the HTTP server turns exceptions into the structured error body."""

from __future__ import annotations

from http import HTTPStatus

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from framework.errors import PAYLOAD_TOO_LARGE, Error, from_exception
from framework.validation import VALIDATOR, describe_errors, excerpt

__all__ = [
    "CLIENT_CLOSED",
    "BodyTooLarge",
    "JsonResponse",
    "error_response",
    "to_error",
    "too_large",
]

#: Reason of the 499 for a client gone before its request body was read whole.
CLIENT_CLOSED = "CLIENT_CLOSED"


class JsonResponse(Response):
    """A JSON response serialised with orjson (FastAPI deprecated its own orjson class)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def too_large(limit: int) -> Error:
    """The 413 ``PAYLOAD_TOO_LARGE`` answered for a request body over ``limit`` bytes."""
    return Error(
        413,
        PAYLOAD_TOO_LARGE,
        f"request body is larger than the {limit} bytes this server accepts",
        {"limit": limit},
    )


class BodyTooLarge(StarletteHTTPException):
    """The request body passed the server's limit while being read.

    A Starlette ``HTTPException`` so that FastAPI's body parsing lets it through (it turns any
    other exception into a 400); :func:`to_error` gives its :attr:`error`.
    """

    def __init__(self, limit: int) -> None:
        self.error = too_large(limit)
        super().__init__(413, self.error.message)


# Reasons that differ from the status name (413's name also changed across Python versions).
_REASONS = {413: PAYLOAD_TOO_LARGE}


def _reason_for_status(code: int) -> str:
    if code in _REASONS:
        return _REASONS[code]
    try:
        return HTTPStatus(code).name
    except ValueError:
        return f"HTTP_{code}"


def to_error(exc: BaseException) -> Error:
    """Map FastAPI/Starlette exceptions and anything else to an :class:`Error`.

    Request validation failures become 400 ``VALIDATOR`` (the same reason the validate
    middleware uses); ``HTTPException(404)`` becomes 404 ``NOT_FOUND`` and so on, except 413,
    which is ``PAYLOAD_TOO_LARGE`` (the body limit's reason). A client gone while its body
    was read (starlette's ``ClientDisconnect``, also what a body timeout causes) is 499
    ``CLIENT_CLOSED``: the client's doing, not an internal error to log with its stack.
    """
    if isinstance(exc, Error):
        return exc
    if isinstance(exc, BodyTooLarge):
        return exc.error
    if isinstance(exc, ClientDisconnect):
        return Error(499, CLIENT_CLOSED, "the client closed the connection before its request "
                     "body was read")
    if isinstance(exc, RequestValidationError):
        # Field paths and messages only, each cut short: never the input, which FastAPI keeps.
        return Error(400, VALIDATOR, describe_errors(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        detail = excerpt(exc.detail)
        return Error(exc.status_code, _reason_for_status(exc.status_code), detail)
    return from_exception(exc)


def error_response(error: Error, headers: dict[str, str] | None = None) -> JsonResponse:
    """``{"code","reason","message","metadata"}`` with the error's status code."""
    return JsonResponse(error.to_dict(), status_code=error.code, headers=headers)
