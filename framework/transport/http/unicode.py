"""Refuse JSON bodies that are valid JSON but not Unicode text (lone UTF-16 surrogates).

JSON's ``\\uXXXX`` escape can spell half of a surrogate pair (``"\\ud800"``); Python's parser
accepts it (RFC 8259 §8.2 leaves the behaviour open) and hands the handler a ``str`` that no
UTF-8 encoder accepts, so the reply, a log line or a database write fails later as a 500.
gRPC (protobuf strings must be UTF-8) and the WebSocket server (frames are decoded strictly)
already refuse such input; :func:`check_json_text` makes HTTP answer the same 400 before the
handler runs. The scan runs only on bodies that contain a ``\\u`` escape at all.
"""

from __future__ import annotations

import json
from typing import Any

from framework.errors import Error
from framework.validation import VALIDATOR

__all__ = ["check_json_text"]


def _first_surrogate(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_surrogate(key, path) or _first_surrogate(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_surrogate(item, f"{path}[{index}]")
            if found:
                return found
    return None


def check_json_text(body: bytes) -> None:
    """Raise a 400 ``VALIDATOR`` :class:`~framework.errors.Error` naming the first field whose
    string holds a lone surrogate. Bodies that are not JSON are left to the route's parser."""
    if b"\\u" not in body:
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return  # FastAPI answers its own 400 for invalid JSON
    where = _first_surrogate(parsed, "")
    if where is not None:
        raise Error(
            400,
            VALIDATOR,
            f"{where.lstrip('.') or 'body'}: string holds a lone UTF-16 surrogate escape, "
            "which is not Unicode text",
        )
