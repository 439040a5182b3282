"""Publishing to JetStream and waiting for its acknowledgement (PubAck), across reconnects.

A JetStream publish is a request: the stream that stores the message answers with a PubAck
(stream and sequence). :class:`ConfirmedPublisher` sends each message with a ``Nats-Msg-Id``
so that a retry after a lost answer (a reconnect, a slow server) is de-duplicated by the
stream's duplicate window instead of stored twice, and retries until ``timeout``. The first
publish to a subject asks :class:`~framework.transport.nats.streams.Streams` for its stream
(which finds it, creates or extends the broker's stream, or refuses); a stream deleted
meanwhile is looked up again.

:class:`CorePublisher` (acknowledgement level ``"none"``) publishes with core NATS instead:
the stream captures the message as it would a JetStream publish's, but nobody answers, so
``publish`` returns once the client buffered it. A failure the client sees (closed, its
reconnect buffer full) raises :class:`PublishFailedError`; a stream that drops the message
(limits, ``discard: new``) cannot be known at this level.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError

from framework.transport.nats.errors import (
    MessageTooLargeError,
    PublishFailedError,
    PublishRefusedError,
)
from framework.transport.nats.headers import MSG_ID, message_size
from framework.transport.nats.streams import Streams

__all__ = ["ConfirmedPublisher", "CorePublisher", "check_size"]

log = logging.getLogger("pykratos.nats")

# Room for the Nats-Msg-Id header added after the check ("Nats-Msg-Id: <32 hex>\r\n").
_MSG_ID_LINE = len(MSG_ID) + 36


def check_size(
    subject: str, body: bytes, headers: dict[str, str] | None, client: Client | None
) -> None:
    """Raise :class:`MessageTooLargeError` when the message would exceed the server's
    ``max_payload`` (body and headers, with the message id header still to come)."""
    if client is None:
        return  # not connected: publish says so
    limit = client.max_payload
    if len(body) < limit // 2 and not headers:
        return  # the common case, without adding anything up
    size = message_size(body, headers) + _MSG_ID_LINE
    if size > limit:
        raise MessageTooLargeError(
            f"publish to {subject!r}: {size} bytes with headers, over the server's "
            f"max_payload of {limit}"
        )


# Longest wait for one PubAck before asking again (with the same Nats-Msg-Id).
_ATTEMPT_TIMEOUT = 2.0
# Pause after a publish failed for another reason than a timeout (connection closing...).
_PAUSE = 0.1


class ConfirmedPublisher:
    """Publishes to JetStream and returns the PubAck (see the module docstring)."""

    def __init__(
        self,
        js: JetStreamContext,
        streams: Streams,
        *,
        timeout: float,
        refused_since: Callable[[str, float], bool] | None = None,
    ) -> None:
        self._js = js
        self._streams = streams
        self.timeout = timeout
        # A refused publish gets no PubAck, only the server's error on the connection:
        # asked after each attempt that timed out.
        self._refused_since = refused_since

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str], msg_id: str
    ) -> PubAck:
        """Publish ``body`` to ``subject`` and return the PubAck.

        Raises:
            PublishFailedError: no PubAck within ``timeout`` seconds.
            PublishRefusedError: the server refused it (permissions), known at the first
                attempt's timeout (2 s) instead of ``timeout``.
            StreamError: no stream captures ``subject`` and the broker may not make one.
        """
        headers[MSG_ID] = msg_id
        # Known after the first publish to a subject: no round trip. Without a stream, core
        # subscribers to the subject would receive the request and no PubAck would come.
        await self._streams.stream_for(subject)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        started = time.monotonic()
        last: BaseException | None = None
        while (left := deadline - loop.time()) > 0:
            try:
                return await self._js.publish(
                    subject, body, timeout=min(left, _ATTEMPT_TIMEOUT), headers=headers
                )
            except NoStreamResponseError as exc:
                last = exc
                await self._streams.stream_for(subject)  # StreamError if it may not
                self._streams.forget(subject)  # found or made: publish again
            except nats.errors.TimeoutError as exc:
                last = exc
                if self._refused_since is not None and self._refused_since(subject, started):
                    raise PublishRefusedError(
                        f"publish to {subject!r} refused by the NATS server: permissions "
                        "violation (the connection's user may not publish to it)"
                    ) from exc
            except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError) as exc:
                last = exc
                await asyncio.sleep(min(_PAUSE, max(deadline - loop.time(), 0)))
        raise PublishFailedError(
            f"publish to {subject!r}: no JetStream acknowledgement within {self.timeout:g}s "
            f"({last!r})"
        )


class CorePublisher:
    """Publishes with core NATS, no PubAck (see the module docstring)."""

    def __init__(self, client: Client, streams: Streams) -> None:
        self._client = client
        self._streams = streams

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str], msg_id: str
    ) -> None:
        """Buffer ``body`` for ``subject`` in the client.

        Raises:
            PublishFailedError: the connection is closed or its reconnect buffer is full.
            StreamError: no stream captures ``subject`` and the broker may not make one.
        """
        headers[MSG_ID] = msg_id  # a later JetStream retry of the same message stays single
        # Without a stream capturing the subject the message would reach no consumer.
        await self._streams.stream_for(subject)
        try:
            await self._client.publish(subject, body, headers=headers)
        except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError) as exc:
            raise PublishFailedError(f"core publish to {subject!r} failed: {exc!r}") from exc
