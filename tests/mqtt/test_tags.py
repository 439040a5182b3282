"""Tags on MQTT are topic levels, so the server filters: a tagged subscriber's session never
receives a message of another tag (the processor here filters nothing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from framework.broker import Message, SubscriberSpec
from framework.broker.tags import TAG_HEADER
from framework.transport.mqtt import MqttBroker
from framework.transport.mqtt.options import (
    SubscriberFilter,
    split_tag,
    tagged_topic,
)
from tests.broker.helpers import RawProcessor

pytestmark = pytest.mark.mqtt


async def _nothing(message: Message) -> None: ...


def test_tag_levels_round_trip() -> None:
    assert tagged_topic("a/b", "paid") == "a/b/~tag/paid"
    assert tagged_topic("a/b", None) == "a/b"
    assert split_tag("a/b/~tag/paid") == ("a/b", "paid")
    assert split_tag("a/b") == ("a/b", None)
    assert split_tag("a/~tag/paid/more") == ("a/~tag/paid/more", None)


def test_filters_per_tag_or_topic_and_tag_levels() -> None:
    tagged = SubscriberFilter("o/+", "g", 1, tags=("new", "paid"))
    assert tagged.subscriptions == ("$share/g/o/+/~tag/new", "$share/g/o/+/~tag/paid")
    assert SubscriberFilter("o", None, 1).subscriptions == ("o", "o/~tag/+")
    # '#' already covers the tag levels (and nothing may follow it): the framework filters.
    assert SubscriberFilter("o/#", "g", 1, tags=("a",)).subscriptions == ("$share/g/o/#",)
    assert tagged.subscription == "$share/g/o/+"  # the session's name stays as declared


async def test_a_tagged_session_gets_only_its_tags(
    url: str, unique: Callable[[str], str], publisher: MqttBroker
) -> None:
    topic = unique("tags")
    broker = MqttBroker(url)
    await broker.connect()
    try:
        tagged = RawProcessor(
            SubscriberSpec(topic, _nothing, group="tagged", tags=frozenset({"paid"}))
        )
        untagged = RawProcessor(SubscriberSpec(topic, _nothing, group="all"))
        await broker.subscribe(tagged.spec, tagged)
        await broker.subscribe(untagged.spec, untagged)
        sent = [(b"1", "created"), (b"2", None), (b"3", "paid")]
        for body, tag in sent:
            result = await publisher.publish(topic, body, tag=tag)
            assert result.topic == tagged_topic(topic, tag)
        [got] = await tagged.seen.wait(1)
        assert (got.body, got.topic, got.headers[TAG_HEADER]) == (b"3", topic, "paid")
        everything = await untagged.seen.wait(3)
        assert sorted((m.body, m.headers.get(TAG_HEADER)) for m in everything) == sorted(
            sent, key=lambda item: item[0]
        )
        assert {m.topic for m in everything} == {topic}
        assert tagged.seen.items == [got]
    finally:
        await broker.close()
