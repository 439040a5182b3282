"""One text form for instants on every transport: RFC 3339 in UTC with a ``Z`` suffix.

``2025-03-01T12:00:00.250000Z`` over HTTP (pydantic's JSON), gRPC (a ``string`` field), a
WebSocket push and a broker event alike, so a client comparing or parsing timestamps sees one
format whichever way the data came. Use :func:`rfc3339` where a string is built by hand
(protobuf messages, dict payloads) and :data:`Timestamp` as the field type of pydantic models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer

__all__ = ["Timestamp", "rfc3339"]


def rfc3339(instant: datetime) -> str:
    """``instant`` in UTC as RFC 3339 with ``Z``: ``2025-03-01T12:00:00Z``, plus
    ``.ffffff`` when it has microseconds (the form pydantic writes for UTC datetimes).

    A naive datetime is taken to be UTC already (SQLite, for one, returns stored UTC values
    without their zone); an aware one is converted.
    """
    utc = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


#: A ``datetime`` field serialised by :func:`rfc3339` in JSON (validation is pydantic's).
Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
