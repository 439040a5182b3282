"""Message tags (RocketMQ's tags): one label per message, filtered per subscriber.

``publish(topic, body, tag="created")`` labels a message; ``@router.subscriber(topic,
tags={"created", "paid"})`` receives only the messages of ``topic`` carrying one of those
tags, and a subscriber without ``tags`` receives every message, tagged or not (RocketMQ's
``*`` subscription expression). The tag travels in the :data:`TAG_HEADER` header on every
broker, so a handler reads it as ``message.tag`` (``message.headers["x-tag"]``), and it
stays on retries and dead letters (which copy the headers).

Where the broker can filter (RabbitMQ: a headers exchange bound per tag) a filtered-out
message never reaches the subscriber's queue. Elsewhere the framework filters: the
:class:`~framework.broker.processor.SubscriberProcessor` acknowledges (commits) a message
whose tag the subscriber did not ask for without running the handler, so it neither blocks
the messages after it nor comes back.

A tag is 1 to :data:`MAX_TAG_LENGTH` characters among ASCII letters, digits, ``_`` and
``-``: no ``.``, ``/``, ``*``, ``>``, ``#``, ``+`` or space, so that it is a valid single
token of a NATS subject, an AMQP routing key word and an MQTT topic level alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from framework.broker.message import TAG_HEADER, Message, check_headers

__all__ = [
    "MAX_TAG_LENGTH",
    "TAG_HEADER",
    "check_tag",
    "check_tags",
    "routing_tag",
    "tag_matches",
    "tag_of",
    "tagged_headers",
]

#: Longest tag accepted, in characters.
MAX_TAG_LENGTH = 64
_TAG = re.compile(r"[A-Za-z0-9_-]+")


def check_tag(tag: object) -> str:
    """``tag`` if it is a valid tag (see the module docstring); ``ValueError`` naming what is
    wrong otherwise (``TypeError`` if it is not a ``str``)."""
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a str, got {type(tag).__name__} {tag!r}")
    if not tag:
        raise ValueError("tag must be a non-empty string")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"tag {tag[:20]!r}... is {len(tag)} characters, at most {MAX_TAG_LENGTH}")
    if not _TAG.fullmatch(tag):
        raise ValueError(
            f"tag {tag!r} may hold only ASCII letters, digits, '_' and '-' (a tag is one token "
            f"of a NATS subject, an AMQP routing key and an MQTT topic alike)"
        )
    return tag


def check_tags(tags: Iterable[str] | str | None) -> frozenset[str]:
    """The subscriber's tag set: empty for ``None`` (every message); ``ValueError`` for an
    empty collection (it would match nothing: pass ``None`` for everything) or an invalid tag,
    ``TypeError`` for a bare string (``tags="created"`` would be a set of characters)."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str | bytes):
        raise TypeError(f"tags must be a collection of tags, e.g. {{{tags!r}}}, not {tags!r}")
    found = frozenset(check_tag(tag) for tag in tags)
    if not found:
        raise ValueError("tags must name at least one tag; pass None to receive every message")
    return found


def tagged_headers(headers: Mapping[str, str] | None, tag: str | None) -> Mapping[str, str] | None:
    """The headers to publish: ``headers`` plus :data:`TAG_HEADER` set to ``tag`` (checked
    with :func:`check_tag`); ``headers`` unchanged when ``tag`` is ``None`` (a header already
    carrying a tag, as on a dead letter or a republished message, stays).

    Every broker's ``publish`` and the batching publishers' ``submit`` pass their headers
    through here, so this is also where the header contract is checked: names and values
    are ``str`` (a number, ``None`` or bytes would be carried by one broker, refused by
    another, or fail a whole batch).

    Raises:
        TypeError: a header name or value that is not a ``str`` (:func:`check_headers`).
        ValueError: an invalid ``tag``.
    """
    check_headers(headers)
    if tag is None:
        return headers
    check_tag(tag)
    return {**headers, TAG_HEADER: tag} if headers else {TAG_HEADER: tag}


def tag_of(headers: Mapping[str, str] | None) -> str | None:
    """The tag in ``headers``, or ``None``."""
    return None if headers is None else headers.get(TAG_HEADER)


def routing_tag(headers: Mapping[str, str] | None) -> str | None:
    """The tag a broker routes ``headers``' message by: its :data:`TAG_HEADER` if that is a
    valid tag, else ``None``. A header set by another producer may hold anything; no
    subscriber can ask for an invalid tag, so such a message goes where untagged ones go
    (to the subscribers without tags) instead of failing its publish or dead letter."""
    tag = tag_of(headers)
    if tag is None or len(tag) > MAX_TAG_LENGTH or not _TAG.fullmatch(tag):
        return None
    return tag


def tag_matches(tags: frozenset[str], message: Message) -> bool:
    """Whether a subscriber with ``tags`` (empty: every message) receives ``message``."""
    return not tags or message.headers.get(TAG_HEADER) in tags
