"""InFlightOffsets (via the memory broker's Cursor): a commit never passes unfinished work."""

from __future__ import annotations

from framework.broker.memlog import Cursor, Partition, Record


def dispatched_cursor(count: int) -> Cursor:
    """A cursor of a one-group partition of ``count`` records, all handed to workers."""
    partition = Partition("t", 0)
    for i in range(count):
        partition.append(Record(b"x", None, {}, str(i), 0.0))
    cursor = Cursor(partition, 0)
    partition.cursors.append(cursor)
    for offset in range(count):
        cursor.dispatched(offset)
    return cursor


def test_finish_reports_whether_the_lowest_unfinished_offset_moved() -> None:
    cursor = dispatched_cursor(4)
    assert cursor.finish(2) is False  # out of order: 0 still holds the commit back
    assert cursor.finish(1) is False
    assert (cursor.committed, cursor.outstanding) == (0, 4)
    assert cursor.finish(0) is True  # 0, 1 and 2 are now contiguous
    assert (cursor.committed, cursor.outstanding) == (3, 1)
    assert cursor.finish(3) is True
    assert (cursor.committed, cursor.outstanding) == (4, 0)


def test_rewind_restarts_at_the_first_unfinished_offset_and_forgets_the_rest() -> None:
    cursor = dispatched_cursor(4)
    cursor.finish(0)
    cursor.finish(2)  # finished out of order, behind the unfinished 1
    cursor.rewind()
    assert (cursor.position, cursor.committed, cursor.outstanding) == (1, 1, 0)
    for offset in (1, 2, 3):  # delivered again
        cursor.dispatched(offset)
    assert cursor.finish(1) is True
    assert cursor.committed == 2  # the forgotten completion of 2 does not count
