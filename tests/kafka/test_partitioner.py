"""The Kafka partitioner: byte-compatible with the Java client's murmur2 partitioner.

The expected values are not taken from the code under test. The hashes come from a separate
transcription of ``org.apache.kafka.common.utils.Utils.murmur2`` written here with Java's
32-bit int arithmetic (:func:`java_murmur2`), checked first against the values Kafka's own
``UtilsTest.testMurmur2`` publishes; the partitions are the Java client's
``toPositive(murmur2(key)) % numPartitions`` of those hashes, written out as literals so that a
change of either implementation shows.
"""

from __future__ import annotations

import random

import pytest

from framework.transport.kafka.options import KafkaOptions
from framework.transport.kafka.partitioner import (
    Partitioner,
    key_partition,
    murmur2,
    resolve_partitioner,
)

#: Kafka's UtilsTest.testMurmur2 (signed 32-bit results, as Java returns them).
KAFKA_UTILS_TEST = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}

PARTITION_COUNTS = (3, 7, 12)
#: key, murmur2(key), partition among 3, 7 and 12 partitions (Java client's default).
VECTORS = [
    (b"", 275646681, (0, 2, 9)),
    (b"a", -1563381124, (1, 5, 4)),
    (b"ab", 316155434, (2, 0, 2)),
    (b"abc", 479470107, (0, 4, 3)),
    (b"21", -973932308, (0, 3, 0)),
    (b"foobar", -790332482, (0, 0, 6)),
    (b"order-1", 1221710326, (1, 4, 10)),
    (b"order-2", -1055499005, (0, 1, 3)),
    (b"order-42", 501153024, (0, 1, 0)),
    (b"user:1001", -1961883735, (2, 2, 5)),
    (b"user:1002", -89370879, (2, 6, 5)),
    (b"customer-\xc3\xa9", -1223684569, (1, 0, 7)),
    (b"\xe6\x9d\xb1\xe4\xba\xac", -1368386005, (1, 2, 7)),
    (b"\x00", 375494588, (2, 0, 8)),
    (b"\xff\xff\xff\xff", 644171429, (2, 6, 5)),
    (b"\x00\x01\x02\x03\x04", -1916494074, (2, 4, 2)),
    (b"a-little-bit-long-string", -985981536, (2, 1, 8)),
    (b"a-little-bit-longer-string", -1486304829, (2, 0, 11)),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, (2, 3, 5)),
    (b"12345678", 338742798, (0, 2, 6)),
    (b"0", 971027396, (2, 3, 8)),
    (b"key", -1079937367, (1, 4, 1)),
    (b"test", 716234879, (2, 3, 11)),
    (b"payment-success", -1087930441, (1, 6, 7)),
    (b"The quick brown fox jumps over the lazy dog", 495243318, (0, 3, 6)),
]


