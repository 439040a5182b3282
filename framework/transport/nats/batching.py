"""NATS' batching publisher: JetStream publishes pipelined on one reply subscription.

A JetStream publish is a request whose answer (the PubAck: stream and sequence) comes to a
reply subject. :class:`NatsBatchingPublisher` sends every message of a chunk at once with its
own reply subject under one inbox of its own (``<inbox>.<n>``), subscribed once with a
wildcard, and each PubAck resolves its message: no request, timer or task per message, which
is where a pipelined ``js.publish`` spends its time.

Like :class:`~framework.transport.nats.publishing.ConfirmedPublisher`, every message carries a
``Nats-Msg-Id``: one without a PubAck after 2 s is sent again with the same id (the stream's
duplicate window drops a second copy), until ``publish_timeout``, when it fails with
:class:`~framework.transport.nats.errors.PublishFailedError`. A PubAck carrying an error fails
its message alone with that error; a "no responders" answer (the stream went away) fails it and
makes the next chunk look its stream up again. The first message to a subject waits for its
stream (found, made or refused: :class:`~framework.transport.nats.errors.StreamError`) before
any message of the chunk is sent, so the messages of a key go out in submit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from framework.broker import batching
from framework.broker.batching import PendingMessage, stop_task
from framework.broker.broker import PublishResult
from framework.transport.nats.errors import PublishFailedError, PublishRefusedError
from framework.transport.nats.headers import MSG_ID, encode_headers
from framework.transport.nats.publishing import check_size
from framework.transport.nats.streams import Streams
from framework.transport.nats.subjects import check_publish_subject

__all__ = ["NatsBatchingPublisher"]

_log = logging.getLogger("pykratos.nats")

# Longest wait for one PubAck before sending again (with the same Nats-Msg-Id).
_ATTEMPT_TIMEOUT = 2.0
# Seconds between two looks for messages whose PubAck is late.
_WATCH_INTERVAL = 0.5
# Errors of a publish that the next attempt may not meet (a reconnect, a full buffer).
_TRANSIENT = (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError)


class _Flight:
    """One message awaiting its PubAck."""

    __slots__ = ("body", "deadline", "headers", "item", "reply", "sent_at", "subject")

    def __init__(
        self, item: PendingMessage, headers: dict[str, str], reply: str, deadline: float
    ) -> None:
        self.item = item
        self.subject = item.topic
        self.body = item.body
        self.headers = headers
        self.reply = reply
        self.deadline = deadline
        self.sent_at = 0.0  # 0: not sent yet (the first attempt failed)


class NatsBatchingPublisher(batching.BatchingPublisher):
    """Pipelines JetStream publishes, a PubAck per message (see the module docstring).

    Args:
        client: the broker's connected NATS client.
        streams: the broker's stream finder.
        timeout: seconds a message may wait for its PubAck, across reconnects
            (the broker's ``publish_timeout``).
        refused_since: ``(subject, since)`` -> whether the server refused a publish to
            ``subject`` since then (a refused publish gets no PubAck): asked for messages
            whose PubAck is late, which then fail with ``PublishRefusedError``.
        **kwargs: ``chunk_size``, ``flush_interval``, ``max_pending``, ``close_timeout``
            (see :class:`framework.broker.batching.BatchingPublisher`).
    """

    def __init__(
        self,
        client: Client,
        streams: Streams,
        *,
        timeout: float,
        refused_since: Callable[[str, float], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "nats-batch-publisher")
        super().__init__(**kwargs)
        self._client = client
        self._streams = streams
        self._timeout = timeout
        self._refused_since = refused_since
        self._inbox = f"_INBOX.pykratos-batch.{uuid.uuid4().hex}"
        self._tokens = itertools.count()
        self._flights: dict[str, _Flight] = {}  # reply subject -> its message
        self._subscription: Subscription | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        if self._subscription is None:
            self._subscription = await self._client.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name=f"{self.name}-watch")
        deadline = time.monotonic() + self._timeout
        refused: dict[str, BaseException] = {}
        for topic in dict.fromkeys(item.topic for item in chunk):
            try:
                check_publish_subject(topic)
                await self._stream_for(topic, deadline)
            except Exception as exc:
                refused[topic] = exc
        inbox, tokens, flights = self._inbox, self._tokens, self._flights
        for item in chunk:
            if refused and item.topic in refused:
                self.reject((item,), refused[item.topic])
                continue
            try:  # refused alone: a header NATS cannot carry, a message over max_payload
                headers = encode_headers(item.headers, item.key) or {}
                check_size(item.topic, item.body, headers, self._client)
            except ValueError as exc:
                self.reject((item,), exc)
                continue
            headers[MSG_ID] = uuid.uuid4().hex
            reply = f"{inbox}.{next(tokens)}"
            flight = flights[reply] = _Flight(item, headers, reply, deadline)
            await self._send(flight)

    async def _stream_for(self, topic: str, deadline: float) -> None:
        """Look ``topic``'s stream up (known after the first time), asking again through a
        lost connection or a slow answer until ``deadline``."""
        while True:
            try:
                await self._streams.stream_for(topic)
                return
            except (nats.errors.TimeoutError, *_TRANSIENT) as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishFailedError(
                        f"publish to {topic!r}: its JetStream stream could not be looked up "
                        f"within {self._timeout:g}s ({exc!r})"
                    ) from exc
                await asyncio.sleep(min(0.1, left))

    async def _send(self, flight: _Flight) -> None:
        try:
            await self._client.publish(
                flight.subject, flight.body, reply=flight.reply, headers=flight.headers
            )
        except _TRANSIENT as exc:
            _log.debug("%s: publish to %r failed (%r); retrying", self.name, flight.subject, exc)
            flight.sent_at = 0.0  # the watcher sends it again
            return
        except Exception as exc:  # refused by the client (e.g. over max_payload): this one
            if self._flights.pop(flight.reply, None) is flight:
                self.reject((flight.item,), exc)
            return
        flight.sent_at = time.monotonic()

    async def _on_ack(self, msg: Msg) -> None:
        flight = self._flights.pop(msg.subject, None)
        if flight is None:
            return  # the answer to an earlier attempt of a message already resolved
        item = flight.item
        if msg.headers and msg.headers.get("Status") == "503":  # no responders
            self._streams.forget(flight.subject)
            self.reject((item,), PublishFailedError(
                f"publish to {flight.subject!r}: no JetStream stream answered (deleted?)"
            ))  # fmt: skip
            return
        try:
            ack = json.loads(msg.data)
        except ValueError as exc:
            self.reject((item,), PublishFailedError(
                f"publish to {flight.subject!r}: unreadable PubAck {msg.data[:200]!r}"
            ))  # fmt: skip
            _log.debug("%s: %r", self.name, exc)
            return
        error = ack.get("error")
        if error is not None:
            self.reject((item,), PublishFailedError(
                f"publish to {flight.subject!r} refused by JetStream: "
                f"{error.get('description', error)} (code {error.get('err_code')})"
            ))  # fmt: skip
            return
        self.resolve(
            item, PublishResult(topic=item.topic, offset=ack.get("seq"),
                                message_id=flight.headers[MSG_ID])
        )  # fmt: skip

    async def _watch(self) -> None:
        """Send again what got no PubAck in time; fail what ran out of ``timeout``."""
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            now = time.monotonic()
            late = [f for f in list(self._flights.values()) if now - f.sent_at > _ATTEMPT_TIMEOUT]
            for flight in late:
                if self._flights.get(flight.reply) is not flight:
                    continue  # answered meanwhile
                refused = self._refused_since
                if refused is not None and refused(flight.subject, flight.deadline - self._timeout):
                    del self._flights[flight.reply]
                    self.reject((flight.item,), PublishRefusedError(
                        f"publish to {flight.subject!r} refused by the NATS server: "
                        "permissions violation (the connection's user may not publish to it)"
                    ))  # fmt: skip
                    continue
                if now >= flight.deadline:
                    del self._flights[flight.reply]
                    self.reject((flight.item,), PublishFailedError(
                        f"publish to {flight.subject!r}: no JetStream acknowledgement within "
                        f"{self._timeout:g}s"
                    ))  # fmt: skip
                    continue
                await self._send(flight)

    async def abort(self) -> None:
        self._flights.clear()

    async def close(self, timeout: float | None = None) -> None:
        """Flush (see ``BatchingPublisher.close``), then drop the reply subscription."""
        try:
            await super().close(timeout)
        finally:
            watcher, self._watcher = self._watcher, None
            await stop_task(watcher)
            subscription, self._subscription = self._subscription, None
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
