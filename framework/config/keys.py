"""Messages for a key that a config section does not know: the valid names, and a guess.

Used for config models (:class:`~framework.config.model.ConfigModel`) and broker options
alike, so every misspelt key reads the same way wherever it is::

    unknown key 'prot' (did you mean 'port'?); valid: host, port, timeout
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

__all__ = [
    "UNKNOWN_KEY",
    "did_you_mean",
    "reraisable",
    "unknown_key_error",
    "unknown_key_message",
]

#: The pydantic error type of an unknown key (``error["type"]`` in a ValidationError).
UNKNOWN_KEY = "unknown_key"


def did_you_mean(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (case-insensitive), or ``None`` if none is close."""
    by_lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def unknown_key_message(name: str, valid: Iterable[str], *, what: str = "key") -> str:
    """``unknown <what> 'name' (did you mean 'x'?); valid: a, b, c``.

    Args:
        name: the key as the user wrote it.
        valid: the names accepted at that place.
        what: the noun for the key (``"key"``, ``"option"``).
    """
    names = sorted(valid)
    guess = did_you_mean(name, names)
    hint = f" (did you mean {guess!r}?)" if guess is not None else ""
    return f"unknown {what} {name!r}{hint}; valid: {', '.join(names) or '(none)'}"


def unknown_key_error(name: str, value: object, message: str) -> InitErrorDetails:
    """One line of a :class:`pydantic.ValidationError` for the unknown key ``name``, located
    at the key, for validators that raise ``ValidationError.from_exception_data(...)``;
    ``message`` usually comes from :func:`unknown_key_message`."""
    # No context is passed, so pydantic leaves braces in the message (a key like "{x}") alone.
    return InitErrorDetails(
        type=PydanticCustomError(UNKNOWN_KEY, message), loc=(name,), input=value
    )


def reraisable(error: ErrorDetails) -> InitErrorDetails:
    """``error`` (from ``ValidationError.errors()``) as a line of a new ValidationError, with
    the same type, location, input and message, for validators that add unknown-key lines to
    the other errors."""
    # A custom error of the same type and rendered message: the original context (which may
    # hold exception objects) is not needed once the message is rendered.
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], error["msg"]),
        loc=error["loc"],
        input=error.get("input"),
    )
