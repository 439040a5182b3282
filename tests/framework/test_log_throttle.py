"""LogThrottle (issue 8 item 8): one line per interval, with the count of those left out."""

from __future__ import annotations

import pytest

from framework.log_throttle import LogThrottle


def test_admits_one_event_per_interval_and_counts_the_rest() -> None:
    now = [100.0]
    throttle = LogThrottle(60.0, clock=lambda: now[0])
    assert throttle.admit() == 0
    assert [throttle.admit() for _ in range(5)] == [None] * 5
    now[0] += 59.9
    assert throttle.admit() is None
    now[0] += 0.1
    assert throttle.admit() == 6  # reported on the next admitted line
    assert throttle.admit() is None
    now[0] += 600
    assert throttle.admit() == 1


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LogThrottle(0)
