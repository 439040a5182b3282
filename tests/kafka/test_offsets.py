"""PartitionOffsets: a commit only ever reaches the lowest unfinished offset."""

from __future__ import annotations

import random

from framework.transport.kafka.offsets import PartitionOffsets


def test_nothing_tracked_has_nothing_to_commit() -> None:
    offsets = PartitionOffsets()
    assert offsets.committable is None
    assert offsets.to_commit() is None


def test_in_order_completion_advances_one_by_one() -> None:
    offsets = PartitionOffsets()
    offsets.track([10, 11, 12])
    assert offsets.committable == 10
    offsets.finish(10)
    assert offsets.committable == 11
    offsets.finish(11)
    offsets.finish(12)
    assert offsets.committable == 13
    assert offsets.outstanding == 0


def test_unfinished_message_holds_the_commit_back() -> None:
    offsets = PartitionOffsets()
    offsets.track(range(5))
    for offset in (1, 2, 3, 4):  # everything but 0 finished, out of order
        offsets.finish(offset)
    assert offsets.committable == 0  # never past the unfinished offset 0
    offsets.finish(0)
    assert offsets.committable == 5


def test_gaps_in_offsets_are_followed() -> None:
    offsets = PartitionOffsets()
    offsets.track([3, 7, 8])  # compacted log / transaction markers leave gaps
    offsets.finish(7)
    assert offsets.committable == 3
    offsets.finish(3)
    assert offsets.committable == 8
    offsets.finish(8)
    assert offsets.committable == 9


def test_to_commit_only_reports_progress() -> None:
    offsets = PartitionOffsets()
    offsets.track([0, 1])
    offsets.finish(0)
    assert offsets.to_commit() == 1
    offsets.committed = 1
    assert offsets.to_commit() is None
    offsets.finish(1)
    assert offsets.to_commit() == 2


def test_stale_offsets_are_refused() -> None:
    offsets = PartitionOffsets()
    offsets.track([0, 1, 2])
    assert not offsets.accepts(2)
    assert offsets.accepts(3)


def test_random_completion_order_matches_a_reference_model() -> None:
    rng = random.Random(7)
    offsets = PartitionOffsets()
    handed = list(range(0, 600, 2))  # even offsets only: gaps everywhere
    offsets.track(handed)
    unfinished = set(handed)
    order = handed[:]
    rng.shuffle(order)
    for offset in order:
        offsets.finish(offset)
        unfinished.discard(offset)
        expected = min(unfinished) if unfinished else handed[-1] + 1
        assert offsets.committable == expected
