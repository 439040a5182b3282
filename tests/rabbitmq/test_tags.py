"""Tags on a real RabbitMQ are filtered by the server: a tagged subscriber's queue never
holds a message of another tag (the processor here filters nothing, so it sees exactly what
the queue got). In a private virtual host: the tag exchanges go with it."""

from __future__ import annotations

import pytest

from framework.broker import Message, SubscriberSpec
from framework.broker.tags import TAG_HEADER
from framework.transport.rabbitmq import RabbitBroker, UnroutableError
from framework.transport.rabbitmq.headers import TAG_ARG
from framework.transport.rabbitmq.options import resolve_topology
from tests.broker.helpers import RawProcessor

pytestmark = pytest.mark.rabbitmq


async def _nothing(message: Message) -> None: ...


async def test_the_queue_of_a_tagged_subscriber_gets_only_its_tags(
    vhost_url: tuple[str, str],
) -> None:
    _, url = vhost_url
    broker = RabbitBroker(url, connection_name="tags-test")
    await broker.connect()
    try:
        tagged = RawProcessor(
            SubscriberSpec("orders", _nothing, group="tagged", tags=frozenset({"paid", "new"}))
        )
        untagged = RawProcessor(SubscriberSpec("orders", _nothing, group="all"))
        await broker.subscribe(tagged.spec, tagged)
        await broker.subscribe(untagged.spec, untagged)
        sent = [(b"1", "created"), (b"2", None), (b"3", "paid"), (b"4", "new"), (b"5", "paid")]
        for body, tag in sent:
            await broker.publish("orders", body, tag=tag)
        # Mandatory publishing (the default): a tag no queue takes is refused, as an
        # untagged message no queue takes is.
        solo = RawProcessor(
            SubscriberSpec("solo", _nothing, group="solo", tags=frozenset({"paid"}))
        )
        await broker.subscribe(solo.spec, solo)
        with pytest.raises(UnroutableError):
            await broker.publish("solo", b"x", tag="created")
        await broker.publish("solo", b"y", tag="paid")
        assert [m.body for m in await solo.seen.wait(1)] == [b"y"]
        # A delayed message waits in a delay bucket, then is routed by its tag like any other.
        await broker.publish("solo", b"late-other", tag="created", delay=0.1)
        await broker.publish("solo", b"late", tag="paid", delay=0.2)
        assert [m.body for m in await solo.seen.wait(2)] == [b"y", b"late"]
        got = await tagged.seen.wait(3)
        assert [(m.body, m.headers.get(TAG_HEADER)) for m in got] == [
            (b"3", "paid"),
            (b"4", "new"),
            (b"5", "paid"),
        ]
        everything = await untagged.seen.wait(5)
        assert [(m.body, m.headers.get(TAG_HEADER)) for m in everything] == sent
        # The routing copy of the tag is internal: not among the handler's headers.
        assert all(TAG_ARG not in m.headers for m in everything)
    finally:
        await broker.close()


def test_subscribers_binding_other_keys_get_other_tag_exchanges() -> None:
    def topology(topic: str, **options: object) -> str | None:
        spec = SubscriberSpec(topic, _nothing, tags=frozenset({"a"}), options=options)
        return resolve_topology(
            spec,
            default_exchange="pykratos",
            default_exchange_type="topic",
            default_prefetch=10,
            dead_letter_exchange="dlx",
            instance_id="i",
        ).tag_exchange

    assert topology("orders") == "pykratos.tags.pykratos.orders"
    assert topology("orders") != topology("orders.*")
    assert topology("orders", exchange="other") != topology("orders")
    untagged = SubscriberSpec("orders", _nothing)
    assert (
        resolve_topology(
            untagged,
            default_exchange="pykratos",
            default_exchange_type="topic",
            default_prefetch=10,
            dead_letter_exchange="dlx",
            instance_id="i",
        ).tag_exchange
        is None
    )
