"""A JSON body must come as JSON: other media types get 415, not a misleading 400.

FastAPI parses a body as JSON when the request says ``application/json`` (or a ``+json``
type), or says nothing on a route with ``strict_content_type=False`` (FastAPI versions
before that option always did), and otherwise hands the raw bytes to validation, which then
reports ``body: Input should be a valid dictionary`` for a perfectly good ``text/plain`` or
form body. :func:`check_media_type` refuses such a request first with 415
``UNSUPPORTED_MEDIA_TYPE``, naming the type received and the one expected (RFC 9110 15.5.16).
Routes whose body is a form or a file (``Form()``, ``File()``) are not JSON routes and are
left alone.
"""

from __future__ import annotations

from typing import Any

from fastapi import params
from fastapi.routing import APIRoute

from framework.errors import Error

__all__ = ["UNSUPPORTED_MEDIA_TYPE", "check_media_type", "strict_content_type", "takes_json_body"]

#: Reason of the 415 for a JSON route's body sent as another media type.
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"


def takes_json_body(route: APIRoute) -> bool:
    """The route has a body and FastAPI reads it as JSON (not a form or a file)."""
    field = route.body_field
    if field is None:
        return False
    return not isinstance(getattr(field, "field_info", None), params.Form)


def strict_content_type(route: APIRoute) -> bool:
    """FastAPI's ``strict_content_type`` of the route: a body without ``Content-Type`` is
    then not read as JSON (``False`` on FastAPI versions without the option)."""
    value = getattr(route, "strict_content_type", False)
    return bool(getattr(value, "value", value))


def _is_json(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or (
        essence.startswith("application/") and essence.endswith("+json")
    )


def check_media_type(headers: Any, body: bytes, *, strict: bool) -> None:
    """Raise 415 ``UNSUPPORTED_MEDIA_TYPE`` when a non-empty body is not said to be JSON.

    ``headers``: the request's headers (a ``Headers`` mapping). ``strict``: the route's
    :func:`strict_content_type`; when false, a body without ``Content-Type`` is JSON.
    """
    media_type = headers.get("content-type")
    if not body or (media_type and _is_json(media_type)) or (not media_type and not strict):
        return
    what = repr(media_type.split(";", 1)[0].strip()[:100]) if media_type else "not typed"
    raise Error(
        415,
        UNSUPPORTED_MEDIA_TYPE,
        f"the body is {what} (Content-Type); this operation takes application/json",
        {"accepted": "application/json"},
    )
