"""Tag promises: ``publish(tag=...)`` and ``subscriber(tags=...)`` (RocketMQ's tag filter)."""

from __future__ import annotations

from framework.broker.message import Message
from framework.broker.policy import DLQ_ATTEMPTS, RetryPolicy
from framework.broker.router import Router
from framework.broker.tags import TAG_HEADER
from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.harness import Harness

__all__ = ["TagPromises"]

#: (body, tag) in publish order, one key: filtered-out messages sit between wanted ones.
_SENT: tuple[tuple[bytes, str | None], ...] = (
    (b"c-1", "created"),
    (b"s-1", "shipped"),
    (b"u-1", None),
    (b"s-2", "shipped"),
    (b"p-1", "paid"),
    (b"u-2", None),
    (b"c-2", "created"),
    (b"s-3", "shipped"),
    (b"p-fail", "paid"),  # the tagged subscriber fails on it: retried, then dead-lettered
    (b"c-3", "created"),
)


class TagPromises(ConformanceBase):
    """Tag promises: a tag filter gets only its tags, no filter gets everything, filtered-out
    messages neither block the others nor come back, and the tag stays on retries and dead
    letters."""

    async def test_tags(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        tagged_group = harness.group("tagged")
        tagged, everything = harness.inbox(), harness.inbox()
        attempts: list[tuple[int, str | None]] = []
        router = Router()

        @router.subscriber(
            topic,
            group=tagged_group,
            tags={"created", "paid"},
            retry=RetryPolicy(max_attempts=2, backoff=0.05),
        )
        async def on_tagged(message: Message) -> None:
            if message.body == b"p-fail":
                attempts.append((message.attempt, message.headers.get(TAG_HEADER)))
                raise RuntimeError("fails: retried, then dead-lettered with its tag")
            tagged.add((message.body, message.headers.get(TAG_HEADER)))

        @router.subscriber(topic, group=harness.group("all"))
        async def on_any(message: Message) -> None:
            everything.add((message.body, message.headers.get(TAG_HEADER)))

        server = await harness.serve(router)
        publisher = await harness.publisher()
        for body, tag in _SENT:
            await publisher.publish(topic, body, key=b"one-key", tag=tag)

        wanted = [
            (body, tag) for body, tag in _SENT if tag in {"created", "paid"} and body != b"p-fail"
        ]
        # c-3 comes after every filtered-out message: they did not block it.
        await tagged.until(lambda items: set(wanted) <= set(items), "every created/paid message")
        await everything.count(len(_SENT), "every message at the subscriber without tags")
        [letter] = await dead.count(1, "the dead letter of p-fail")
        assert sorted(tagged.items) == sorted(wanted), "a tag filter let another tag through"
        assert sorted(everything.items) == sorted(_SENT), "the subscriber without tags missed"
        assert attempts == [(1, "paid"), (2, "paid")], f"retries lost the tag: {attempts}"
        assert letter.body == b"p-fail"
        assert letter.headers.get(TAG_HEADER) == "paid", letter.headers
        assert letter.headers[DLQ_ATTEMPTS] == "2"

        # Nothing filtered out is still pending for the tagged group: a member without tags
        # joining it after a graceful stop gets only what is published from then on.
        await server.stop(self.timeout)
        rest = harness.inbox()
        after = Router()

        @after.subscriber(topic, group=tagged_group)
        async def on_rest(message: Message) -> None:
            rest.add(message.body)

        await harness.serve(after, name="untagged-member")
        await publisher.publish(topic, b"last", key=b"one-key")
        await rest.until(lambda items: b"last" in items, "the message published last")
        assert rest.items == [b"last"], f"filtered-out messages came back: {rest.items}"
