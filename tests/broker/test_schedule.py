"""The delay/deliver_at rules every broker's publish applies (framework.broker.schedule)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from framework.broker.schedule import due_ms, due_time, refuse_delay, remaining

NOW = 1_700_000_000.0


def test_delay_and_deliver_at_give_the_same_due_time() -> None:
    assert due_time(None, None, now=NOW) is None
    assert due_time(0, None, now=NOW) is None
    assert due_time(2.5, None, now=NOW) == NOW + 2.5
    at = datetime.fromtimestamp(NOW + 60, UTC).astimezone(timezone(timedelta(hours=-5)))
    assert due_time(None, at, now=NOW) == pytest.approx(NOW + 60)
    assert remaining(NOW + 60, now=NOW) == 60 and remaining(None) == 0.0


def test_a_moment_in_the_past_means_now() -> None:
    assert due_time(None, datetime.fromtimestamp(NOW - 1, UTC), now=NOW) is None


@pytest.mark.parametrize(
    ("delay", "deliver_at", "error", "match"),
    [
        (1.0, datetime.now(UTC), ValueError, "not both"),
        (None, datetime(2030, 1, 1), ValueError, "timezone-aware"),
        (-1.0, None, ValueError, ">= 0"),
        (math.nan, None, ValueError, "finite"),
        (math.inf, None, ValueError, "finite"),
        (True, None, TypeError, "number of seconds"),
        ("5", None, TypeError, "number of seconds"),
        (None, "2030-01-01T00:00:00Z", TypeError, "must be a datetime"),
    ],
)
def test_bad_arguments_are_refused(
    delay: object, deliver_at: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        due_time(delay, deliver_at)  # type: ignore[arg-type]


def test_a_broker_without_delays_refuses_any_request_and_checks_it_first() -> None:
    refuse_delay("mqtt", "t", None, None, "no delays")
    refuse_delay("mqtt", "t", 0, None, "no delays")
    with pytest.raises(NotImplementedError, match=r"mqtt broker cannot defer .*no delays"):
        refuse_delay("mqtt", "t", 1.0, None, "no delays")
    with pytest.raises(NotImplementedError, match="deliver_at="):
        refuse_delay("mqtt", "t", None, datetime.fromtimestamp(0, UTC), "no delays")
    with pytest.raises(ValueError, match="timezone-aware"):
        refuse_delay("mqtt", "t", None, datetime(2030, 1, 1), "no delays")


def test_due_milliseconds_round_up_so_nothing_is_released_early() -> None:
    assert due_ms(1.0001) == 1001
    assert due_ms(1.0) == 1000
