"""Confirmed publishing that survives a reconnect, and unconfirmed (fire-and-forget) publishing.

Every publish goes out on a channel in confirm mode and returns only once the broker acked
it. When the connection drops mid-publish the robust connection reconnects in the
background; the publish waits for the channel to be restored and sends again, until
``timeout``. A message is never reported as published without a broker ack, so a retried
publish may reach the queue twice (at-least-once), never zero times silently.

:class:`UnconfirmedPublisher` (acknowledgement level ``"none"``) returns once the message
is handed to its channel, without waiting for the confirm. What RabbitMQ tells afterwards is
reported, never dropped: a mandatory message that matched no queue (``basic.return``), a
nack, or a channel closed by the server (e.g. an exchange that does not exist) all reach
``report(topic, error)``.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika.abc
from aiormq.abc import ConfirmationFrameType
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelAccessRefused,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    PublishError,
)
from pamqp import commands as spec

from framework.transport.rabbitmq.errors import (
    MessageTooLargeError,
    PublishFailedError,
    PublishTimeoutError,
    TopologyError,
    UnroutableError,
)
from framework.transport.rabbitmq.framesize import check_header_frame, header_frame_limit

__all__ = ["ConfirmedPublisher", "UnconfirmedPublisher", "persistent_properties"]

# Errors the broker will answer the same way on every retry.
_FATAL = (ChannelNotFoundEntity, ChannelAccessRefused, ChannelPreconditionFailed)
# Errors of a connection or channel that went away under the publish: retry once restored.
_TRANSIENT = (AMQPConnectionError, ChannelClosed, ChannelInvalidStateError, ConnectionError)
# ... and aiormq cancels the pending confirms of a channel that closes.
_RETRIED = (asyncio.CancelledError, *_TRANSIENT)


class ConfirmedPublisher:
    """Publishes on one robust confirm-mode channel; see the module docstring."""

    def __init__(self, channel: aio_pika.abc.AbstractRobustChannel, *, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    @property
    def channel(self) -> aio_pika.abc.AbstractRobustChannel:
        """The robust confirm-mode channel it publishes on."""
        return self._channel

    @property
    def timeout(self) -> float:
        """Seconds a publish may wait for its confirm, across reconnects."""
        return self._timeout

    async def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
        deadline: float | None = None,
        failed: BaseException | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm, retrying across reconnects.

        Args:
            deadline: when to give up, in the event loop's time (``loop.time()``); default:
                the timeout from now.
            failed: what an attempt the caller already made with these ``properties`` raised
                (the batching publisher's first attempt): judged as this method's own
                attempts are, so it is raised as the matching error below or the message is
                published again.

        Raises:
            UnroutableError: ``mandatory`` and no queue matched (the broker returned it).
            TopologyError: the exchange does not exist or may not be written to.
            MessageTooLargeError: the body is larger than the broker's ``max_message_size``,
                or the properties (headers) do not fit in one frame of the connection
                (refused before anything is written: see
                :mod:`~framework.transport.rabbitmq.framesize`).
            PublishTimeoutError: not confirmed within the timeout (broker down, nacks); a
                503 ``BROKER_UNAVAILABLE`` error.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._timeout
        backoff = 0.05
        last_error: BaseException | None = None
        where = f"exchange {exchange!r} routing key {routing_key!r}"
        while True:
            if failed is None:
                try:
                    if loop.time() >= deadline:
                        # Not even started: an expired timeout scope would only stop it
                        # once it is written.
                        raise TimeoutError
                    async with asyncio.timeout_at(deadline):
                        confirmation = await self._send(
                            exchange, routing_key, body, properties, mandatory
                        )
                except TimeoutError as exc:
                    raise PublishTimeoutError(
                        f"publish to {where} not confirmed within {self._timeout:g}s"
                        + (f" (last error: {last_error})" if last_error else ""),
                        topic=routing_key,
                        timeout=self._timeout,
                    ) from exc
                except asyncio.CancelledError as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # we are being cancelled: not a channel loss
                    failed = exc
                except Exception as exc:
                    failed = exc
                else:
                    if isinstance(confirmation, spec.Basic.Ack):
                        return
                    last_error = PublishFailedError(f"broker nacked the publish: {confirmation!r}")
            if failed is not None:
                last_error = _retry_after(failed, where=where, exchange=exchange, body=body)
                failed = None
            pause = min(backoff, max(deadline - loop.time(), 0.0))
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, 1.0)

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> ConfirmationFrameType | None:
        await self._channel.ready()  # waits while the robust connection reconnects
        raw = await self._channel.get_underlay_channel()
        # Checked on the channel it goes out on: frame_max is negotiated per connection.
        check_header_frame(
            properties,
            header_frame_limit(raw),
            exchange=exchange,
            routing_key=routing_key,
        )
        return await raw.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=properties,
            mandatory=mandatory,
            **_no_drain_wait(raw),
        )


def _retry_after(exc: BaseException, *, where: str, exchange: str, body: bytes) -> BaseException:
    """What a failed attempt of a confirmed publish means: raises the error of a publish the
    broker will refuse again; returns ``exc`` (or what it stands for) when publishing again,
    once the channel is back, may succeed."""
    if isinstance(exc, PublishError):
        raise UnroutableError(
            f"publish to {where} matched no queue (mandatory): no subscriber has "
            f"bound a queue for it yet"
        ) from exc
    if isinstance(exc, _FATAL):
        # The broker closes the whole channel, failing every publish in flight on it. Its
        # reason names the culprit ("no exchange 'x' in vhost '/'"): only that publish
        # fails, the others go again on the restored channel.
        if f"'{exchange}'" in str(exc):
            raise TopologyError(f"publish to {where} refused by the broker: {exc}") from exc
        # "message size 200 is larger than configured max size 100": the size is this
        # body's only if this publish is the culprit.
        if f"message size {len(body)} is larger" in str(exc):
            raise MessageTooLargeError(f"publish to {where} refused by the broker: {exc}") from exc
        return exc
    if isinstance(exc, DeliveryError):  # aiormq fails a nacked publish's confirm with it
        return PublishFailedError(f"broker nacked the publish: {exc.frame!r}")
    if isinstance(exc, _RETRIED):
        return exc
    raise exc


def _no_drain_wait(raw: object) -> dict[str, Any]:
    """``wait=False`` where aiormq's ``basic_publish`` takes it: do not wait, under the
    channel's lock, for each frame to be written out before the next publish may queue its
    own. The confirm awaited after it only comes once the frame was written anyway, and with
    many publishes in flight (the batching publisher) waiting for each write serialises
    them. Older aiormq versions without the argument keep their behaviour."""
    cls = type(raw)
    accepts = _ACCEPTS_WAIT.get(cls)
    if accepts is None:
        method = getattr(cls, "basic_publish", None)
        accepts = method is not None and "wait" in inspect.signature(method).parameters
        _ACCEPTS_WAIT[cls] = accepts
    return _NO_WAIT if accepts else {}


_ACCEPTS_WAIT: dict[type, bool] = {}
_NO_WAIT: dict[str, Any] = {"wait": False}


def persistent_properties(headers: dict[str, Any]) -> spec.Basic.Properties:
    """Properties of a published message: ``headers`` (see
    :func:`~framework.transport.rabbitmq.headers.message_headers`), persistent, a fresh
    message id (also how aiormq matches a returned, unroutable message to its publish) and
    the current time."""
    return spec.Basic.Properties(
        headers=headers or None,
        delivery_mode=2,  # persistent
        message_id=uuid.uuid4().hex,
        timestamp=datetime.now(UTC),
    )


class UnconfirmedPublisher:
    """Publishes without waiting for confirms (see the module docstring).

    The channel is in confirm mode all the same: RabbitMQ only tells a publisher about a
    returned (unroutable) or refused message through the confirm of that message, and
    aiormq drops a return on a channel without confirms. ``publish`` hands the message to
    the channel (in call order: the channel's lock is first come, first served) and returns;
    its confirm is awaited in the background and a failure reaches ``report``.

    Args:
        channel: a robust channel opened with ``publisher_confirms=True`` and
            ``on_return_raises=True``.
        timeout: seconds a publish may wait for the channel (a reconnect) before raising
            :class:`PublishTimeoutError`; also how long a confirm may take before the
            message is reported as unconfirmed.
        max_in_flight: unconfirmed messages at most; ``publish`` waits beyond (so a dead
            server cannot make them pile up without bound).
    """

    def __init__(
        self,
        channel: aio_pika.abc.AbstractRobustChannel,
        *,
        timeout: float,
        max_in_flight: int = 10_000,
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
        report: Callable[[str, BaseException], None],
    ) -> None:
        """Hand the message to the channel; do not wait for its confirm. A failure known
        later goes to ``report(topic, error)``.

        Raises:
            PublishTimeoutError: the channel was not available within the timeout.
            MessageTooLargeError: the properties (headers) do not fit in one frame of the
                connection (nothing is written: see
                :mod:`~framework.transport.rabbitmq.framesize`).
        """
        try:
            async with asyncio.timeout(self._timeout):
                while len(self._in_flight) >= self._max_in_flight:
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                await self._channel.ready()  # waits while the robust connection reconnects
                raw = await self._channel.get_underlay_channel()
        except TimeoutError as exc:
            raise PublishTimeoutError(
                f"unconfirmed publish to {routing_key!r}: no channel within {self._timeout:g}s",
                topic=routing_key,
                timeout=self._timeout,
            ) from exc
        check_header_frame(
            properties,
            header_frame_limit(raw),
            exchange=exchange,
            routing_key=routing_key,
        )
        sending = asyncio.ensure_future(
            raw.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=self._timeout,
            )
        )
        self._in_flight.add(sending)
        sending.add_done_callback(lambda done: self._settled(routing_key, done, report))
        # One turn of the loop: the send takes its place in the channel's lock queue before
        # the caller's next publish does, so messages keep their order.
        await asyncio.sleep(0)

    def _settled(
        self, topic: str, done: asyncio.Future[Any], report: Callable[[str, BaseException], None]
    ) -> None:
        self._in_flight.discard(done)
        if done.cancelled():
            report(topic, PublishFailedError(f"unconfirmed publish to {topic!r} cancelled"))
            return
        exc = done.exception()
        if isinstance(exc, PublishError):
            report(
                topic,
                UnroutableError(
                    f"unconfirmed publish to {topic!r} matched no queue (mandatory): "
                    "RabbitMQ returned it"
                ),
            )
        elif exc is not None:
            report(topic, PublishFailedError(f"unconfirmed publish to {topic!r} failed: {exc!r}"))
        elif not isinstance(done.result(), spec.Basic.Ack):
            report(
                topic,
                PublishFailedError(f"RabbitMQ nacked the publish to {topic!r}: {done.result()!r}"),
            )
