"""Late refusals of core NATS publishes: the server's ``-ERR`` after a fire-and-forget publish.

A core publish (acknowledgement level ``"none"``) is written to the socket and forgotten;
when the server refuses it (a subject the connection's user may not publish to), all that
comes back is an asynchronous ``-ERR 'Permissions Violation for Publish to "<subject>"'``,
which nats-py hands to the connection's error callback, lower-cased. :class:`CoreRefusals`
remembers the subjects recently published that way, so the broker can report such an error
as that publish's failure (counted, logged, passed to the ``on_error`` of the handle that
published) instead of a connection warning.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict

from framework.broker.acks import PublishMode

__all__ = ["CoreRefusals"]

# nats-py: f"nats: {message}" with the server's message lower-cased.
_REFUSAL = re.compile(r'permissions violation for publish to "(?P<subject>[^"]*)"')
#: Subjects remembered at most (the least recently published are forgotten first).
_REMEMBERED = 1024


class CoreRefusals:
    """The subjects of recent core publishes and the publish mode each was sent with, and
    when the server last refused a publish to a subject (read by the JetStream publishers:
    a refused JetStream publish gets no PubAck, only this error)."""

    def __init__(self) -> None:
        self._recent: OrderedDict[str, PublishMode] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()

    def refused(self, subject: str) -> None:
        """The server refused a publish to ``subject`` (lower-cased) just now."""
        refused = self._refused
        refused[subject] = time.monotonic()
        refused.move_to_end(subject)
        if len(refused) > _REMEMBERED:
            refused.popitem(last=False)

    def refused_since(self, subject: str, since: float) -> bool:
        """Whether a publish to ``subject`` was refused at or after ``since``
        (``time.monotonic()``)."""
        at = self._refused.get(subject.lower())
        return at is not None and at >= since

    def published(self, subject: str, mode: PublishMode) -> None:
        """A core publish to ``subject`` was sent at ``mode``."""
        key = subject.lower()  # the server's error comes back lower-cased
        recent = self._recent
        recent[key] = mode
        recent.move_to_end(key)
        if len(recent) > _REMEMBERED:
            recent.popitem(last=False)

    @staticmethod
    def refused_subject(error: BaseException) -> str | None:
        """The (lower-cased) subject a permissions error refused a publish to, or ``None``
        for any other error."""
        found = _REFUSAL.search(str(error))
        return found.group("subject") if found else None

    def mode_for(self, subject: str) -> PublishMode | None:
        """The mode of the last core publish to ``subject`` (lower-cased), if remembered."""
        return self._recent.get(subject)
