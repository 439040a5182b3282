"""Confirmed publishing that survives a reconnect, and unconfirmed (fire-and-forget) publishing.

Every publish goes out on a channel in confirm mode and returns only once the broker acked
it. When the connection drops mid-publish the robust connection reconnects in the
background; the publish waits for the channel to be restored and sends again, until
``timeout``. A message is never reported as published without a broker ack, so a retried
publish may reach the queue twice (at-least-once), never zero times silently.

:class:`UnconfirmedPublisher` (acknowledgement level ``"none"``) publishes on a channel
without publisher confirms and returns once the frames are handed to the connection. What
RabbitMQ tells afterwards is reported, never dropped: a mandatory message that matched no
queue comes back (``basic.return``) and the channel closed by the server (e.g. an exchange
that does not exist) both reach ``report(topic, error)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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

__all__ = ["ConfirmedPublisher", "UnconfirmedPublisher"]

# Errors the broker will answer the same way on every retry.
_FATAL = (ChannelNotFoundEntity, ChannelAccessRefused, ChannelPreconditionFailed)
# Errors of a connection or channel that went away under the publish: retry once restored.
_TRANSIENT = (AMQPConnectionError, ChannelClosed, ChannelInvalidStateError, ConnectionError)


class ConfirmedPublisher:
    """Publishes on one robust confirm-mode channel; see the module docstring."""

    def __init__(self, channel: aio_pika.abc.AbstractRobustChannel, *, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    async def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> None:
        """Publish and wait for the broker's confirm, retrying across reconnects.

        Raises:
            UnroutableError: ``mandatory`` and no queue matched (the broker returned it).
            TopologyError: the exchange does not exist or may not be written to.
            MessageTooLargeError: the body is larger than the broker's ``max_message_size``.
            PublishTimeoutError: not confirmed within the timeout (broker down, nacks); a
                503 ``BROKER_UNAVAILABLE`` error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        backoff = 0.05
        last_error: BaseException | None = None
        where = f"exchange {exchange!r} routing key {routing_key!r}"
        while True:
            try:
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
            except PublishError as exc:
                raise UnroutableError(
                    f"publish to {where} matched no queue (mandatory): no subscriber has "
                    f"bound a queue for it yet"
                ) from exc
            except _FATAL as exc:
                # The broker closes the whole channel, failing every publish in flight on
                # it. Its reason names the culprit ("no exchange 'x' in vhost '/'"): only
                # that publish fails, the others go again on the restored channel.
                if f"'{exchange}'" in str(exc):
                    raise TopologyError(f"publish to {where} refused by the broker: {exc}") from exc
                # "message size 200 is larger than configured max size 100": the size is
                # this body's only if this publish is the culprit.
                if f"message size {len(body)} is larger" in str(exc):
                    raise MessageTooLargeError(
                        f"publish to {where} refused by the broker: {exc}"
                    ) from exc
                last_error = exc
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled: not a channel loss
                last_error = exc  # aiormq cancels pending confirms when its channel closes
            except _TRANSIENT as exc:
                last_error = exc
            else:
                if isinstance(confirmation, spec.Basic.Ack):
                    return
                last_error = PublishFailedError(f"broker nacked the publish: {confirmation!r}")
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
        return await raw.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=properties,
            mandatory=mandatory,
        )


class UnconfirmedPublisher:
    """Publishes on one robust channel without confirms (see the module docstring).

    Args:
        channel: a robust channel opened with ``publisher_confirms=False``.
        timeout: seconds a publish may wait for the channel (a reconnect) before raising
            :class:`PublishTimeoutError`.
        report: ``report(topic, error)`` for failures known after ``publish`` returned.
    """

    def __init__(
        self,
        channel: aio_pika.abc.AbstractRobustChannel,
        *,
        timeout: float,
        report: Callable[[str, BaseException], None],
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._report = report
        self._last_topic = ""
        channel.return_callbacks.add(self._on_return)
        channel.close_callbacks.add(self._on_close)

    async def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> None:
        """Hand the message to the connection; no confirm is asked for or awaited.

        Raises:
            PublishTimeoutError: the channel was not available within the timeout.
            PublishFailedError: the channel refused the frames (closed meanwhile).
        """
        try:
            async with asyncio.timeout(self._timeout):
                await self._channel.ready()  # waits while the robust connection reconnects
                raw = await self._channel.get_underlay_channel()
                self._last_topic = routing_key
                await raw.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=mandatory,
                )
        except TimeoutError as exc:
            raise PublishTimeoutError(
                f"unconfirmed publish to {routing_key!r}: no channel within {self._timeout:g}s",
                topic=routing_key,
                timeout=self._timeout,
            ) from exc
        except _TRANSIENT as exc:
            raise PublishFailedError(
                f"unconfirmed publish to {routing_key!r} failed: {exc!r}"
            ) from exc

    def _on_return(self, _channel: Any, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        topic = message.routing_key or ""
        self._report(
            topic,
            UnroutableError(
                f"unconfirmed publish to {topic!r} matched no queue (mandatory): RabbitMQ "
                "returned it"
            ),
        )

    def _on_close(self, _channel: Any, exc: BaseException | None) -> None:
        # The server closes the channel on an error (no such exchange...); the robust
        # channel reopens, but what was published since the error is lost.
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            self._report(
                self._last_topic,
                PublishFailedError(
                    f"the unconfirmed publishing channel was closed by RabbitMQ ({exc}); "
                    "messages published on it since the error are lost"
                ),
            )