def _java_int(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _unsigned_shift(value: int, bits: int) -> int:  # Java's >>> on an int
    return (value & 0xFFFFFFFF) >> bits


def java_murmur2(data: bytes) -> int:
    """``Utils.murmur2`` of the Java client, step by step with int overflow."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = _java_int(_java_int(0x9747B28C) ^ length)
    for i in range(0, length - length % 4, 4):
        k = _java_int(data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24)
        k = _java_int(k * m)
        k = _java_int(k ^ _unsigned_shift(k, r))
        k = _java_int(k * m)
        h = _java_int(_java_int(h * m) ^ k)
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h = _java_int(h ^ data[tail + 2] << 16)
    if rest >= 2:
        h = _java_int(h ^ data[tail + 1] << 8)
    if rest >= 1:
        h = _java_int(_java_int(h ^ data[tail]) * m)
    h = _java_int(h ^ _unsigned_shift(h, 13))
    h = _java_int(h * m)
    return _java_int(h ^ _unsigned_shift(h, 15))


def test_the_reference_transcription_matches_kafkas_published_hashes() -> None:
    for key, expected in KAFKA_UTILS_TEST.items():
        assert java_murmur2(key) == expected, key


def test_murmur2_matches_kafkas_published_hashes() -> None:
    for key, expected in KAFKA_UTILS_TEST.items():
        assert murmur2(key) == expected, key


@pytest.mark.parametrize(("key", "hashed", "partitions"), VECTORS)
def test_a_key_goes_where_the_java_client_puts_it(
    key: bytes, hashed: int, partitions: tuple[int, int, int]
) -> None:
    assert java_murmur2(key) == hashed  # the vector itself is right
    assert murmur2(key) == hashed
    partitioner = Partitioner()
    for count, expected in zip(PARTITION_COUNTS, partitions, strict=True):
        assert (java_murmur2(key) & 0x7FFFFFFF) % count == expected
        assert key_partition(key, count) == expected
        assert partitioner.partition("t", key, list(range(count))) == expected


def test_enough_vectors() -> None:
    assert len(VECTORS) >= 20 and len({v[0] for v in VECTORS}) == len(VECTORS)


def test_random_keys_agree_with_the_reference() -> None:
    rng = random.Random(14)
    for _ in range(500):
        key = rng.randbytes(rng.randrange(0, 40))
        assert murmur2(key) == java_murmur2(key), key


def test_keyless_round_robin_is_per_topic_and_random_spreads() -> None:
    partitioner = Partitioner()
    assert [partitioner.partition("a", None, [0, 1, 2]) for _ in range(4)] == [0, 1, 2, 0]
    assert partitioner.partition("b", None, [0, 1, 2]) == 0  # its own turn
    spread = Partitioner(keyless="random", rng=random.Random(1))
    chosen = {spread.partition("a", None, [0, 1, 2, 3]) for _ in range(200)}
    assert chosen == {0, 1, 2, 3}


def test_a_chunk_keeps_keyed_messages_on_their_partition_and_keyless_on_one() -> None:
    partitioner = Partitioner()
    first = partitioner.for_chunk("t", [0, 1, 2])
    second = partitioner.for_chunk("t", [0, 1, 2])
    assert first(b"foobar") == second(b"foobar") == key_partition(b"foobar", 3)
    assert first(None) == first(None) != second(None)


def test_a_custom_partitioner_decides_every_message_and_is_checked() -> None:
    seen: list[tuple[bytes | None, list[int]]] = []

    def last(key: bytes | None, partitions: object) -> int:
        seen.append((key, list(partitions)))  # type: ignore[call-overload]
        return list(partitions)[-1]  # type: ignore[call-overload]

    partitioner = Partitioner(last)
    assert partitioner.partition("t", b"k", [0, 1, 2]) == 2
    assert partitioner.partition("t", None, [0, 1, 2]) == 2
    assert seen == [(b"k", [0, 1, 2]), (None, [0, 1, 2])]
    wrong = Partitioner(lambda key, partitions: 9)
    with pytest.raises(ValueError, match=r"returned 9 for topic 't', whose partitions are"):
        wrong.partition("t", b"k", [0, 1, 2])


def to_last(key: bytes | None, partitions: list[int]) -> int:
    """A custom partitioner named by import path in the test below."""
    return partitions[-1]


def test_a_custom_partitioner_from_config_is_an_import_path() -> None:
    assert resolve_partitioner(f"{__name__}:to_last") is to_last
    assert resolve_partitioner("murmur2") is None
    with pytest.raises(ValueError, match="cannot be imported"):
        KafkaOptions(partitioner=f"{__name__}:missing")
    with pytest.raises(ValueError, match="partitioner must be 'murmur2', a callable"):
        KafkaOptions(partitioner="crc32")
    with pytest.raises(ValueError, match="keyless_partitioning must be one of"):
        KafkaOptions(keyless_partitioning="sticky")  # type: ignore[arg-type]


def test_acks_spellings() -> None:
    assert [KafkaOptions(acks=a).acks_level for a in ("all", -1, "-1", "leader", 1)] == [
        "all",
        "all",
        "all",
        "leader",
        "leader",
    ]
    assert KafkaOptions(acks="none").acks_level == KafkaOptions(acks=0).acks_level == "none"
    with pytest.raises(ValueError, match="acks must be one of none, leader, all"):
        KafkaOptions(acks="some")
