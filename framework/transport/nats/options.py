"""Subscriber options understood by the NATS broker and what they resolve to.

``@router.subscriber(..., options={...})`` may carry these keys (anything else is an error,
so a typo or another broker's option never passes silently: ``UnsupportedOptionError``):

``stream``
    JetStream stream to consume from (default: the stream that captures the topic, created
    or extended by the broker when ``create_streams`` is on).
``durable``
    Name of the durable pull consumer. By default a group shares the consumer
    ``<group>_<topic>`` (without a group, the group is the handler's ``module.qualname``, as
    on the other brokers), made a valid consumer name (no ``.``, ``*``, ``>`` or spaces; a
    hash suffix keeps two altered names apart).
``prefetch``
    Messages fetched and not yet settled at most, per subscription (default: the broker's).
``fetch_batch``
    Messages asked for per pull request (default: the broker's; at most ``prefetch``).
``deliver_policy``
    Where a new durable consumer starts: ``"all"`` (the whole stream, default) or ``"new"``.
``ack_wait``
    Seconds JetStream waits for an ack before redelivering (default: the broker's); in-progress
    acks extend it while a handler runs.
``jetstream``
    ``False`` consumes a group over core NATS instead (a queue group: at-most-once, no
    stream needed, and a handler's return value answers a request). Broadcast subscribers
    always use core NATS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from framework.broker.options import check_options, option_choice
from framework.broker.signature import handler_name
from framework.broker.subscriber import SubscriberSpec
from framework.transport.nats.errors import StreamError
from framework.transport.nats.subjects import concrete_dead_letter, has_wildcards, matches

__all__ = ["DELIVER_POLICIES", "KNOWN_OPTIONS", "SubscriberConfig", "consumer_name", "resolve"]

KNOWN_OPTIONS = frozenset(
    {"stream", "durable", "prefetch", "fetch_batch", "deliver_policy", "ack_wait", "jetstream"}
)
DELIVER_POLICIES = ("all", "new")
_INVALID = re.compile(r"[^A-Za-z0-9_-]")  # what a consumer name may hold, conservatively
_MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class SubscriberConfig:
    """Everything a NATS subscription needs, resolved from its spec and the broker defaults."""

    subject: str
    jetstream: bool  # False: core NATS (broadcast or queue group)
    queue_group: str  # core NATS queue group ("" for broadcast)
    stream: str | None  # explicit stream, None: the one that captures the subject
    durable: str
    prefetch: int
    fetch_batch: int
    deliver_policy: str
    ack_wait: float
    dead_letter: str | None  # dead-letter subject (template), None: disabled

    def dead_letter_subject(self, subject: str) -> str | None:
        """Where a dead letter of a message received on ``subject`` goes."""
        if self.dead_letter is None:
            return None
        return concrete_dead_letter(self.dead_letter, self.subject, subject)


def consumer_name(name: str) -> str:
    """A valid JetStream consumer name for ``name`` (see the ``durable`` option)."""
    clean, replaced = _INVALID.subn("_", name)
    if replaced or len(clean) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        clean = f"{clean[: _MAX_NAME - 13]}_{digest}"
    return clean


def _positive(spec: SubscriberSpec, name: str, value: Any, *, integer: bool) -> Any:
    number = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not number or value <= 0:
        what = "an int" if integer else "a number"
        raise StreamError(
            f"subscriber {spec.display_name!r}: {name} must be {what} > 0, got {value!r}"
        )
    return value


def _dead_letter(spec: SubscriberSpec) -> str | None:
    template = spec.dlq_topic
    if template is None or not has_wildcards(template):
        return template
    if not template.startswith(spec.topic + "."):
        raise StreamError(
            f"subscriber {spec.display_name!r}: dead-letter subject {template!r} has wildcards "
            f"but does not extend the topic {spec.topic!r}; give a concrete dlq= subject"
        )
    sample = ".".join("x" if t in ("*", ">") else t for t in spec.topic.split("."))
    if matches(spec.topic, concrete_dead_letter(template, spec.topic, sample)):
        raise StreamError(
            f"subscriber {spec.display_name!r}: dead letters of {spec.topic!r} would land in "
            f"{spec.topic!r} again; give a dlq= subject outside it"
        )
    return template


def resolve(
    spec: SubscriberSpec,
    *,
    prefetch: int,
    fetch_batch: int,
    deliver_policy: str,
    ack_wait: float,
) -> SubscriberConfig:
    """Validate ``spec.options`` and resolve the subscription (see the module docstring).

    Raises:
        UnsupportedOptionError: an option this broker does not know, or a bad choice.
        StreamError: a value out of range, or a dead-letter subject that cannot work.
    """
    check_options(spec, KNOWN_OPTIONS, "nats")
    opts = spec.options
    jetstream = bool(opts.get("jetstream", True)) and not spec.broadcast
    prefetch = _positive(spec, "prefetch", opts.get("prefetch", prefetch), integer=True)
    batch = min(
        _positive(spec, "fetch_batch", opts.get("fetch_batch", fetch_batch), integer=True), prefetch
    )
    if spec.concurrency < 1 or (jetstream and spec.concurrency > prefetch):
        raise StreamError(
            f"subscriber {spec.display_name!r}: concurrency {spec.concurrency} must be between "
            f"1 and the prefetch ({prefetch}), or workers would sit idle"
        )
    group = spec.group or handler_name(spec.handler)
    stream = opts.get("stream")
    if stream is not None and (not isinstance(stream, str) or not stream):
        raise StreamError(f"subscriber {spec.display_name!r}: stream must be a name")
    durable = opts.get("durable") or consumer_name(f"{group}_{spec.topic}")
    return SubscriberConfig(
        subject=spec.topic,
        jetstream=jetstream,
        queue_group="" if spec.broadcast else consumer_name(group),
        stream=stream,
        durable=consumer_name(str(durable)),
        prefetch=prefetch,
        fetch_batch=batch,
        deliver_policy=option_choice(spec, "deliver_policy", DELIVER_POLICIES, deliver_policy),
        ack_wait=float(_positive(spec, "ack_wait", opts.get("ack_wait", ack_wait), integer=False)),
        dead_letter=_dead_letter(spec),
    )
