"""Acknowledging received messages in the order they arrived, once each is finished.

With manual acknowledgement the PUBACK (QoS 1) / PUBCOMP (QoS 2) of a message is sent
only after its handler finished (or its dead letter was published). MQTT 5 §4.6 asks a
client to acknowledge in the order it received the PUBLISH packets, and with several
workers handlers finish out of order: a finished message is therefore acknowledged once
every message received before it on the same connection is finished too.

Packet ids belong to one network connection: deliveries of an earlier connection are
never acknowledged on a later one (the server resends them after the reconnect, with
their original ids, MQTT 5 §4.4, and they are handled again).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["AckQueue", "Delivery"]

#: ``ack(mid, qos, generation)``: send the acknowledgement on that connection, if current.
SendAck = Callable[[int, int, int], None]


class Delivery:
    """One received QoS 1/2 message waiting for its handler."""

    __slots__ = ("done", "generation", "lane", "mid", "qos")

    def __init__(self, mid: int, qos: int, generation: int, lane: deque[Delivery]) -> None:
        self.mid = mid
        self.qos = qos
        self.generation = generation
        self.lane = lane
        self.done = False


class AckQueue:
    """Deliveries in arrival order, per connection; see the module docstring."""

    def __init__(self, send: SendAck) -> None:
        self._send = send
        self._generation = -1
        self._lane: deque[Delivery] = deque()

    def received(self, mid: int, qos: int, generation: int) -> Delivery:
        """Record a delivery in arrival order."""
        if generation != self._generation:
            # A new connection: the old lane's deliveries can no longer be acknowledged.
            self._generation = generation
            self._lane = deque()
        delivery = Delivery(mid, qos, generation, self._lane)
        self._lane.append(delivery)
        return delivery

    def finished(self, delivery: Delivery) -> None:
        """Mark ``delivery`` finished; acknowledge it and every finished one after it once
        nothing received before them is still running."""
        delivery.done = True
        lane = delivery.lane
        send = self._send
        while lane and lane[0].done:
            first = lane.popleft()
            send(first.mid, first.qos, first.generation)

    @property
    def unfinished(self) -> int:
        """Deliveries of the current connection not acknowledged yet."""
        return len(self._lane)
