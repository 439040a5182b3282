"""NATS subject patterns: matching with the ``*`` and ``>`` wildcards, and dead-letter subjects.

A subject is dot-separated tokens; ``*`` matches one token and ``>`` (last token only) one
or more (https://docs.nats.io/nats-concepts/subjects#wildcards).
"""

from __future__ import annotations

import re

__all__ = [
    "check_publish_subject",
    "concrete_dead_letter",
    "covers",
    "has_wildcards",
    "matches",
]

# Whitespace, or an empty token (a leading, trailing or doubled dot).
_MALFORMED = re.compile(r"\s|^\.|\.\.|\.$")


def has_wildcards(subject: str) -> bool:
    """True when ``subject`` has a ``*`` or ``>`` token (it cannot be published to)."""
    if "*" not in subject and ">" not in subject:  # every publish asks: the common answer fast
        return False
    return any(token in ("*", ">") for token in subject.split("."))


def check_publish_subject(subject: str) -> None:
    """Raise ``ValueError`` unless ``subject`` can be published to: non-empty tokens joined
    by dots, no whitespace, no wildcard (https://docs.nats.io/nats-concepts/subjects).

    Checked before publishing: the server answers a malformed subject with an error that
    looks transient (JetStream's 500 ``invalid subject``), which would keep a retrying
    publisher (the outbox relay) on it for good.
    """
    if not subject or _MALFORMED.search(subject):
        raise ValueError(
            f"cannot publish to {subject!r}: a NATS subject is non-empty tokens joined by "
            "'.', without whitespace"
        )
    if has_wildcards(subject):
        raise ValueError(f"cannot publish to {subject!r}: a subject with wildcards")


def covers(pattern: str, other: str) -> bool:
    """True when every subject ``other`` matches is matched by ``pattern`` too (a stream
    with subject ``pattern`` captures whatever is published to ``other``)."""
    mine, theirs = pattern.split("."), other.split(".")
    for index, token in enumerate(mine):
        if token == ">":
            return len(theirs) > index
        if index >= len(theirs):
            return False
        their = theirs[index]
        if token == "*":
            if their == ">":
                return False
        elif token != their:
            return False
    return len(mine) == len(theirs)


def matches(pattern: str, subject: str) -> bool:
    """True when the concrete ``subject`` matches ``pattern``."""
    return covers(pattern, subject)


def concrete_dead_letter(template: str, topic: str, subject: str) -> str:
    """The subject a dead letter of ``subject`` (received on subscription ``topic``) goes to.

    ``template`` is the subscriber's dead-letter subject (``<topic>.dlq`` by default). Without
    wildcards it is used as is; a template that extends a wildcard topic (``orders.*.dlq``)
    gets the message's own subject in place of the topic (``orders.created.dlq``), which a
    subscriber to the template receives.
    """
    if not has_wildcards(template):
        return template
    return subject + template[len(topic) :]
