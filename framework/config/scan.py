"""Typed scanning with pydantic; validation errors name the file (or env var) and the key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from framework.config.errors import ConfigError
from framework.config.keys import UNKNOWN_KEY
from framework.config.tree import SCALAR_TYPES, KeyPath, Origin, format_key, nearest_origin

__all__ = ["describe_validation_error", "validate"]

T = TypeVar("T")


def validate(target: type[T], value: Any, base: KeyPath, origins: Mapping[KeyPath, Origin]) -> T:
    """Validate ``value`` (found at ``base``) as ``target``: a pydantic model, dataclass,
    TypedDict or any type pydantic accepts. Raises :class:`ConfigError` on failure."""
    try:
        return TypeAdapter(target).validate_python(value)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, base, origins)) from exc


def describe_validation_error(
    exc: ValidationError, base: KeyPath, origins: Mapping[KeyPath, Origin]
) -> str:
    """One line per error: ``<origin>: <dotted key>: <message>[, got <input>]``.

    A missing key points at its parent's origin: that is where the key has to be added.
    """
    lines = [_describe(error, base, origins) for error in exc.errors(include_url=False)]
    return "\n".join(lines)


def _describe(error: ErrorDetails, base: KeyPath, origins: Mapping[KeyPath, Origin]) -> str:
    path = (*base, *error["loc"])
    message = error["msg"]
    value = error.get("input")
    # The value helps for a bad value, not for a missing or unknown key; and once is enough.
    shown = error["type"] in ("missing", UNKNOWN_KEY) or message.endswith(f"got {value!r}")
    if not shown and isinstance(value, SCALAR_TYPES):
        message += f", got {_redact(value)!r}"
    return f"{nearest_origin(origins, path)}: {format_key(path)}: {message}"


# ``scheme://user:secret@host``: the password part of a URL.
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]*@")


def _redact(value: Any) -> Any:
    """A URL's password is replaced by ``***``: config errors end up in logs."""
    return _URL_PASSWORD.sub(r"\1:***@", value) if isinstance(value, str) else value
