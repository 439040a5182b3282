"""Which partition a Kafka message goes to: by key, in turn, at random, by hand, or your way.

* A keyed message goes to ``toPositive(murmur2(key)) % partitions``: the Java client's
  default partitioner (``org.apache.kafka.clients.producer.internals.BuiltInPartitioner``,
  murmur2 with seed ``0x9747b28c``, ``toPositive`` = ``& 0x7fffffff``), byte for byte, so a
  pykratos producer, a Java producer, librdkafka's ``murmur2_random`` and Sarama's
  ``NewCustomHashPartitioner(murmur2)`` agree on where a key lives. (Sarama's and
  librdkafka's own defaults use other hashes: configure them to murmur2 to mix producers.)
* A keyless message goes to the next partition in turn (``"round_robin"``, per topic: even
  spread) or to a random one (``"random"``, aiokafka's default).
* ``publish(..., partition=n)`` overrides both (checked against the topic's partitions).
* A custom partitioner is any callable ``(key: bytes | None, partitions: Sequence[int]) ->
  int`` (the topic's partition ids, sorted); it decides for every message, keyless ones
  included (``key is None``), and must return one of ``partitions``. In configuration it is
  named by import path, ``"package.module:function"``.

:meth:`Partitioner.partition` serves ``KafkaBroker.publish``; :meth:`Partitioner.for_chunk`
serves the batching publisher, with the same choice for keyed messages (a key lands on the
same partition either way) and one keyless partition per chunk (fewer, larger batches).
"""

from __future__ import annotations

import importlib
import itertools
import random
from collections.abc import Callable, Sequence
from typing import Literal

from aiokafka.partitioner import murmur2 as _murmur2

__all__ = [
    "KeylessPartitioning",
    "Partitioner",
    "PartitionerFn",
    "key_partition",
    "murmur2",
    "resolve_partitioner",
]

#: A custom partitioner: ``(key, sorted partition ids) -> partition id``.
PartitionerFn = Callable[[bytes | None, Sequence[int]], int]
#: How keyless messages are spread: in turn per topic, or at random.
KeylessPartitioning = Literal["round_robin", "random"]

#: The name of the built-in, Java-compatible key hash (the default of ``partitioner``).
MURMUR2 = "murmur2"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as the Java client's ``Utils.murmur2`` returns it: a
    signed 32-bit int (``murmur2(b"21") == -973932308``, Kafka's ``UtilsTest``)."""
    unsigned: int = _murmur2(data)
    return unsigned - (1 << 32) if unsigned & 0x80000000 else unsigned


def key_partition(key: bytes, count: int) -> int:
    """The Java client's partition of ``key`` among ``count`` partitions:
    ``toPositive(murmur2(key)) % count``."""
    if count < 1:
        raise ValueError(f"a topic has at least one partition, got count={count}")
    return (murmur2(key) & 0x7FFFFFFF) % count


def resolve_partitioner(partitioner: str | PartitionerFn) -> PartitionerFn | None:
    """The custom callable ``partitioner`` names, or ``None`` for the built-in ``"murmur2"``.

    Raises:
        ValueError: a string that is neither ``"murmur2"`` nor an importable
            ``"module:attribute"`` naming a callable.
    """
    if callable(partitioner):
        return partitioner
    if partitioner == MURMUR2:
        return None
    module_name, colon, attribute = partitioner.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(
            f"partitioner must be {MURMUR2!r}, a callable, or an import path "
            f"'package.module:function', got {partitioner!r}"
        )
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"partitioner {partitioner!r} cannot be imported: {exc}") from exc
    if not callable(found):
        raise ValueError(f"partitioner {partitioner!r} is not callable: {found!r}")
    custom: PartitionerFn = found
    return custom


class Partitioner:
    """Chooses partitions (see the module docstring).

    Args:
        partitioner: ``"murmur2"`` (the default: hash of the key, Java-compatible), a
            callable ``(key, partitions) -> partition`` or its import path.
        keyless: ``"round_robin"`` or ``"random"``, for keyless messages with the built-in
            partitioner.
        rng: the random source of ``"random"`` (tests pass a seeded one).

    Raises:
        ValueError: an unknown ``keyless`` or ``partitioner`` (see :func:`resolve_partitioner`).
    """

    def __init__(
        self,
        partitioner: str | PartitionerFn = MURMUR2,
        *,
        keyless: KeylessPartitioning = "round_robin",
        rng: random.Random | None = None,
    ) -> None:
        if keyless not in ("round_robin", "random"):
            raise ValueError(f"keyless partitioning must be round_robin or random, got {keyless!r}")
        self.custom = resolve_partitioner(partitioner)
        self.keyless = keyless
        self._random = rng or random.Random()
        self._turns: dict[str, itertools.count[int]] = {}

    def partition(self, topic: str, key: bytes | None, partitions: Sequence[int]) -> int:
        """The partition of one message of ``topic`` (``partitions``: its ids, sorted).

        Raises:
            ValueError: a custom partitioner returned a partition the topic does not have.
        """
        if self.custom is not None:
            return self._checked(topic, self.custom(key, partitions), partitions)
        if key is None:
            return self.keyless_partition(topic, partitions)
        return partitions[key_partition(key, len(partitions))]

    def keyless_partition(self, topic: str, partitions: Sequence[int]) -> int:
        """The built-in choice for a keyless message of ``topic``: the next in turn or random."""
        if self.keyless == "random":
            return self._random.choice(partitions)
        turn = self._turns.get(topic)
        if turn is None:
            turn = self._turns[topic] = itertools.count()
        return partitions[next(turn) % len(partitions)]

    def for_chunk(self, topic: str, partitions: Sequence[int]) -> Callable[[bytes | None], int]:
        """``key -> partition`` for one chunk of the batching publisher: keyed messages as
        :meth:`partition`, keyless ones (built-in partitioner) all on one partition, the
        next in turn (or a random one) at each chunk."""
        if self.custom is not None:
            return lambda key: self.partition(topic, key, partitions)
        keyless: int | None = None

        def choose(key: bytes | None) -> int:
            nonlocal keyless
            if key is not None:
                return partitions[key_partition(key, len(partitions))]
            if keyless is None:
                keyless = self.keyless_partition(topic, partitions)
            return keyless

        return choose

    def _checked(self, topic: str, chosen: object, partitions: Sequence[int]) -> int:
        if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen not in partitions:
            raise ValueError(
                f"partitioner {self.custom!r} returned {chosen!r} for topic {topic!r}, whose "
                f"partitions are {list(partitions)}"
            )
        return chosen
