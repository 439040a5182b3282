"""How the HTTP server turns exceptions into the structured error body."""

from __future__ import annotations

from http import HTTPStatus

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from framework.errors import Error, from_exception
from framework.validation import VALIDATOR, describe_errors, excerpt

__all__ = ["JsonResponse", "error_response", "to_error"]


class JsonResponse(Response):
    """A JSON response serialised with orjson (FastAPI deprecated its own orjson class)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def _reason_for_status(code: int) -> str:
    try:
        return HTTPStatus(code).name
    except ValueError:
        return f"HTTP_{code}"


def to_error(exc: BaseException) -> Error:
    """Map FastAPI/Starlette exceptions and anything else to an :class:`Error`.

    Request validation failures become 400 ``VALIDATOR`` (the same reason the validate
    middleware uses); ``HTTPException(404)`` becomes 404 ``NOT_FOUND`` and so on.
    """
    if isinstance(exc, Error):
        return exc
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
