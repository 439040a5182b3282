"""The gap-aware ack batching, against a channel that records the frames it is asked to send.

The recorder stands in for the AMQP channel only to observe *which* acks the Acker decides to
send; the acks' effect on a real broker is covered by the RabbitMQ tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from framework.transport.rabbitmq.acker import Acker


class RecordingChannel:
    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []
        self.is_closed = False

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.acks.append((tag, multiple))


def make(batch: int = 4, interval: float = 60.0) -> tuple[Acker, RecordingChannel]:
    channel = RecordingChannel()
    acker: Any = Acker(channel, batch=batch, interval=interval)  # type: ignore[arg-type]
    return acker, channel


async def test_in_order_finishes_are_acked_with_one_multiple_ack_per_batch() -> None:
    acker, channel = make(batch=4)
    due = []
    for tag in range(1, 10):
        due.append(acker.finished(tag))
        if due[-1]:
            await acker.flush()
    assert due == [False, False, False, True, False, False, False, True, False]
    assert channel.acks == [(4, True), (8, True)]
    assert acker.pending == 1
    await acker.close()
    assert channel.acks[-1] == (9, True)


async def test_never_acks_past_an_unfinished_delivery() -> None:
    acker, channel = make(batch=100)
    for tag in (1, 2, 4, 5):  # 3 is still being handled
        acker.finished(tag)
    await acker.flush()
    assert channel.acks == [(2, True)]
    acker.finished(3)
    await acker.flush()
    assert channel.acks == [(2, True), (5, True)]


async def test_finished_deliveries_behind_a_slow_one_are_acked_individually_on_timer_flush() -> (
    None
):
    acker, channel = make(batch=100)
    for tag in (2, 3):
        acker.finished(tag)
    await acker.flush(everything=True)  # what the timer and stop do
    assert channel.acks == [(2, False), (3, False)]
    acker.finished(1)
    await acker.flush()
    # 2 and 3 are settled already: the multiple ack must name an unsettled tag (1).
    assert channel.acks[-1] == (1, True)
    acker.finished(4)
    await acker.flush()
    assert channel.acks[-1] == (4, True)


async def test_settled_tags_are_never_acked_again() -> None:
    acker, channel = make(batch=100)
    acker.settled(1)  # e.g. nacked back to the queue
    acker.settled(2)
    await acker.flush(everything=True)
    assert channel.acks == []
    acker.finished(3)
    await acker.flush()
    assert channel.acks == [(3, True)]


async def test_timer_flushes_a_partial_batch() -> None:
    acker, channel = make(batch=100, interval=0.01)
    acked = asyncio.Event()
    record = channel.basic_ack

    async def basic_ack(tag: int, multiple: bool = False, wait: bool = True) -> None:
        await record(tag, multiple, wait)
        acked.set()

    channel.basic_ack = basic_ack  # type: ignore[method-assign]
    acker.finished(1)
    async with asyncio.timeout(2):
        await acked.wait()
    assert channel.acks == [(1, True)]
    await acker.close()


async def test_deliveries_left_behind_a_gap_by_a_batch_flush_are_acked_on_the_timer() -> None:
    acker, channel = make(batch=4, interval=0.01)
    acked = asyncio.Event()
    record = channel.basic_ack

    async def basic_ack(tag: int, multiple: bool = False, wait: bool = True) -> None:
        await record(tag, multiple, wait)
        if tag == 5:
            acked.set()

    channel.basic_ack = basic_ack  # type: ignore[method-assign]
    due = [acker.finished(tag) for tag in (1, 2, 4, 5)]  # 3 is still being handled
    assert due == [False, False, False, True]
    await acker.flush()
    assert channel.acks == [(2, True)]
    async with asyncio.timeout(2):  # no other delivery finishes: the timer must still run
        await acked.wait()
    assert channel.acks == [(2, True), (4, False), (5, False)]
    await acker.close()


async def test_acks_on_a_closed_channel_are_dropped_quietly() -> None:
    acker, channel = make()

    async def closed(tag: int, multiple: bool = False, wait: bool = True) -> None:
        from aiormq.exceptions import ChannelInvalidStateError

        raise ChannelInvalidStateError("closed")

    channel.basic_ack = closed  # type: ignore[method-assign]
    acker.finished(1)
    await acker.close()  # must not raise: the broker redelivers those deliveries
