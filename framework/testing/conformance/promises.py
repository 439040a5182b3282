"""The ONE list of broker promises: each is one test of :class:`BrokerConformance` and one
row of the README's broker x promise table.

Plain data, no pytest: :mod:`framework.testing.conformance.table` renders the table from it
and :mod:`framework.testing.conformance.suite` checks that every promise has exactly one test.
The README's "Broker conformance" section shows the resulting table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROMISES", "PROMISE_IDS", "Promise", "promise"]


@dataclass(frozen=True, slots=True)
class Promise:
    """One promise every broker keeps (or declares, with a reason, that it cannot).

    Attributes:
        id: stable identifier, used in ``expected_failures`` / ``not_applicable`` and as the
            suffix of the test's name (``test_<id>``).
        title: the README row label.
        detail: what the test checks, in one or two sentences.
    """

    id: str
    title: str
    detail: str


PROMISES: tuple[Promise, ...] = (
    Promise(
        "group_split",
        "a group splits the messages",
        "Two members of one consumer group both get messages; once the group is settled each "
        "message goes to exactly one of them.",
    ),
    Promise(
        "groups_fan_out",
        "two groups each get everything",
        "Two groups subscribed to one topic each get every message exactly once.",
    ),
    Promise(
        "broadcast",
        "broadcast",
        "A subscriber without a group (broadcast=True) on each of two instances: every "
        "instance gets every message published after it subscribed.",
    ),
    Promise(
        "key_order",
        "per-key order under concurrency",
        "concurrency=4 with several keys: handlers overlap, yet each key's messages are "
        "handled in publish order.",
    ),
    Promise(
        "retry_backoff",
        "retry count and backoff",
        "A failing handler runs exactly max_attempts times (Message.attempt 1, 2, 3) with at "
        "least the policy's backoff between attempts, then stops.",
    ),
    Promise(
        "dead_letter",
        "dead letter with the reason headers",
        "After the last attempt the message reaches the topic's dead-letter topic "
        "(<topic>.dlq; MQTT: <topic>/dlq) with its body, key and headers and x-dlq-reason, "
        "x-dlq-error-type, x-original-topic, x-attempts.",
    ),
    Promise(
        "undecodable",
        "undecodable -> dead letter at once",
        "A body the handler's type cannot decode goes to the DLQ with a 'decode: ' reason "
        "and x-attempts 1 (no retries); the next message is handled.",
    ),
    Promise(
        "crashed_consumer",
        "at-least-once across a crashed consumer",
        "A consumer that dies in the middle of its handlers, without acking: restarted as "
        "the same instance and subscriber, the group gets those messages again.",
    ),
    Promise(
        "graceful_stop",
        "graceful stop finishes or returns in-flight work",
        "stop() during a backlog: every handler that started finishes, and what the stopped "
        "consumer did not finish reaches the next one; nothing lost, nothing twice.",
    ),
    Promise(
        "delay",
        "delay where supported",
        "publish(delay=1.0) is delivered no earlier than 1 s later; a broker without delays "
        "raises NotImplementedError rather than ignore it.",
    ),
    Promise(
        "bytes_exact",
        "headers and binary bodies byte-exact",
        "A binary body and headers (UTF-8 text, a non-UTF-8 value b'\\xc3\\x28', an empty "
        "one) arrive byte for byte, at the handler and in the dead letter; a header name or "
        "value that is not a str is refused with TypeError at publish.",
    ),
    Promise(
        "large_body",
        "a 1 MB body",
        "A 1,000,000-byte body is published, delivered and byte-identical.",
    ),
    Promise(
        "publish_confirm",
        "publish confirmation",
        "Once publish() returned (and the publisher's connection is dropped at once where "
        "the broker has one), a new consumer of the group gets every message.",
    ),
    Promise(
        "reconnect",
        "a consumer reconnects after the server drops it",
        "The broker server closes the consumer's connection; the consumer reconnects by "
        "itself and handles messages published afterwards.",
    ),
    # -- tags (issue 14, item 4) ----------------------------------------------------------
    Promise(
        "tags",
        "tag filtering",
        "publish(tag=) and subscriber(tags={...}): a subscriber with tags gets only those, one "
        "without gets every message; filtered-out messages neither block later ones nor come "
        "back to the group, and x-tag stays on retries and dead letters.",
    ),
    # -- delay and scheduled delivery (issue 14) ----------------------------------------------
    Promise(
        "deliver_at",
        "scheduled delivery (deliver_at)",
        "publish(deliver_at=now + 1 s) is delivered no earlier than that moment, a past "
        "deliver_at at once; a naive datetime, or delay and deliver_at together, raise "
        "ValueError; a broker without delays raises NotImplementedError.",
    ),
    Promise(
        "delay_outlives_publisher",
        "a delayed message outlives its publisher",
        "publish(delay=0.5) from a broker then closed, falling due while no broker of the "
        "test runs (no relay): a subscriber started afterwards still gets it.",
    ),
    # -- producer features (issue 14): partitions and acknowledgement levels ---------------
    Promise(
        "key_partition",
        "a key keeps its partition; partition= honoured",
        "Each key's messages land on one partition (the one publish returned) and arrive "
        "in publish order; publish(partition=n) lands on n, a partition the topic lacks is "
        "a ValueError. A broker without partitions raises NotImplementedError for "
        "partition= rather than ignore it.",
    ),
    Promise(
        "acks_levels",
        "acknowledgement levels none / leader / all",
        "A message published at each level the broker lists (with_acks) arrives; a level "
        "it does not list raises NotImplementedError; a fire-and-forget publish that fails "
        "raises or is reported (on_error, counted), never silent.",
    ),
    # -- batching publisher (issue 14, item 5) --------------------------------------------
    Promise(
        "batch_publish",
        "batching publisher",
        "broker.batch_publisher(chunk_size=16, max_pending=32): 200 keyed messages each get "
        "their own result, never more than 32 unresolved; a refused message in a chunk (its "
        "topic, or a header no encoding carries) fails alone; close() flushes a buffer no "
        "interval would send; each key arrives in order.",
    ),
)

PROMISE_IDS: frozenset[str] = frozenset(p.id for p in PROMISES)
_BY_ID = {p.id: p for p in PROMISES}


def promise(promise_id: str) -> Promise:
    """The promise named ``promise_id``; :class:`KeyError` listing the valid ids otherwise."""
    try:
        return _BY_ID[promise_id]
    except KeyError:
        raise KeyError(
            f"unknown promise {promise_id!r}; valid ids: {', '.join(p.id for p in PROMISES)}"
        ) from None
