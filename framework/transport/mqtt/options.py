"""Subscriber options understood by the MQTT broker and the subscription they resolve to.

``@router.subscriber(..., options={...})`` may carry these keys (anything else is an error:
``UnsupportedOptionError``, as on the other brokers):

``qos``
    Maximum QoS of the subscription: 0 (at most once: no acknowledgement, nothing
    redelivered), 1 (at least once, the default) or 2 (exactly once between client and
    server; see the README for what it means across a crash).

The topic is an MQTT topic filter: ``+`` matches one level, ``#`` the remaining levels
(MQTT 5 §4.7). Groups map to MQTT 5 shared subscriptions (§4.8.2):

* ``group="g"``: ``$share/g/<topic>``: the server hands each message to one member of
  the group; two groups on one topic each get every message;
* no group and not broadcast: the group is the handler's ``module.qualname`` (as on the
  other brokers: a subscription private to that handler, shared by its instances);
* ``broadcast=True``: a plain (non-shared) subscription: every instance gets every message.

Tags are topic levels: ``publish(topic, ..., tag="created")`` goes to
``<topic>/~tag/created`` (:func:`tagged_topic`), a subscriber with ``tags={"created"}``
subscribes to ``<topic>/~tag/created`` only, and one without tags to ``<topic>`` and
``<topic>/~tag/+``, so the server does the filtering. The reserved ``~tag`` level keeps
tagged messages apart from ordinary sub-topics. A received message's ``topic`` is the topic
without the tag levels, and its ``x-tag`` header holds the tag. A topic filter ending in
``#`` already covers the tag levels: with tags it is subscribed as is and the framework
filters (a ``/~tag/<tag>`` cannot follow ``#``). Order is kept per topic (MQTT 5 §4.6), so
per tag: a subscriber without tags gets each tag's messages in order, but tagged and
untagged ones of one key come on two topics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from framework.broker.options import check_options, option_choice
from framework.broker.signature import handler_name
from framework.broker.subscriber import SubscriberSpec
from framework.transport.mqtt.errors import TopicError

__all__ = [
    "KNOWN_OPTIONS",
    "QOS_LEVELS",
    "TAG_LEVEL",
    "SubscriberFilter",
    "check_topic_filter",
    "check_topic_name",
    "resolve_filter",
    "split_tag",
    "tagged_topic",
]

KNOWN_OPTIONS = frozenset({"qos"})
QOS_LEVELS = (0, 1, 2)
_MAX_TOPIC = 65535  # an MQTT UTF-8 string: two-byte length prefix (§1.5.4)
#: The topic level that announces a tag: ``<topic>/~tag/<tag>``.
TAG_LEVEL = "~tag"


def tagged_topic(topic: str, tag: str | None) -> str:
    """The topic a message of ``topic`` with ``tag`` is published to (``topic`` if untagged)."""
    return topic if tag is None else f"{topic}/{TAG_LEVEL}/{tag}"


def split_tag(topic: str) -> tuple[str, str | None]:
    """``(topic, tag)`` of a received topic: the inverse of :func:`tagged_topic`."""
    base, sep, tag = topic.rpartition(f"/{TAG_LEVEL}/")
    if not sep or not base or not tag or "/" in tag:
        return topic, None
    return base, tag


def _check_text(text: str, what: str) -> None:
    if not text:
        raise TopicError(f"{what} must not be empty (MQTT 5 §4.7.3)")
    if "\x00" in text:
        raise TopicError(f"{what} {text!r} must not contain U+0000 (MQTT 5 §1.5.4)")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise TopicError(f"{what} {text!r} is not valid UTF-8: {exc}") from None
    if size > _MAX_TOPIC:
        raise TopicError(f"{what} is {size} bytes; MQTT allows at most {_MAX_TOPIC}")


def check_topic_name(topic: str) -> None:
    """Raise :class:`TopicError` unless ``topic`` can be published to: no ``+``/``#``
    wildcard (MQTT 5 §4.7.1) and not a ``$`` server topic (§4.7.2)."""
    _check_text(topic, "topic")
    if "+" in topic or "#" in topic:
        raise TopicError(f"cannot publish to {topic!r}: wildcards are for subscriptions only")
    if topic.startswith("$"):
        raise TopicError(f"cannot publish to {topic!r}: topics starting with $ are the server's")


def check_topic_filter(topic: str) -> None:
    """Raise :class:`TopicError` unless ``topic`` is a valid filter: ``+`` and ``#`` fill
    a whole level, ``#`` only as the last one (MQTT 5 §4.7.1)."""
    _check_text(topic, "topic filter")
    levels = topic.split("/")
    for n, level in enumerate(levels):
        if ("+" in level or "#" in level) and len(level) != 1:
            raise TopicError(f"topic filter {topic!r}: a wildcard must fill a whole level")
        if level == "#" and n != len(levels) - 1:
            raise TopicError(f"topic filter {topic!r}: '#' must be the last level")


