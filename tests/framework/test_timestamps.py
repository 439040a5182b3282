"""Issue 8 item 26: one timestamp format, RFC 3339 in UTC with ``Z``, for every transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel

from framework.timestamps import Timestamp, rfc3339


def test_rfc3339_is_utc_with_z() -> None:
    assert rfc3339(datetime(2025, 3, 1, 12, 0, tzinfo=UTC)) == "2025-03-01T12:00:00Z"
    assert rfc3339(datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)) == (
        "2025-03-01T12:00:00.250000Z"
    )
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2025, 3, 1, 13, 0, tzinfo=paris)) == "2025-03-01T12:00:00Z"
    # Naive values are UTC already (SQLite gives them back so).
    assert rfc3339(datetime(2025, 3, 1, 12, 0)) == "2025-03-01T12:00:00Z"


def test_timestamp_field_writes_the_same_form_as_pydantic_and_as_rfc3339() -> None:
    class Event(BaseModel):
        at: Timestamp

    instant = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    plain = type("Plain", (BaseModel,), {"__annotations__": {"at": datetime}})
    assert Event(at=instant).model_dump_json() == plain(at=instant).model_dump_json()
    assert Event(at=instant).model_dump(mode="json") == {"at": rfc3339(instant)}
    paris = timezone(timedelta(hours=1))
    assert Event(at=instant.astimezone(paris)).model_dump(mode="json") == {"at": rfc3339(instant)}