@dataclass(frozen=True, slots=True)
class SubscriberFilter:
    """What a subscription subscribes to, resolved from its spec and the broker defaults.

    Attributes:
        topic: the topic filter as the subscriber declared it.
        group: the shared-subscription group, ``None`` for a broadcast subscription.
        qos: the subscription's maximum QoS.
        owner: the subscriber's ``name``, else its handler's ``module.qualname``: two
            handlers with the same subscription get sessions of their own (one client id
            each); ``name=`` keeps a session across a renamed or moved handler.
    """

    topic: str
    group: str | None
    qos: int
    owner: str = ""
    tags: tuple[str, ...] = ()

    @property
    def subscription(self) -> str:
        """The subscription as declared: ``$share/<group>/<topic>`` or the bare filter (what
        names the session; :attr:`subscriptions` lists what goes in SUBSCRIBE)."""
        return self._shared(self.topic)

    @property
    def filters(self) -> tuple[str, ...]:
        """The topic filters that give this subscriber its messages (see the module
        docstring): one per tag, or the topic and its tag levels without tags."""
        if self.topic.endswith("#"):
            return (self.topic,)  # covers the tag levels already; tags filtered in process
        if self.tags:
            return tuple(tagged_topic(self.topic, tag) for tag in self.tags)
        return (self.topic, f"{self.topic}/{TAG_LEVEL}/+")

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """What goes in SUBSCRIBE: each of :attr:`filters`, shared with the group if any."""
        return tuple(self._shared(f) for f in self.filters)

    def _shared(self, topic_filter: str) -> str:
        return topic_filter if self.group is None else f"$share/{self.group}/{topic_filter}"

    def client_suffix(self) -> str:
        """A short digest of the subscription and its handler, to derive its session's client
        id: stable across restarts, distinct for every subscriber of one instance."""
        return hashlib.sha1(f"{self.subscription}|{self.owner}".encode()).hexdigest()[:10]


def _group_name(name: str) -> str:
    # A ShareName cannot contain '/', '+' or '#' (MQTT 5 §4.8.2); a handler's qualified
    # name may contain '<locals>' and dots, which are fine.
    return name.replace("/", "_").replace("+", "_").replace("#", "_")


def resolve_filter(spec: SubscriberSpec, *, default_qos: int) -> SubscriberFilter:
    """Validate ``spec`` (topic filter, options, group) and resolve its subscription."""
    check_options(spec, KNOWN_OPTIONS, "mqtt")  # UnsupportedOptionError, like the others
    qos = option_choice(spec, "qos", QOS_LEVELS, default_qos)
    check_topic_filter(spec.topic)
    if spec.topic.startswith("$share/"):
        raise TopicError(
            f"subscriber {spec.display_name}: give the group as group=, not as a $share/ topic"
        )
    if spec.broadcast:
        group = None
    else:
        raw = spec.group or handler_name(spec.handler)
        if spec.group is not None and any(c in spec.group for c in "/+#"):
            raise TopicError(
                f"subscriber {spec.display_name}: group {spec.group!r} cannot contain '/', '+' "
                "or '#' (an MQTT 5 shared-subscription name, §4.8.2)"
            )
        group = _group_name(raw)
    return SubscriberFilter(
        topic=spec.topic,
        group=group,
        qos=qos,
        owner=spec.name or handler_name(spec.handler),
        tags=tuple(sorted(spec.tags)),
    )
